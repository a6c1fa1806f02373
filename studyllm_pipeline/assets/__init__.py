"""Software-defined assets; each is a thin wrapper over studyllm_core."""
