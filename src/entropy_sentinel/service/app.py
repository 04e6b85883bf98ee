"""`create_app`: the FastAPI application of the monitoring service.

Lifespan: at start, the database is opened and migrated, the model loaded and
registered, the writer thread started (`ServiceState.build`), and a maintenance task
runs every ``evaluate_every`` seconds: rescoring traces left by an older model or
calibration, evaluating alert rules, delivering webhooks, refreshing the per-slice
gauges (with ``--workers N``, in one worker only: `entropy_sentinel.service.duties`).
At shutdown (SIGTERM/SIGINT: uvicorn first stops accepting connections and lets
in-flight requests finish), the task is cancelled and every queued trace is
written before the database is closed.

Errors map to HTTP statuses in one place (`_ERRORS`); bodies are ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
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
from entropy_sentinel.service.ingest import BodyError
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.middleware import RequestMiddleware
from entropy_sentinel.service.pipeline import UnavailableError
from entropy_sentinel.service.routes import ROUTERS
from entropy_sentinel.service.routes.ingest import record_schemas
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.state import ServiceState
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
        task = asyncio.create_task(_maintain(state), name="sentinel-maintenance")
        try:
            yield
        finally:
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


def _announce(state: ServiceState) -> None:
    s = state.settings
    scorer = state.scorer.refresh()
    log.info(
        "entropy-sentinel %s serving: database %r, model %s (scorer %d), %d s buckets, "
        "%d alert rules, webhook %s",
        __version__,
        state.db,
        s.model_path,
        scorer.id,
        s.bucket,
        len(s.alert_rules),
        "configured" if s.webhook_url else "off",
        extra={"db": repr(state.db), "scorer_id": scorer.id, "host": s.host, "port": s.port},
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


async def _maintain(state: ServiceState) -> None:
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
            await asyncio.sleep(state.settings.evaluate_every)
    finally:
        duties.release()


async def maintain_once(state: ServiceState) -> None:
    """One maintenance cycle (see the module docstring)."""
    moved = await run_in_threadpool(state.scorer.rescore_pending, limit=2000, max_chunks=5)
    if moved:
        log.info("rescored %d traces with the active model", moved)
    state.rescore_pending = await run_in_threadpool(state.scorer.pending)
    state.metrics.rescore_pending.set(state.rescore_pending)
    await run_in_threadpool(state.alerts.evaluate)
    await state.alerts.deliver()
    await run_in_threadpool(_refresh_gauges, state)


def _refresh_gauges(state: ServiceState) -> None:
    s = state.settings
    scorer = state.storage.active_scorer()
    if scorer is None:
        return
    end = bucket_of(time.time(), s.bucket) + s.bucket
    start = end - s.metrics_window
    rows: list[tuple[str, str, int, float, float, float]] = []
    dims = slice_values(state.db, scorer.id, start, end)
    for dim in dims:
        for value, stats in slice_stats(state.db, scorer.id, dim, start, end).items():
            iv = stats.interval(s.level, scorer.model_sd)
            if stats.n and math.isfinite(iv.estimate):
                rows.append((dim, value, stats.n, iv.estimate, iv.lower, iv.upper))
    rows.sort(key=lambda r: (-r[2], r[0], r[1]))
    state.metrics.set_slices(rows[: s.metrics_max_slices])
