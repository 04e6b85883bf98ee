"""Direct access to a monitoring database, for the CLI commands (report, prioritize, labels)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entropy_sentinel.service.records import ScorerInfo
    from entropy_sentinel.service.storage.store import Storage

__all__ = ["open_storage", "require_scorer", "require_scorers", "when"]


@contextmanager
def open_storage(url: str, *, write: bool = False) -> Iterator[Storage]:
    """The monitoring database at ``url``, closed on exit.

    It must exist and have been served (`sentinel serve` creates it): no command but
    ``serve`` creates a database, not even an empty SQLite file. With ``write=False``
    (report; prioritize, which reads and stores its labelling design) the schema is left
    as found: a database of an older version is an error until ``sentinel serve``
    migrates it. Commands that import labels (``write=True``) migrate.
    """
    from entropy_sentinel.errors import StorageError
    from entropy_sentinel.service.storage.db import open_database, sqlite_path
    from entropy_sentinel.service.storage.store import Storage

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise StorageError(
            f"no monitoring database at {str(path.resolve())!r} (--db {url}): `sentinel serve --db "
            f"{url} --model ...` creates it; check the path"
        )
    db = open_database(url, migrate=write)
    try:
        yield Storage.attach(db)
    finally:
        db.dispose()


def require_scorers(storage: Storage, models: list[str] | None = None) -> list[ScorerInfo]:
    """The active scorers of ``models`` (model keys), default: of every model."""
    from entropy_sentinel.errors import ConfigError, StorageError

    scorers = storage.active_scorers()
    if not scorers:
        raise StorageError("the database has no model registered: serve it once with --model")
    if models is None:
        return scorers
    by_model = {s.model: s for s in scorers}
    missing = [m for m in models if m not in by_model]
    if missing:
        raise ConfigError(
            f"no estimator is registered for model {missing[0]!r}; models with one: "
            f"{sorted(by_model)}"
        )
    return [by_model[m] for m in dict.fromkeys(models)]


def require_scorer(storage: Storage, model: str | None = None) -> ScorerInfo:
    """The active scorer of ``model``; without one, the only model's (an error naming the
    models when there are several)."""
    from entropy_sentinel.errors import ConfigError

    scorers = require_scorers(storage, None if model is None else [model])
    if len(scorers) > 1:
        raise ConfigError(
            f"{len(scorers)} models have estimators ({', '.join(repr(s.model) for s in scorers)})"
            "; choose one with --model NAME"
        )
    return scorers[0]


def when(value: str | None, what: str) -> float | None:
    """``--since/--until`` values: RFC 3339, epoch seconds, or ``24h`` (24 hours ago)."""
    from entropy_sentinel.timeutil import parse_when

    return None if value is None else parse_when(value, time.time(), what=what)
