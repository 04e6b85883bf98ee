"""The monitoring service: ingest, storage, per-slice estimates, alerts, priorities.

See docs/service.md. `create_app` builds the FastAPI application (``sentinel serve``
runs it under uvicorn); the other names work without a server, on the database
directly (the CLI's ``report``, ``prioritize`` and ``labels`` use them).

Layout: `settings` (options), `db` + `tables` + `migrations` (schema), `store`
(writes), `estimates` (reads), `ingest` + `scoring` + `pipeline` (validate, score,
store), `alerts`, `prioritize`, `labels`, `auth`, `metrics`, `logs`, `middleware`,
`routes/` (HTTP), `app` + `state` + `server` (running it).
"""

from typing import Any

from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.service.estimates import (
    EstimateQuery,
    EstimateResult,
    SliceEstimate,
    estimate,
)
from entropy_sentinel.service.settings import ApiKey, Settings, load_settings
from entropy_sentinel.service.storage.db import Database, open_database
from entropy_sentinel.service.storage.store import Storage

__all__ = [
    "AlertRule",
    "ApiKey",
    "Database",
    "EstimateQuery",
    "EstimateResult",
    "Settings",
    "SliceEstimate",
    "Storage",
    "create_app",
    "estimate",
    "load_settings",
    "open_database",
]


def __getattr__(name: str) -> Any:
    # FastAPI and the estimator load only when the app is asked for
    if name == "create_app":
        from entropy_sentinel.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
