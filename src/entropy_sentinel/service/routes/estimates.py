"""``GET /v1/estimates``, ``GET /v1/slices`` and ``GET /v1/model``: what the aggregates say."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.errors import StorageError
from entropy_sentinel.service.api_models import EstimatesOut, ModelOut, SlicesOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.estimates import EstimateQuery, estimate, slice_values
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.routes.common import errors, opt_duration, opt_instant, time_range
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.timeutil import format_instant

__all__ = ["router"]

router = APIRouter(tags=["estimates"], dependencies=[Depends(require("read"))])

_WEEK = 7 * 86_400


def active_scorer(svc: ServiceState) -> ScorerInfo:
    scorer = svc.storage.active_scorer()
    if scorer is None:  # pragma: no cover - the service registers its model at start
        raise StorageError("no model is registered in this database")
    return scorer


@router.get("/v1/estimates", response_model=EstimatesOut, responses=errors(400, 401, 403, 503))
async def get_estimates(
    svc: ServiceState = Depends(service),
    by: str = Query("*", max_length=64, description="Slice dimension, or `*` for all traffic."),
    window: str | None = Query(
        None, description="Window length, e.g. `1h`; omit for one window over the whole range."
    ),
    since: str | None = Query(
        None, description="Start (RFC 3339 or epoch seconds); default: the first stored trace."
    ),
    until: str | None = Query(None, description="End (exclusive); default: now."),
    reference: str | None = Query(
        None,
        description="Reference length before each window, "
        "e.g. `24h`; `none` for none. Default: the service's.",
    ),
    level: float | None = Query(None, gt=0.0, lt=1.0, description="Interval level."),
    min_count: int = Query(1, ge=1, le=1_000_000, description="Hide smaller windows."),
) -> dict[str, Any]:
    """Estimated accuracy per slice and window, with intervals and the change against
    the reference window; worst first within each window."""
    query = EstimateQuery(
        by=by,
        window=opt_duration(window, "window"),
        since=opt_instant(since, "since"),
        until=opt_instant(until, "until"),
        reference=svc.settings.reference
        if reference is None
        else opt_duration(reference, "reference"),
        level=svc.settings.level if level is None else level,
        min_count=min_count,
    )
    result = await run_in_threadpool(
        estimate, svc.db, active_scorer(svc), svc.settings.bucket, query, now=time.time()
    )
    return result.to_dict()


@router.get("/v1/slices", response_model=SlicesOut, responses=errors(400, 401, 403, 503))
async def get_slices(
    svc: ServiceState = Depends(service),
    since: str | None = Query(None, description="Start; default: 7 days before `until`."),
    until: str | None = Query(None, description="End (exclusive); default: now."),
) -> dict[str, Any]:
    """Every slice dimension and value seen in the range, with trace counts."""
    start, end = time_range(since, until, _WEEK)
    dims = await run_in_threadpool(slice_values, svc.db, active_scorer(svc).id, start, end)
    return {"since": format_instant(start), "until": format_instant(end), "dimensions": dims}


@router.get("/v1/model", response_model=ModelOut, responses=errors(401, 403, 503))
async def get_model(svc: ServiceState = Depends(service)) -> dict[str, Any]:
    """The active scorer: the estimator's model card, and its recalibration if any."""
    s = active_scorer(svc)
    pending = await run_in_threadpool(svc.scorer.pending)
    return {
        "scorer_id": s.id,
        "estimator_sha256": s.estimator_sha256,
        "entropy_mode": s.entropy_mode,
        "features": list(s.features),
        "model_sd": s.model_sd,
        "calibration": s.calibration,
        "note": s.note,
        "card": s.card,
        "rescore_pending": pending,
    }
