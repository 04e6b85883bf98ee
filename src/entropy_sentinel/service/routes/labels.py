"""``POST /v1/labels`` (labels back from annotators) and ``POST /v1/recalibrate``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.service.api_models import LabelsIn, LabelsOut, RecalibrateIn, RecalibrateOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.labels import parse_rows, recalibrate
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.routes.estimates import one_scorer
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["router"]

router = APIRouter(tags=["labels"], dependencies=[Depends(require("ingest"))])


@router.post("/v1/labels", response_model=LabelsOut, responses=errors(400, 401, 403, 503))
async def post_labels(body: LabelsIn, svc: ServiceState = Depends(service)) -> dict[str, Any]:
    """Attach correctness labels to stored traces (by id). A new label for a labelled
    trace replaces the old one; unknown ids are listed, not stored. An item with
    ``"skipped": true`` records that the annotator skipped the trace (a labelled trace
    keeps its label)."""
    rejections: list[str] = []
    skips: list[str] = []
    for i, lab in enumerate(body.labels, start=1):
        if lab.skipped and lab.correct not in (None, ""):
            rejections.append(
                f"label {i} (id {lab.id!r}): `skipped` and `correct` together; send one of them"
            )
        elif lab.skipped:
            skips.append(lab.id)
    parsed = parse_rows(
        (
            (i, {"id": lab.id, "correct": lab.correct, "source": lab.source})
            for i, lab in enumerate(body.labels, start=1)
            if not lab.skipped
        ),
        unit="label",
    )
    by_source: dict[str, list[tuple[str, float]]] = {}
    for rid, y, source in parsed.labels:
        by_source.setdefault(source or body.source, []).append((rid, y))
    labelled = unchanged = 0
    unknown: list[str] = []
    for source, items in by_source.items():
        out = await run_in_threadpool(svc.storage.apply_labels, items, source=source)
        labelled += len(out.labelled)
        unchanged += len(out.unchanged)
        unknown.extend(out.unknown)
    skipped = 0
    if skips:
        outcome = await run_in_threadpool(svc.storage.record_skips, skips)
        skipped = len(outcome.skipped)
        unchanged += len(outcome.labelled)
        unknown.extend(outcome.unknown)
    return {
        "labelled": labelled,
        "unchanged": unchanged,
        "skipped": skipped,
        "blank": parsed.blank,
        "unknown": unknown,
        "rejections": [*rejections, *parsed.rejections],
    }


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
