"""``POST /v1/labels`` (labels back from annotators) and ``POST /v1/recalibrate``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.service.api_models import LabelsIn, LabelsOut, RecalibrateIn, RecalibrateOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.labels import import_labels, parse_rows, recalibrate
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.routes.estimates import one_scorer
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["router"]

router = APIRouter(tags=["labels"], dependencies=[Depends(require("ingest"))])


@router.post("/v1/labels", response_model=LabelsOut, responses=errors(400, 401, 403, 503))
async def post_labels(body: LabelsIn, svc: ServiceState = Depends(service)) -> dict[str, Any]:
    """Attach correctness labels to stored traces (by id). A label for a response of a
    labelling design (`GET /v1/priorities`) carries its inclusion probability and is
    counted as `designed`; any other label is `plain` (a simple random sample of its
    slice, as far as the estimates know). A new label for a labelled trace replaces the
    old one; unknown ids are listed, not stored. `{"id": ..., "skipped": true}` records
    that the annotator skipped the item (a labelled trace keeps its label)."""
    parsed = parse_rows(
        (
            (
                i,
                {
                    "id": lab.id,
                    "correct": lab.correct,
                    "source": lab.source,
                    "skipped": lab.skipped,
                },
            )
            for i, lab in enumerate(body.labels, start=1)
        ),
        unit="label",
    )
    outcome = await run_in_threadpool(
        lambda: import_labels(svc.storage, parsed, source=body.source)
    )
    return outcome.to_dict()


@router.post(
    "/v1/recalibrate", response_model=RecalibrateOut, responses=errors(400, 401, 403, 422, 503)
)
async def post_recalibrate(
    body: RecalibrateIn, svc: ServiceState = Depends(service)
) -> dict[str, Any]:
    """Fit a recalibration of one model's estimator on its stored labels; activate it (and
    rescore the model's stored traces) when it lowers the cross-validated Brier score, or
    when forced."""
    scorer = one_scorer(svc, body.model)
    outcome = await run_in_threadpool(
        lambda: recalibrate(
            svc.storage,
            model=scorer.model,
            method=body.method,
            min_labels=body.min_labels,
            force=body.force,
        )
    )
    for s in svc.models.scorers():
        if s.model == scorer.model:
            s.refresh(force=True)
    return {"model": scorer.model, **outcome.to_dict()}
