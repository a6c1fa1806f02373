"""Alembic environment: runs on the connection handed over by `studyllm_core.db.migrate`."""

from alembic import context

from studyllm_core.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
