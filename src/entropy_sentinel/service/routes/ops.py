"""``GET /healthz`` (no key needed) and ``GET /metrics`` (Prometheus text, read scope)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from entropy_sentinel import __version__
from entropy_sentinel.service.api_models import Health
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(svc: ServiceState = Depends(service)) -> JSONResponse:
    """Liveness and readiness: the database answers and takes writes, and the writer runs
    (200); else 503 "degraded" with the problems (a failing write, a nearly full disk, a
    read-only database, failing WAL checkpoints). ``warnings`` (a growing WAL) keep 200."""
    problems = []

    def ping() -> str:
        with svc.db.read.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return "ok"

    try:
        database = await run_in_threadpool(ping)
    except Exception as exc:  # the answer is the diagnosis
        database = "unreachable"
        problems.append(f"database: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    writer = "running" if svc.pipeline.alive else "stopped"
    if writer != "running":
        problems.append("the writer thread is not running")
    report = await run_in_threadpool(svc.storage_health.check)
    problems.extend(report.problems)
    default = svc.models.default_scorer()
    scorer = None if default is None else default.refresh()
    body: dict[str, Any] = {
        "status": "ok" if not problems else "degraded",
        "version": __version__,
        "database": database,
        "writer": writer,
        "pending_traces": svc.pipeline.pending,
        "rescore_pending": svc.rescore_pending,
        "scorer_id": None if scorer is None else scorer.id,
        "problems": problems,
        "warnings": list(report.warnings),
        "storage": report.facts,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


@router.get(
    "/metrics",
    dependencies=[Depends(require("read"))],
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        **errors(401, 403),
    },
)
async def metrics(svc: ServiceState = Depends(service)) -> Response:
    """Prometheus metrics (see `entropy_sentinel.service.metrics` for the names)."""
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
