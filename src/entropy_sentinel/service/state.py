"""`ServiceState`: the parts of one running service, built at start and shared by routes.

Routes reach it with the `service` dependency (``request.app.state.service``).
Routers added later (the proxy, the dashboard) use the same object: the proxy calls
``service.pipeline.ingest_records([...])`` to record traces in-process.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from entropy_sentinel.redact import redact_url
from entropy_sentinel.service.alerts import AlertEngine
from entropy_sentinel.service.auth import Authenticator
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.model_registry import ModelRegistry
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import Database, open_database
from entropy_sentinel.service.storage.health import StorageMonitor
from entropy_sentinel.service.storage.store import Storage

__all__ = ["ServiceState", "open_pipeline", "open_spans", "service"]

log = logging.getLogger("entropy_sentinel.service")


@dataclass
class ServiceState:
    """Everything a running service holds (see the module docstring)."""

    settings: Settings
    db: Database
    storage: Storage
    models: ModelRegistry
    pipeline: IngestPipeline
    alerts: AlertEngine
    auth: Authenticator
    metrics: Metrics
    storage_health: StorageMonitor
    started_at: float = field(default_factory=time.time)
    rescore_pending: int = 0  # refreshed by the maintenance loop
    storage_said: set[str] = field(default_factory=set)  # storage problems already logged
    closed: bool = False
    reloader: Callable[[], Settings] | None = None
    reload_requested: bool = False
    wake: Callable[[], None] | None = None  # set by the app: runs maintenance now
    spans: Any = None  # entropy_sentinel.otel.EvaluationSpans, with otel_endpoint
    # called with the new settings after a successful `reload` (the proxy's recorder)
    reload_hooks: list[Callable[[Settings], None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        metrics: Metrics | None = None,
        *,
        reloader: Callable[[], Settings] | None = None,
    ) -> ServiceState:
        """Open the database (migrating it), load the estimators, and start the writer.

        ``reloader``: how `reload` gets new settings (``sentinel serve`` re-reads its
        ``--config`` file and command line).
        """
        m = metrics or Metrics()
        db, pipeline = open_pipeline(settings, m)
        monitor = pipeline.monitor
        assert monitor is not None  # open_pipeline gives every pipeline one
        spans = open_spans(settings)
        if spans is not None:
            pipeline.on_stored = spans.emit_stored
        pipeline.start()
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
            models=pipeline.models,  # type: ignore[arg-type]  # a ModelRegistry here
            pipeline=pipeline,
            alerts=engine,
            auth=Authenticator(settings.api_keys, m),
            metrics=m,
            storage_health=monitor,
            reloader=reloader,
            spans=spans,
        )

    def request_reload(self) -> None:
        """Ask the maintenance task to `reload` now (SIGHUP; thread-safe)."""
        self.reload_requested = True
        if self.wake is not None:
            self.wake()

    def reload(self, settings: Settings | None = None) -> bool:
        """Serve the models of ``settings`` (default: from the reloader) from now on.

        Only ``model``, ``models`` and ``default_model`` take effect; other changed
        options are named in the log (they need a restart). A bad new configuration
        is logged and leaves the running one in place. Returns whether it was applied.
        """
        if settings is None:
            if self.reloader is None:
                log.warning("reload: no settings file to re-read (start with --config)")
                return False
            try:
                settings = self.reloader()
            except Exception as exc:  # the running configuration stays
                log.error("reload failed, nothing changed: %s", exc)
                return False
        fields = ("model_path", "models", "default_model")
        kept = {name: getattr(self.settings, name) for name in fields}
        others = [
            f.name
            for f in dataclasses.fields(Settings)
            if f.name not in fields and getattr(settings, f.name) != getattr(self.settings, f.name)
        ]
        try:
            self.models.configure(settings.model_specs, settings.default_model)
        except Exception as exc:
            log.error("reload failed, nothing changed: %s", exc)
            return False
        self.settings = self.settings.replace(**{n: getattr(settings, n) for n in fields})
        changed = [n for n in fields if kept[n] != getattr(settings, n)]
        log.info(
            "reloaded: %d models served (%s)%s",
            len(self.models.served()),
            ", ".join(repr(s.name) for s in self.models.served()) or "unnamed estimator only",
            "" if changed else "; nothing changed",
        )
        if others:
            log.warning("reload: restart the service to apply the changes of %s", others)
        for hook in self.reload_hooks:
            hook(self.settings)
        return True

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


def open_pipeline(settings: Settings, metrics: Metrics) -> tuple[Database, IngestPipeline]:
    """Open the database (migrating it), load the estimators, and make an `IngestPipeline`
    (not started: the caller may hook it first).

    What every process that stores traces needs: the service, and the proxy's recorder
    process (`entropy_sentinel.service.proxy.record_worker`).
    """
    from entropy_sentinel.errors import ConfigError

    if not settings.model_specs:
        raise ConfigError(
            "sentinel serve needs an estimator: --model PATH, or --model NAME=PATH per "
            "model (repeatable), or [models.NAME] tables in --config (docs/service.md)"
        )
    db = open_database(settings.db_url, synchronous=settings.sqlite_synchronous)
    try:
        storage = Storage(db, settings.bucket)
        models = ModelRegistry(storage, settings.model_specs, settings.default_model)
    except BaseException:
        db.dispose()
        raise
    monitor = StorageMonitor(
        db, min_free_disk=settings.min_free_disk, wal_warn_bytes=settings.wal_warn_bytes
    )
    return db, IngestPipeline(settings, storage, models, metrics, monitor=monitor)


def open_spans(settings: Settings) -> Any:
    """The OpenTelemetry exporter of scored traces, when ``otel_endpoint`` is set."""
    if settings.otel_endpoint is None:
        return None
    from entropy_sentinel.otel import EvaluationSpans  # the `otel` extra

    log.info(
        "exporting one span per scored trace to %s (OTLP/HTTP)",
        redact_url(settings.otel_endpoint or ""),
    )
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
