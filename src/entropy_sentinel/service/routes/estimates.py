"""``GET /v1/estimates``, ``GET /v1/slices`` and ``GET /v1/model``: what the aggregates say.

``model`` (repeatable on ``/v1/estimates`` and ``/v1/slices``) names models by key or
alias; without it the numbers cover every model, each trace scored by its own
estimator. `scorers_for` and `one_scorer` resolve it for the other routes too.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.redact import redact_json, redact_text
from entropy_sentinel.service.api_models import EstimatesOut, ModelOut, SlicesOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.estimates import EstimateQuery, estimate, slice_values
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.routes.common import errors, opt_duration, opt_instant, time_range
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.timeutil import format_duration, format_instant

__all__ = ["MODEL_QUERY", "one_scorer", "router", "scorers_for"]

router = APIRouter(tags=["estimates"], dependencies=[Depends(require("read"))])

_WEEK = 7 * 86_400


MODEL_QUERY = Query(
    None,
    max_length=256,
    description="Model (key or alias), repeatable; default: every model, each trace "
    "scored by its own estimator. `model=` (empty) names the traces that named none.",
)


def scorers_for(svc: ServiceState, names: list[str] | None) -> tuple[list[ScorerInfo], list[str]]:
    """The active scorers of the models ``names`` (default: every model with one), and
    the keys of the named models that have none."""
    if names is None:
        scorers = svc.storage.active_scorers()
        if not scorers:  # pragma: no cover - the service registers its models at start
            raise StorageError("no model is registered in this database")
        return scorers, []
    found: list[ScorerInfo] = []
    missing: list[str] = []
    for key in dict.fromkeys(svc.models.key(n) if n else "" for n in names):
        scorer = svc.storage.active_scorer(key)
        if scorer is None:
            missing.append(key)
        else:
            found.append(scorer)
    return found, missing


def one_scorer(svc: ServiceState, name: str | None) -> ScorerInfo:
    """The active scorer of model ``name``; without a name, the only model's (an error
    naming the models when there are several)."""
    if name is not None:
        found, missing = scorers_for(svc, [name])
        if missing:
            raise ConfigError(
                f"model {missing[0]!r} has no estimator (yet); GET /v1/models lists the models "
                "and their traces"
            )
        return found[0]
    scorers = svc.storage.active_scorers()
    if len(scorers) == 1:
        return scorers[0]
    if not scorers:  # pragma: no cover - the service registers its models at start
        raise StorageError("no model is registered in this database")
    names = ", ".join(repr(s.model) for s in scorers[:10])
    raise ConfigError(f"{len(scorers)} models have estimators ({names}); give model=NAME")


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
    model: list[str] | None = MODEL_QUERY,
) -> dict[str, Any]:
    """Estimated accuracy per slice and window, with intervals and the change against
    the reference window; worst first within each window. With `model` (repeatable),
    one set of records per model on the same slices and windows, each carrying its
    `model`; without, all models together, each trace scored by its own estimator."""
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
    scorers, missing = scorers_for(svc, model)
    if scorers:
        result = await run_in_threadpool(
            lambda: estimate(
                svc.db,
                scorers,
                svc.settings.bucket,
                query,
                now=time.time(),
                split=model is not None,
            )
        )
        out = result.to_dict()
    else:
        out = {"records": [], "models": [], "scorer_id": None, "model_sd": None}
        out.update(_empty_window(query))
    out["no_estimator"] = missing
    return out


def _empty_window(query: EstimateQuery) -> dict[str, Any]:
    """The query's echo when no asked model has an estimator (nothing to sum)."""
    now = time.time()
    return {
        "by": query.by,
        "window": None if query.window is None else format_duration(query.window),
        "since": format_instant(query.since if query.since is not None else now),
        "until": format_instant(query.until if query.until is not None else now),
        "reference": format_duration(query.reference) if query.reference else None,
        "level": query.level,
    }


@router.get("/v1/slices", response_model=SlicesOut, responses=errors(400, 401, 403, 503))
async def get_slices(
    svc: ServiceState = Depends(service),
    since: str | None = Query(None, description="Start; default: 7 days before `until`."),
    until: str | None = Query(None, description="End (exclusive); default: now."),
    model: list[str] | None = MODEL_QUERY,
) -> dict[str, Any]:
    """Every slice dimension and value seen in the range, with trace counts (of the
    given models, or of all)."""
    start, end = time_range(since, until, _WEEK)
    scorers, _ = scorers_for(svc, model)
    ids = [s.id for s in scorers]
    dims = await run_in_threadpool(slice_values, svc.db, ids, start, end) if ids else {}
    return {"since": format_instant(start), "until": format_instant(end), "dimensions": dims}


@router.get("/v1/model", response_model=ModelOut, responses=errors(400, 401, 403, 503))
async def get_model(
    svc: ServiceState = Depends(service),
    model: str | None = Query(
        None, max_length=256, description="Model; required when several have estimators."
    ),
) -> dict[str, Any]:
    """A model's active scorer: its estimator's model card, and its recalibration if any."""
    s = one_scorer(svc, model)
    pending = await run_in_threadpool(svc.models.pending, s.model)
    return {
        "model": s.model,
        "fitted_on": s.fitted_on,
        "other_model": s.other_model,
        "scorer_id": s.id,
        "estimator_sha256": s.estimator_sha256,
        "entropy_mode": s.entropy_mode,
        "features": list(s.features),
        "model_sd": s.model_sd,
        "calibration": s.calibration,
        "note": redact_text(s.note),
        "card": redact_json(s.card),
        "rescore_pending": pending,
    }
