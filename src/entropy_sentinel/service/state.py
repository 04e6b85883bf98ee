"""`ServiceState`: the parts of one running service, built at start and shared by routes.

Routes reach it with the `service` dependency (``request.app.state.service``).
Routers added later (the proxy, the dashboard) use the same object: the proxy calls
``service.pipeline.ingest_records([...])`` to record traces in-process.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from entropy_sentinel.service.alerts import AlertEngine
from entropy_sentinel.service.auth import Authenticator
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.scoring import Scorer
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import Database, open_database
from entropy_sentinel.service.storage.store import Storage

__all__ = ["ServiceState", "service"]

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
    spans: Any = None  # entropy_sentinel.otel.EvaluationSpans, with otel_endpoint

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> ServiceState:
        """Open the database (migrating it), load the model, and start the writer."""
        from entropy_sentinel.errors import ConfigError

        if settings.model_path is None:
            raise ConfigError(
                "sentinel serve needs --model PATH: an estimator artifact from `sentinel fit`"
            )
        m = metrics or Metrics()
        db = open_database(settings.db_url, synchronous=settings.sqlite_synchronous)
        try:
            storage = Storage(db, settings.bucket)
            scorer = Scorer.load(settings.model_path, storage)
        except BaseException:
            db.dispose()
            raise
        pipeline = IngestPipeline(settings, storage, scorer, m)
        spans = _spans(settings)
        if spans is not None:
            pipeline.on_stored = spans.emit_stored
        pipeline.start()
        engine = AlertEngine(
            settings.alert_rules,
            storage,
            m,
            webhook_url=settings.webhook_url,
            webhook_timeout=settings.webhook_timeout,
        )
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            scorer=scorer,
            pipeline=pipeline,
            alerts=engine,
            auth=Authenticator(settings.api_keys, m),
            metrics=m,
            spans=spans,
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
        if self.spans is not None:
            self.spans.shutdown()  # export the spans still queued
        self.db.dispose()


def _spans(settings: Settings) -> Any:
    """The OpenTelemetry exporter of scored traces, when ``otel_endpoint`` is set."""
    if settings.otel_endpoint is None:
        return None
    from entropy_sentinel.otel import EvaluationSpans  # the `otel` extra

    log.info("exporting one span per scored trace to %s (OTLP/HTTP)", settings.otel_endpoint)
    base = settings.otel_endpoint.removesuffix("/").removesuffix("/v1/traces")
    return EvaluationSpans(
        settings.otel_endpoint,
        service_name=settings.otel_service_name,
        max_slice_values=settings.otel_max_slice_values,
        phoenix=base if settings.otel_phoenix_annotations else None,
    )


async def service(request: Request) -> ServiceState:
    """FastAPI dependency: the running service (async: no thread hop per request)."""
    state: ServiceState = request.app.state.service
    return state
