"""Database connections and schema migrations (SQLite WAL or PostgreSQL via psycopg 3).

`open_database(url)` returns a `Database` with two engines:

* ``write``: on SQLite every transaction starts with ``BEGIN IMMEDIATE``, so the
  write lock is taken up front and a read-modify-write (backfill, labels) cannot
  interleave with another process's writes; a busy database is waited for
  (``busy_timeout``), not failed.
* ``read``: plain deferred transactions; under WAL readers never block the writer.

On PostgreSQL both are the same engine (row locks and ``ON CONFLICT`` do the work).

SQLite runs with ``journal_mode=WAL`` and ``synchronous=FULL`` by default: a
committed (acknowledged) trace survives a crash of the process and of the machine.
``NORMAL`` keeps it across process crashes only.

Migrations are Alembic revisions shipped inside the package
(``entropy_sentinel/service/storage/migrations``); `upgrade` applies them under a lock
(PostgreSQL advisory lock, SQLite write lock), so several instances starting at
once migrate exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.redact import redact_text, redact_url

__all__ = [
    "MIGRATIONS_DIR",
    "Database",
    "head_revision",
    "open_database",
    "sqlite_path",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 7_301_964_113  # pg_advisory_xact_lock key: "entropy-sentinel migrations"
_BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Database:
    """Engines for one database (see the module docstring)."""

    url: str
    dialect: Literal["sqlite", "postgresql"]
    write: sa.Engine
    read: sa.Engine

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.write.dispose()
        if self.read is not self.write:
            self.read.dispose()

    def __repr__(self) -> str:
        return f"Database({redact_url(self.url)!r})"


def open_database(
    url: str,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
    migrate: bool = True,
    revision: str = "head",
) -> Database:
    """Connect to ``url`` and (by default) bring its schema to the newest revision.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
            ``postgresql+psycopg://user:password@host:5432/dbname``.
        synchronous: SQLite durability, see the module docstring.
        migrate: apply pending migrations (else a schema that is not current is an error).
        revision: migrate up to this revision only (tests of upgrades from old schemas).
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database URL {redact_url(url)!r} is not a URL; use sqlite:///path.db or "
            "postgresql+psycopg://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            db = _open_sqlite(parsed, synchronous)
        elif backend == "postgresql":
            db = _open_postgres(parsed)
        else:
            raise ConfigError(
                f"database {backend!r} is not supported; use sqlite:///path.db or "
                "postgresql+psycopg://user@host/dbname"
            )
    except NoSuchModuleError:
        raise ConfigError(
            f"no SQLAlchemy driver for {parsed.drivername!r}; for PostgreSQL use "
            "postgresql+psycopg:// (pip install 'entropy-sentinel[service]')"
        ) from None
    try:
        with db.read.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        db.dispose()
        raise StorageError(f"cannot connect to {db!r}: {redact_text(str(exc.orig))}") from None
    if migrate:
        upgrade(db, revision)
    elif (current := current_revision(db)) != head_revision():
        db.dispose()
        if current is None:
            raise StorageError(
                f"{db!r} has never been served: start `sentinel serve --db ...` on it first"
            )
        raise StorageError(
            f"{db!r} is at schema revision {current!r}, not {head_revision()!r}: open it "
            "with migrations enabled (sentinel serve does)"
        )
    return db


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and unparsable URLs).

    >>> sqlite_path("sqlite:////data/s.db"), sqlite_path("postgresql+psycopg://h/db")
    (PosixPath('/data/s.db'), None)
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def _open_sqlite(url: sa.URL, synchronous: str) -> Database:
    path = url.database
    if not path or path == ":memory:" or url.query.get("mode") == "memory":
        raise ConfigError(
            "an in-memory SQLite database loses every trace on exit; give a file, e.g. "
            "sqlite:///sentinel.db"
        )
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"directory {str(parent)!r} of the SQLite database does not exist")

    def make(begin: str, pool_size: int) -> sa.Engine:
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            mode = cur.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StorageError(
                    f"SQLite at {path!r} cannot use WAL (journal_mode={mode}); put the "
                    "database on a local file system"
                )
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql(begin)

        return engine

    return Database(
        url=url.render_as_string(hide_password=False),
        dialect="sqlite",
        write=make("BEGIN IMMEDIATE", 2),
        read=make("BEGIN", 8),
    )


def _open_postgres(url: sa.URL) -> Database:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
    )
    return Database(
        url=url.render_as_string(hide_password=False),
        dialect="postgresql",
        write=engine,
        read=engine,
    )


# ---------------------------------------------------------------- migrations
def _alembic_config(connection: sa.Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest schema revision shipped with this version of the package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(db: Database) -> str | None:
    """The schema revision of the database, or None when it has no schema yet."""
    from alembic.runtime.migration import MigrationContext

    with db.read.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> None:
    """Apply pending migrations up to ``revision``, once even under concurrent starts."""
    from alembic import command

    if db.dialect == "postgresql":
        with db.write.begin() as conn:
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            command.upgrade(_alembic_config(conn), revision)
        return
    # SQLite changes a column by copying its table; with foreign keys on, dropping the
    # old copy would cascade-delete the rows that reference it. The pragma only takes
    # effect outside a transaction, so it is set on the raw connection before BEGIN, and
    # the result is checked before the commit (SQLite's documented procedure).
    with db.write.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                command.upgrade(_alembic_config(conn), revision)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise StorageError(
                        f"migrating {db!r} would break {len(broken)} references (first: "
                        f"{tuple(broken[0])}); nothing was changed"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
