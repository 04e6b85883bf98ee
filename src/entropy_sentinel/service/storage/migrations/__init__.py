"""Alembic migrations of the monitoring database (applied by `service.storage.db`)."""
