"""`ServiceState`: the parts of one running service, built at start and shared by routes.

Routes reach it with the `service` dependency (``request.app.state.service``).
Routers added later (the proxy, the dashboard) use the same object: the proxy calls
``service.pipeline.ingest_records([...])`` to record traces in-process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from fastapi import Request

from entropy_sentinel.service.alerts import AlertEngine
from entropy_sentinel.service.auth import Authenticator
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.scoring import Scorer
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import Database, open_database
from entropy_sentinel.service.storage.store import Storage

__all__ = ["ServiceState", "open_pipeline", "service"]

log = logging.getLogger("entropy_sentinel.service")


@dataclass
class ServiceState:
    """Everything a running service holds (see the module docstring)."""

    settings: Settings
    db: Database
    storage: Storage
    scorer: Scorer
    pipeline: IngestPipeline
    alerts: AlertEngine
    auth: Authenticator
    metrics: Metrics
    started_at: float = field(default_factory=time.time)
    rescore_pending: int = 0  # refreshed by the maintenance loop
    closed: bool = False

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> ServiceState:
        """Open the database (migrating it), load the model, and start the writer."""
        m = metrics or Metrics()
        db, pipeline = open_pipeline(settings, m)
        engine = AlertEngine(
            settings.alert_rules,
            pipeline.storage,
            m,
            webhook_url=settings.webhook_url,
            webhook_timeout=settings.webhook_timeout,
        )
        return cls(
            settings=settings,
            db=db,
            storage=pipeline.storage,
            scorer=pipeline.scorer,
            pipeline=pipeline,
            alerts=engine,
            auth=Authenticator(settings.api_keys, m),
            metrics=m,
        )

    def close(self) -> None:
        """Flush queued traces, then close the database (graceful shutdown). Idempotent."""
        if self.closed:
            return
        self.closed = True
        left = self.pipeline.close(self.settings.shutdown_timeout)
        if left:
            log.error("shutdown: %d queued traces were not written", left)
        else:
            log.info("shutdown: every queued trace written")
        self.db.dispose()


def open_pipeline(settings: Settings, metrics: Metrics) -> tuple[Database, IngestPipeline]:
    """Open the database (migrating it), load the model and start an `IngestPipeline`.

    What every process that stores traces needs: the service, and the proxy's recorder
    process (`entropy_sentinel.service.proxy.record_worker`).
    """
    from entropy_sentinel.errors import ConfigError

    if settings.model_path is None:
        raise ConfigError(
            "sentinel serve needs --model PATH: an estimator artifact from `sentinel fit`"
        )
    db = open_database(settings.db_url, synchronous=settings.sqlite_synchronous)
    try:
        storage = Storage(db, settings.bucket)
        scorer = Scorer.load(settings.model_path, storage)
    except BaseException:
        db.dispose()
        raise
    pipeline = IngestPipeline(settings, storage, scorer, metrics)
    pipeline.start()
    return db, pipeline


async def service(request: Request) -> ServiceState:
    """FastAPI dependency: the running service (async: no thread hop per request)."""
    state: ServiceState = request.app.state.service
    return state
