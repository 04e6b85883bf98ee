"""``GET /v1/priorities``: the open labelling design of one model and slice dimension.

It creates the design, or returns the open one (`entropy_sentinel.service.prioritize`).
Each label request carries its ``design_id``, ``inclusion_probability`` and ``status``,
and ``prompt`` and ``answer`` when the service stores text (``store_text``) and the
caller's key has the ``text`` scope; else they are null.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.csv_safety import write_csv
from entropy_sentinel.service.api_models import PrioritiesOut
from entropy_sentinel.service.auth import require, text_allowed
from entropy_sentinel.service.label_export import labels_jsonl, with_texts
from entropy_sentinel.service.prioritize import prioritize
from entropy_sentinel.service.routes.common import errors, time_range
from entropy_sentinel.service.routes.estimates import one_scorer
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
    seed: int = Query(0, ge=0, le=2**32 - 1, description="Seed of a new design's draw."),
    minimum: int = Query(5, ge=0, le=10_000, description="Labels per slice before the rest."),
    new: bool = Query(False, description="Close the open design and draw a new one."),
    status: Literal["pending", "all"] = Query(
        "pending", description="Requests to list: the pending ones, or every drawn one."
    ),
    format: Literal["json", "csv", "jsonl"] = Query("json"),
    model: str | None = Query(
        None, max_length=256, description="Model; required when several have estimators."
    ),
    with_text: bool = Depends(text_allowed),
) -> Any:
    """The open labelling design of one model and slice dimension, drawn now when there
    is none with pending items (or with `new`): the budget shared over the slices by
    their label-free interval widths, each slice's responses drawn with known inclusion
    probabilities (active Poisson sampling, seeded; docs/service.md). While a design has
    pending items it is returned as stored (its range, budget and seed). The responses
    carry their prompt and answer for keys with the `text` scope."""
    start, end = time_range(since, until, _WEEK)
    scorer = one_scorer(svc, model)
    result = await run_in_threadpool(
        lambda: prioritize(
            svc.db,
            scorer,
            by=by,
            budget=budget,
            since=start,
            until=end,
            target=target,
            level=svc.settings.level,
            seed=seed,
            minimum=minimum,
            new=new,
            status=status,
        )
    )
    if with_text and svc.settings.store_text:
        result = await run_in_threadpool(with_texts, svc.storage, result)
    if format == "json":
        return result.to_dict()
    if format == "csv":
        return Response(write_csv(result.requests_frame()), media_type="text/csv")
    return Response(labels_jsonl(result), media_type="application/x-ndjson")
