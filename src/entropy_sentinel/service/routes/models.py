"""``GET /v1/models``: the models of the service, their estimators and their traces."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.service.api_models import ModelsOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.service.storage.store import ModelCounts

__all__ = ["router"]

router = APIRouter(tags=["estimates"], dependencies=[Depends(require("read"))])


@router.get("/v1/models", response_model=ModelsOut, responses=errors(401, 403, 503))
async def get_models(svc: ServiceState = Depends(service)) -> dict[str, Any]:
    """Every model the service serves or has stored traces of: its aliases, its active
    estimator (null while none is registered), and its traces: scored, waiting for an
    estimator, refused by the registered one, expired (kept unscored by the retention
    limit)."""
    return await run_in_threadpool(_models, svc)


def _models(svc: ServiceState) -> dict[str, Any]:
    registry = svc.models
    counts = svc.storage.model_counts()
    active = {s.model: s for s in svc.storage.active_scorers()}
    names = sorted({s.name for s in registry.served()} | set(active) | set(counts))
    return {
        "default_model": registry.default_key,
        "serves_every_model": registry.serves_every_model,
        "models": [
            {
                "name": name,
                "aliases": list(registry.aliases_of(name)),
                "serving": registry.serves(name),
                "estimator": None if name not in active else _estimator(active[name]),
                "traces": vars(counts.get(name, ModelCounts())),
            }
            for name in names
        ],
    }


def _estimator(s: ScorerInfo) -> dict[str, Any]:
    card = s.card
    params = card.get("params", {}) if isinstance(card.get("params"), dict) else {}
    metrics = card.get("metrics", {}) if isinstance(card.get("metrics"), dict) else {}
    return {
        "scorer_id": s.id,
        "estimator_sha256": s.estimator_sha256,
        "fitted_on": s.fitted_on,
        "other_model": s.other_model,
        "family": params.get("family"),
        "entropy_mode": s.entropy_mode,
        "model_sd": s.model_sd,
        "cv_auroc": metrics.get("cv_auroc"),
        "recalibrated": s.calibration is not None,
    }
