"""Direct access to a monitoring database, for the CLI commands (report, prioritize, labels)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entropy_sentinel.service.records import ScorerInfo
    from entropy_sentinel.service.storage.store import Storage

__all__ = ["open_storage", "require_scorer", "when"]


@contextmanager
def open_storage(url: str) -> Iterator[Storage]:
    """The monitoring database at ``url`` (migrated if needed), closed on exit."""
    from entropy_sentinel.service.storage.db import open_database
    from entropy_sentinel.service.storage.store import Storage

    db = open_database(url)
    try:
        yield Storage.attach(db)
    finally:
        db.dispose()


def require_scorer(storage: Storage) -> ScorerInfo:
    from entropy_sentinel.errors import StorageError

    scorer = storage.active_scorer()
    if scorer is None:
        raise StorageError("the database has no model registered: serve it once with --model")
    return scorer


def when(value: str | None, what: str) -> float | None:
    """``--since/--until`` values: RFC 3339, epoch seconds, or ``24h`` (24 hours ago)."""
    from entropy_sentinel.timeutil import parse_when

    return None if value is None else parse_when(value, time.time(), what=what)
