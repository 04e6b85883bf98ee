"""``GET /v1/priorities``: which slices and responses to label next."""

from __future__ import annotations

import io
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.csv_safety import write_csv
from entropy_sentinel.service.api_models import PrioritiesOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.prioritize import prioritize
from entropy_sentinel.service.routes.common import errors, time_range
from entropy_sentinel.service.routes.estimates import active_scorer
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["router"]

router = APIRouter(tags=["labels"], dependencies=[Depends(require("read"))])

_WEEK = 7 * 86_400


@router.get(
    "/v1/priorities",
    response_model=PrioritiesOut,
    responses={
        **errors(400, 401, 403, 503),
        200: {
            "description": "JSON (default), or the annotator export as CSV / JSON Lines.",
            "content": {"text/csv": {}, "application/x-ndjson": {}},
        },
    },
)
async def get_priorities(
    svc: ServiceState = Depends(service),
    budget: int = Query(..., ge=1, le=100_000, description="Responses to label."),
    by: str = Query("domain", max_length=64, description="Slice dimension to rank."),
    since: str | None = Query(None, description="Start; default: 7 days before `until`."),
    until: str | None = Query(None, description="End (exclusive); default: now."),
    target: float | None = Query(
        None, ge=0.0, le=1.0, description="Target accuracy; default: the all-traffic estimate."
    ),
    seed: int = Query(0, ge=0, le=2**32 - 1, description="Sampling seed."),
    format: Literal["json", "csv", "jsonl"] = Query("json"),
) -> Any:
    """Slices ranked by priority with their share of the budget, and the responses to
    label (uniform random within each slice; see docs/service.md for the rule)."""
    start, end = time_range(since, until, _WEEK)
    result = await run_in_threadpool(
        lambda: prioritize(
            svc.db,
            active_scorer(svc),
            by=by,
            budget=budget,
            since=start,
            until=end,
            target=target,
            level=svc.settings.level,
            seed=seed,
        )
    )
    if format == "json":
        return result.to_dict()
    frame = result.requests_frame()
    if format == "csv":
        return Response(write_csv(frame), media_type="text/csv")
    buf = io.StringIO()
    frame.to_json(buf, orient="records", lines=True, force_ascii=False)
    return Response(buf.getvalue(), media_type="application/x-ndjson")
