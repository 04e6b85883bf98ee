"""``GET /v1/alerts``: alert episodes, newest first."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.service.alerts import list_alerts
from entropy_sentinel.service.api_models import AlertsOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["router"]

router = APIRouter(tags=["alerts"], dependencies=[Depends(require("read"))])


@router.get("/v1/alerts", response_model=AlertsOut, responses=errors(401, 403, 503))
async def get_alerts(
    svc: ServiceState = Depends(service),
    status: Literal["open", "resolved", "all"] = Query("all"),
    limit: int = Query(100, ge=1, le=10_000),
    model: list[str] | None = Query(
        None, max_length=256, description="Model (key or alias), repeatable; default: all."
    ),
) -> dict[str, Any]:
    """Alert episodes (each of one model) with the evidence that opened them and the
    latest evidence."""
    keys = None if model is None else [svc.models.key(m) if m else "" for m in model]
    rows = await run_in_threadpool(
        lambda: list_alerts(svc.db, status=status, limit=limit, models=keys)
    )
    return {"rules": [r.describe() for r in svc.settings.alert_rules], "alerts": rows}
