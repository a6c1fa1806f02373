-- Dagster's instance storage lives in its own database on the same server.
CREATE DATABASE dagster OWNER studyllm;
