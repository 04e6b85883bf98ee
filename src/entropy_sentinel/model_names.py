"""Which generating model an estimator was fitted for, and which models traces name.

An estimator is fitted on one model's traces: entropy scales differ between models, so
an estimator says nothing reliable about another model's answers. `sentinel fit`
records the model name of its training traces in the artifact's model card
(``card["training"]["model"]``, `fitted_model`); the service keys its estimators by
model and `sentinel estimate` refuses traces that name another model.

A trace names its model in the record's ``model`` field (the model the client asked
for), else in the response it carries (`TraceBatch.models`; None when neither says).

>>> card = {"training": {"n": 10}}
>>> record_model(card, "smollm2-135m")
>>> fitted_model(card)
'smollm2-135m'
>>> models_named(["a", None, "b", "a"])
['a', 'b']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

__all__ = ["fitted_model", "models_named", "record_model"]


def fitted_model(card: Mapping[str, Any]) -> str | None:
    """The model whose traces the estimator of ``card`` was fitted on, or None (unnamed)."""
    training = card.get("training")
    name = training.get("model") if isinstance(training, Mapping) else None
    return name if isinstance(name, str) and name else None


def record_model(card: MutableMapping[str, Any], name: str | None) -> None:
    """Record ``name`` as the model of the training traces in ``card`` (None: unnamed)."""
    training = card.setdefault("training", {})
    training["model"] = name or None


def models_named(models: Iterable[str | None]) -> list[str]:
    """The distinct model names of some traces (`TraceBatch.models`), sorted; None skipped."""
    return sorted({m for m in models if m})
