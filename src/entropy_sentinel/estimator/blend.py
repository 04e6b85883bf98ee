"""Blend members of a `CorrectnessEstimator`: score baselines averaged with its P(correct).

A blend member is ``"METHOD:SCORE"``: ``METHOD`` is ``atc`` (`ATC`: 1 above the
threshold fitted on the training data so that the fraction above it equals the
training accuracy, 0 below, the tie weight on it) or ``ac`` (`AverageConfidence`:
the score mapped to P(correct) by isotonic regression on the training data);
``SCORE`` is any registered baseline score (`entropy_sentinel.scores.SCORES`), whose
orientation the registry knows. Every member gives each response a value in [0, 1]
whose mean over a slice is that member's estimate of the slice's accuracy; the
estimator's per-response value is the equal-weight mean of its own calibrated P and
its members' values, so a slice's estimate is the mean of the members' estimates and
it sums and merges like any P(correct).

Why: on the SmolLM2 corpus (13 domains, every training pair of domains, the paper's
protocol) the paper's random forest alone had median AEE 0.141 and ATC on max
entropy 0.148; their blend with average confidence of ``nll_avg`` had 0.116, with a
higher Spearman rho (docs/results/README.md). The members have different biases under
domain shift, and their errors partly cancel.

The score columns come after the classifier's features in ``X`` (one column per
member, in member order): `CorrectnessEstimator.featurize` appends them.

>>> parse_blend(("atc:max_entropy", "ac:nll_avg"))
(('atc', 'max_entropy'), ('ac', 'nll_avg'))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence
from entropy_sentinel.scores import SCORES, confidence_of

__all__ = [
    "BLEND_METHODS",
    "BlendModel",
    "blend_values",
    "fit_blend",
    "member_value",
    "parse_blend",
]

BlendModel = ATC | AverageConfidence
BLEND_METHODS: tuple[str, ...] = ("atc", "ac")


def parse_blend(blend: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``(method, score)`` per member; `ConfigError` naming a malformed member."""
    if blend is None:
        return ()
    if isinstance(blend, str):
        raise ConfigError(
            f"blend={blend!r} must be a sequence of members such as "
            "('atc:max_entropy', 'ac:nll_avg'), not one string"
        )
    parsed = []
    for member in blend:
        method, _, name = str(member).partition(":")
        if method not in BLEND_METHODS or name not in SCORES:
            raise ConfigError(
                f"blend member {member!r}: use METHOD:SCORE with METHOD one of "
                f"{list(BLEND_METHODS)} and SCORE one of {list(SCORES)} "
                "(e.g. 'atc:max_entropy')"
            )
        parsed.append((method, name))
    return tuple(parsed)


def fit_blend(
    members: Sequence[tuple[str, str]], scores: FloatArray, y01: FloatArray
) -> list[BlendModel]:
    """Fit each member on its score column of ``scores`` ``(n, len(members))``."""
    models: list[BlendModel] = []
    for j, (method, name) in enumerate(members):
        conf = confidence_of(name, scores[:, j])
        model = ATC() if method == "atc" else AverageConfidence(calibration="isotonic")
        models.append(model.fit(conf, y01))
    return models


def blend_values(
    members: Sequence[tuple[str, str]], models: Sequence[BlendModel], scores: FloatArray
) -> FloatArray:
    """``(n, len(members))`` per-response values in [0, 1] of each member."""
    columns = [
        member_value(model, confidence_of(name, scores[:, j]))
        for j, ((_, name), model) in enumerate(zip(members, models, strict=True))
    ]
    if not columns:
        return np.zeros((scores.shape[0], 0))
    return np.column_stack(columns).astype(np.float64)


def member_value(model: BlendModel, conf: FloatArray) -> FloatArray:
    """Per-response value in [0, 1] of a fitted member, from confidence-oriented scores:
    ATC: 1 above its threshold, 0 below, the tie weight on it; AC: the isotonic map."""
    if isinstance(model, ATC):
        ties = conf == model.threshold_
        return np.asarray((conf > model.threshold_) + ties * model.tie_weight_, dtype=np.float64)
    assert model.calibrator_ is not None  # fitted with calibration="isotonic"
    return np.asarray(model.calibrator_.transform(conf), dtype=np.float64)
