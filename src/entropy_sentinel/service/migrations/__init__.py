"""Alembic migrations of the monitoring database (applied by `entropy_sentinel.service.db`)."""
