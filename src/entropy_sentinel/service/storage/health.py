"""Can the database still take writes? What ``/healthz`` and the maintenance loop ask.

`StorageMonitor.check` looks for the failures a ``SELECT 1`` does not see:

* **the last write failed** (any backend): the writer records each failed group
  commit (a full disk: "database or disk is full"; a read-only file: "attempt to
  write a readonly database") until one succeeds again;
* **disk space** (SQLite): less than ``min_free_disk`` bytes free where the database
  and its WAL live;
* **checkpoints** (SQLite): a passive WAL checkpoint on a fresh connection must
  succeed; it fails on a database file that became read-only or unwritable (the
  WAL then grows without bound while writes still seem to work) and on I/O errors;
* **WAL growth** (SQLite, a warning): more than ``wal_warn_bytes`` of WAL frames that
  a checkpoint cannot copy back into the database, i.e. checkpoints are not keeping up
  (a reader holds an old snapshot open) and the WAL grows with every write.

Problems make the service "degraded" (HTTP 503 from ``/healthz``); warnings are
reported and logged but keep it "ok". A check runs at most every few seconds, its
answer is reused in between.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entropy_sentinel.service.storage.db import Database

__all__ = ["StorageMonitor", "StorageReport"]

_MiB = 1 << 20
_REUSE_SECONDS = 5.0


@dataclass(frozen=True)
class StorageReport:
    """One look at the storage: problems (degraded), warnings, and the facts measured.

    Attributes:
        problems: what makes writes fail or about to fail, each with its reason.
        warnings: what needs attention but does not stop writes yet.
        facts: ``free_bytes`` (disk space where the database lives), ``wal_bytes``
            (frames in the WAL), ``wal_backlog_bytes`` (of those, not checkpointed),
            ``wal_file_bytes`` (the file); SQLite only.
        at: when it was taken, epoch seconds.
    """

    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


class StorageMonitor:
    """Checks one database (see the module docstring).

    Args:
        db: the open database.
        min_free_disk: bytes that must stay free on the database's file system.
        wal_warn_bytes: WAL frames in use above which a warning is given.
    """

    def __init__(self, db: Database, *, min_free_disk: int, wal_warn_bytes: int) -> None:
        self.db = db
        self.min_free_disk = min_free_disk
        self.wal_warn_bytes = wal_warn_bytes
        self.path = _sqlite_path(db)
        self._lock = threading.Lock()
        self._last = StorageReport()
        self._write_failure: tuple[float, str] | None = None

    # --------------------------------------------------------- write outcomes
    def write_failed(self, reason: str) -> None:
        """Record a failed write (called by the writer)."""
        self._write_failure = (time.time(), reason.splitlines()[0][:300] if reason else "")

    def write_succeeded(self) -> None:
        """Record a successful write: a failure before it no longer counts."""
        self._write_failure = None

    # ------------------------------------------------------------------ checks
    def check(self, *, fresh: bool = False) -> StorageReport:
        """The current report: reused when younger than a few seconds, unless ``fresh``."""
        with self._lock:
            if not fresh and time.time() - self._last.at < _REUSE_SECONDS:
                return self._last
            problems: list[str] = []
            warnings: list[str] = []
            facts: dict[str, Any] = {}
            failure = self._write_failure
            if failure is not None:
                ago = time.time() - failure[0]
                problems.append(f"the last write failed {ago:.0f} s ago: {failure[1]}")
            if self.path is not None:
                self._check_sqlite(self.path, problems, warnings, facts)
            self._last = StorageReport(tuple(problems), tuple(warnings), facts, time.time())
            return self._last

    def _check_sqlite(
        self, path: Path, problems: list[str], warnings: list[str], facts: dict[str, Any]
    ) -> None:
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(path.parent).free
            facts["free_bytes"] = free
            if free < self.min_free_disk:
                problems.append(
                    f"disk nearly full: {free / _MiB:.1f} MiB free in {str(path.parent)!r} "
                    f"(min_free_disk is {self.min_free_disk / _MiB:.0f} MiB); writes will fail"
                )
        wal = path.with_name(path.name + "-wal")
        with contextlib.suppress(OSError):
            facts["wal_file_bytes"] = wal.stat().st_size
        try:
            conn = sqlite3.connect(path, timeout=1.0, isolation_level=None)
            try:
                _busy, frames, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                page = int(conn.execute("PRAGMA page_size").fetchone()[0])
            finally:
                conn.close()
        except sqlite3.Error as exc:
            hint = (
                "; the database file is read-only for this process"
                if "readonly" in str(exc) or "read-only" in str(exc)
                else "; is the file (or its directory) still writable?"
            )
            problems.append(f"WAL checkpoint failed: {exc}{hint}")
            return
        backlog = max(int(frames) - int(done), 0) * page
        facts["wal_bytes"] = max(int(frames), 0) * page
        facts["wal_backlog_bytes"] = backlog
        if backlog > self.wal_warn_bytes:
            warnings.append(
                f"the WAL holds {backlog / _MiB:.1f} MiB that a checkpoint cannot copy back "
                f"(wal_warn_bytes is {self.wal_warn_bytes / _MiB:.1f} MiB) and keeps growing: "
                "a long-running reader (an open transaction) holds an old snapshot"
            )


def _sqlite_path(db: Database) -> Path | None:
    if db.dialect != "sqlite":
        return None
    database = db.write.url.database
    return Path(database).expanduser().resolve() if database else None
