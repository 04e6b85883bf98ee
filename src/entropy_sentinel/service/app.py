"""`create_app`: the FastAPI application of the monitoring service.

Lifespan: at start, the database is opened and migrated, the estimators loaded and
registered per model, the writer thread started (`ServiceState.build`), and a
maintenance task runs every ``evaluate_every`` seconds: rescoring traces left by an
older estimator or calibration and scoring traces that waited for an estimator of
their model, applying the retention limits (waiting steps, stored text), evaluating
alert rules, delivering webhooks, refreshing the per-slice and per-model gauges (with
``--workers N``, in one worker only: `entropy_sentinel.service.duties`).
SIGHUP (in the main thread) re-reads the settings file and serves its models at once
(`ServiceState.reload`): a model added there is scored without a restart. At shutdown
(SIGTERM/SIGINT: uvicorn first stops accepting connections and lets in-flight requests
finish), the task is cancelled and every queued trace is written before the database
is closed.

Errors map to HTTP statuses in one place (`_ERRORS`); bodies are ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from entropy_sentinel import __version__
from entropy_sentinel.errors import (
    ArtifactError,
    ConfigError,
    EstimatorError,
    SentinelError,
    StorageError,
    TraceError,
    UpstreamError,
)
from entropy_sentinel.service.auth import AuthError, is_loopback
from entropy_sentinel.service.duties import DUTY_LOCK_ENV, Duties
from entropy_sentinel.service.estimates import slice_stats, slice_values
from entropy_sentinel.service.guard import RequestGuard
from entropy_sentinel.service.ingest import BodyError
from entropy_sentinel.service.metrics import Metrics, SliceGauge
from entropy_sentinel.service.middleware import RequestMiddleware
from entropy_sentinel.service.pipeline import UnavailableError
from entropy_sentinel.service.routes import ROUTERS
from entropy_sentinel.service.routes.ingest import record_schemas
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.slice_numbers import finish_slice
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.validation import validation_body
from entropy_sentinel.timeutil import bucket_of

__all__ = ["create_app", "maintain_once"]

log = logging.getLogger("entropy_sentinel.service")

# exception class -> HTTP status (the most specific class wins)
_ERRORS: dict[type[Exception], int] = {
    TraceError: 422,
    EstimatorError: 422,
    ConfigError: 400,
    ArtifactError: 503,
    UnavailableError: 503,
    StorageError: 503,
    UpstreamError: 502,
    SentinelError: 500,
}


def create_app(settings: Settings, *, state: ServiceState | None = None) -> FastAPI:
    """The service app.

    ``state``: an already built `ServiceState` (the CLI builds it first, so a bad model or
    database is a clear error before the server starts); by default it is built when
    the app starts. Either way the app closes it at shutdown.
    """
    m = state.metrics if state is not None else Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal state
        if state is None:
            state = await run_in_threadpool(ServiceState.build, settings, m)
        app.state.service = state
        _announce(state)
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def wake_up() -> None:
            loop.call_soon_threadsafe(wake.set)

        state.wake = wake_up
        hup = _on_sighup(loop, state)
        task = asyncio.create_task(_maintain(state, wake), name="sentinel-maintenance")
        try:
            yield
        finally:
            if hup:
                loop.remove_signal_handler(signal.SIGHUP)
            state.wake = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await run_in_threadpool(state.close)
            state = None

    app = FastAPI(
        title="entropy-sentinel",
        version=__version__,
        summary="Label-free, per-slice accuracy monitoring for LLMs from decoding entropy.",
        lifespan=lifespan,
    )
    for router in ROUTERS:
        app.include_router(router)
    _install_errors(app)
    app.add_middleware(  # inner: runs after the request id, size limit and access log
        RequestGuard, metrics=m, host=settings.host, allowed_hosts=settings.allowed_hosts
    )
    app.add_middleware(RequestMiddleware, metrics=m, max_body_bytes=settings.max_body_bytes)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schema.setdefault("components", {}).setdefault("schemas", {}).update(record_schemas())
        app.openapi_schema = schema
    return app.openapi_schema


def _install_errors(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, AuthError):
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)
        if isinstance(exc, BodyError):
            return JSONResponse({"detail": str(exc)}, status_code=exc.status)
        status = next(code for cls, code in _ERRORS.items() if isinstance(exc, cls))
        headers = None
        if isinstance(exc, UnavailableError):
            headers = {"Retry-After": str(exc.retry_after)}
        elif status == 503:
            headers = {"Retry-After": "5"}
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc, extra={"path": request.url.path[:200]})
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    classes: list[type[Exception]] = [AuthError, BodyError, *_ERRORS]
    for cls in classes:
        app.add_exception_handler(cls, handle)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse(validation_body(exc.errors()), status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)


def _on_sighup(loop: asyncio.AbstractEventLoop, state: ServiceState) -> bool:
    """Reload on SIGHUP; False where signals cannot be handled (not the main thread)."""
    sighup = getattr(signal, "SIGHUP", None)
    if sighup is None:
        return False
    try:
        loop.add_signal_handler(sighup, state.request_reload)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _announce(state: ServiceState) -> None:
    s = state.settings
    served = [m.name for m in state.models.served()]
    log.info(
        "entropy-sentinel %s serving: database %r, models %s%s, %d s buckets, "
        "%d alert rules, webhook %s, text %s",
        __version__,
        state.db,
        served,
        " and an unnamed estimator for every other model"
        if state.models.serves_every_model
        else "",
        s.bucket,
        len(s.alert_rules),
        "configured" if s.webhook_url else "off",
        "stored" if s.store_text else "not stored",
        extra={"db": repr(state.db), "models": served, "host": s.host, "port": s.port},
    )
    if s.loopback_only:
        log.warning(
            "no API keys configured: accepting requests from loopback clients only "
            "(127.0.0.1, ::1); set SENTINEL_INGEST_KEYS / SENTINEL_READ_KEYS or [[keys]] to "
            "serve other clients"
        )
        if not is_loopback(s.host) and s.host not in ("localhost",):
            log.warning(
                "listening on %s, but without API keys every non-loopback client is refused",
                s.host,
            )


async def _maintain(state: ServiceState, wake: asyncio.Event) -> None:
    duties = Duties(os.environ.get(DUTY_LOCK_ENV))  # one worker of several runs them
    try:
        while True:
            try:
                if duties.mine():
                    await maintain_once(state)
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must survive a bad cycle; the next one retries
                log.exception("maintenance cycle failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), state.settings.evaluate_every)
            wake.clear()
    finally:
        duties.release()


async def maintain_once(state: ServiceState) -> None:
    """One maintenance cycle (see the module docstring)."""
    if state.reload_requested:
        state.reload_requested = False
        await run_in_threadpool(state.reload)
    moved = await run_in_threadpool(state.models.rescore_pending, limit=2000, max_chunks=5)
    if moved:
        log.info("rescored %d traces with their models' active estimators", moved)
    state.rescore_pending = await run_in_threadpool(state.models.pending)
    state.metrics.rescore_pending.set(state.rescore_pending)
    await run_in_threadpool(_retention, state)
    await run_in_threadpool(state.alerts.evaluate)
    await state.alerts.deliver()
    await run_in_threadpool(_refresh_gauges, state)
    await run_in_threadpool(_watch_storage, state)


def _watch_storage(state: ServiceState) -> None:
    """Log storage problems and warnings when they appear, and when they clear."""
    report = state.storage_health.check(fresh=True)
    now = {*report.problems, *report.warnings}
    for text in sorted(now - state.storage_said):
        log.warning("storage: %s", text, extra={"storage": report.facts})
    if state.storage_said and not now:
        log.info("storage: the problems above have cleared", extra={"storage": report.facts})
    state.storage_said = now


def _retention(state: ServiceState) -> None:
    s, now = state.settings, time.time()
    dropped = state.storage.expire_waiting(
        max_traces=s.waiting_max_traces, max_age=s.waiting_max_age, now=now
    )
    if dropped:
        state.metrics.waiting_expired.inc(dropped)
        log.warning(
            "retention: dropped the steps of %d waiting traces (waiting_max_traces=%d, "
            "waiting_max_age=%d s); they stay stored unscored",
            dropped,
            s.waiting_max_traces,
            s.waiting_max_age,
        )
    deleted = state.storage.expire_texts(
        max_traces=s.text_max_traces, max_age=s.text_max_age, now=now
    )
    if deleted:
        state.metrics.texts_expired.inc(deleted)
        log.info("retention: deleted %d stored texts", deleted)


def _refresh_gauges(state: ServiceState) -> None:
    s = state.settings
    end = bucket_of(time.time(), s.bucket) + s.bucket
    start = end - s.metrics_window
    rows: list[SliceGauge] = []
    for scorer in state.storage.active_scorers():
        dims = slice_values(state.db, scorer.id, start, end)
        for dim in dims:
            for value, sums in slice_stats(state.db, scorer.id, dim, start, end).items():
                iv = finish_slice(scorer, sums, s.level)
                if iv.n and math.isfinite(iv.estimate):
                    rows.append(SliceGauge(scorer.model, dim, value, iv))
    rows.sort(key=lambda r: (-r.numbers.n, r.model, r.dimension, r.value))
    state.metrics.set_slices(rows[: s.metrics_max_slices])
    counts = {name: dataclasses.asdict(c) for name, c in state.storage.model_counts().items()}
    state.metrics.set_models(counts, s.metrics_max_slices)
