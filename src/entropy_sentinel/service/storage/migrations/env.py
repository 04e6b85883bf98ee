"""Alembic environment: runs on the connection `entropy_sentinel.service.storage.db.upgrade` passes.

To write a new revision (developers)::

    .venv/bin/alembic -c src/entropy_sentinel/service/storage/migrations/alembic.ini \
        -x url=sqlite:////tmp/dev.db revision --rev-id 0002 -m "add column X"

then edit it by hand and check that ``tests/test_service_storage.py`` (the schema-drift
test) passes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from entropy_sentinel.service.storage.tables import metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:  # the alembic command line: connect to -x url=...
        url = context.get_x_argument(as_dictionary=True).get("url")
        if not url:
            raise SystemExit("give the database: alembic ... -x url=sqlite:////tmp/dev.db")
        with sa.create_engine(url).begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite cannot ALTER most things: copy-and-move batches
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


try:
    _configured = context.config is not None
except (NameError, AttributeError):  # imported outside Alembic (doctest collection)
    _configured = False
if _configured:
    _run()
