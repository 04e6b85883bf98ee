"""One interface over every way of estimating a slice's accuracy, for the harness.

A `SliceMethod` is fitted on the labelled training rows of a group (their input
matrix, labels and domains) and then `assess`es any set of rows: an estimated
accuracy for the set, plus per-row confidences (for AUROC) and, where the method
has them, per-row probabilities of being correct (for the Brier score).

Adapters:

* `ClassifierMethod`: a `CorrectnessEstimator`; the estimate is the mean P.
* `ScoreBaselineMethod`: `ATC`, `AverageConfidence` or `DoC` on one baseline
  score (the first and only input column), oriented with `confidence_of`.
* `SliceEstimatorMethod`: an estimator of `entropy_sentinel.estimator.shift`
  (``fit(X, y, groups=...)``, ``estimate(X)``, ``predict_proba(X)``).

Every method is built fresh for each (configuration, group), so nothing learnt on
one group leaks into another. Within one group, configurations that wrap the same
classifier on the same inputs share its fit (`fit_classifier` with a `FitMemo`):
fitting is deterministic given the seed, so sharing changes no number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from entropy_sentinel._typing import FloatArray, ObjectArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence, DoC
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.scores import confidence_of

__all__ = [
    "BASELINES",
    "Assessment",
    "ClassifierMethod",
    "FitMemo",
    "ScoreBaselineMethod",
    "SliceEstimatorMethod",
    "SliceMethod",
    "fit_classifier",
]


@dataclass(frozen=True)
class Assessment:
    """A method's view of a set of rows.

    Attributes:
        estimate: estimated accuracy of the set, in [0, 1].
        confidence: ``(n,)`` per-row confidence, higher = more likely correct.
        proba: ``(n,)`` per-row P(correct), or None when the method has none.
    """

    estimate: float
    confidence: FloatArray
    proba: FloatArray | None


class SliceMethod(Protocol):
    """What the harness needs of a configuration (see the module docstring)."""

    def fit(self, X: FloatArray, y: FloatArray, domains: ObjectArray) -> SliceMethod: ...

    def assess(self, X: FloatArray) -> Assessment: ...


FitMemo = dict[tuple[Any, ...], CorrectnessEstimator]
"""Fitted classifiers of one task (one training group), by their parameters and inputs."""


def fit_classifier(
    params: Mapping[str, Any],
    X: FloatArray,
    y: FloatArray,
    seed: int,
    memo: FitMemo | None,
) -> CorrectnessEstimator:
    """A `CorrectnessEstimator` with ``params`` fitted on ``(X, y)``, shared through ``memo``.

    Fits are keyed by the parameters, the seed and a hash of the training rows
    themselves, so two configurations share a fit exactly when the classifier would
    see the same numbers; the memo saves fitting it again for every configuration
    that wraps it.
    """
    digest = hashlib.sha256(np.ascontiguousarray(X).tobytes())
    digest.update(np.ascontiguousarray(y).tobytes())
    key = (tuple(sorted(params.items())), X.shape, digest.hexdigest(), seed)
    if memo is not None and key in memo:
        return memo[key]
    est = CorrectnessEstimator(**params, random_state=seed).fit(X, y)
    if memo is not None:
        memo[key] = est
    return est


class ClassifierMethod:
    """A `CorrectnessEstimator` fitted on the input matrix; estimate = mean P(correct).

    Args:
        params: `CorrectnessEstimator` parameters (family, calibration, balance, ...).
        seed: its ``random_state``.
        memo: fits shared within one training group (None: no sharing).
    """

    def __init__(self, params: Mapping[str, Any], seed: int, memo: FitMemo | None = None) -> None:
        self.params = dict(params)
        self.seed = seed
        self.memo = memo

    def fit(self, X: FloatArray, y: FloatArray, domains: ObjectArray) -> ClassifierMethod:
        self.estimator_ = fit_classifier(self.params, X, y, self.seed, self.memo)
        return self

    def assess(self, X: FloatArray) -> Assessment:
        p = np.ascontiguousarray(self.estimator_.predict_proba(X)[:, 1])
        return Assessment(float(p.mean()), p, p)


BASELINES: tuple[str, ...] = ("atc", "ac", "doc")
"""Score baselines: ATC (any score), AC (score calibrated by isotonic regression on the
source), DoC (raw scores that are probabilities: ``lntp``, ``mtp``)."""


class ScoreBaselineMethod:
    """ATC, average confidence or DoC on one baseline score.

    Args:
        method: ``"atc"``, ``"ac"`` or ``"doc"``.
        score: the baseline score's name (its raw values are the single input column).
    """

    def __init__(self, method: str, score: str) -> None:
        if method not in BASELINES:
            raise ConfigError(f"baseline {method!r} is unknown; use one of {list(BASELINES)}")
        self.method = method
        self.score = score
        self.model: ATC | AverageConfidence | DoC
        if method == "atc":
            self.model = ATC()
        elif method == "ac":
            self.model = AverageConfidence(calibration="isotonic")
        else:
            self.model = DoC()

    def _confidence(self, X: FloatArray) -> FloatArray:
        if X.ndim != 2 or X.shape[1] != 1:
            raise ConfigError(f"a score baseline takes one input column, got shape {X.shape}")
        return np.asarray(confidence_of(self.score, X[:, 0]), dtype=np.float64)

    def fit(self, X: FloatArray, y: FloatArray, domains: ObjectArray) -> ScoreBaselineMethod:
        self.model.fit(self._confidence(X), y)
        return self

    def assess(self, X: FloatArray) -> Assessment:
        conf = self._confidence(X)
        proba = None
        if isinstance(self.model, AverageConfidence) and self.model.calibrator_ is not None:
            proba = self.model.calibrator_.transform(conf)
        return Assessment(float(self.model.estimate(conf)), conf, proba)


class SliceEstimatorMethod:
    """A shift estimator (`entropy_sentinel.estimator.shift`) around a shared classifier.

    The classifier (``classifier_params``) is fitted through `fit_classifier`, so the
    paper's configuration and every estimator wrapping it share one fit per group;
    it reaches the estimator frozen (`sklearn.frozen.FrozenEstimator`).

    Args:
        estimator_class: e.g. `SliceEnsemble`.
        params: the estimator's own parameters.
        classifier_params, seed, memo: as for `ClassifierMethod`. The classifier sees
            the first ``params["classifier_columns"]`` columns when that is set.
    """

    def __init__(
        self,
        estimator_class: type,
        params: Mapping[str, Any],
        classifier_params: Mapping[str, Any],
        seed: int,
        memo: FitMemo | None = None,
    ) -> None:
        self.estimator_class = estimator_class
        self.params = dict(params)
        self.classifier_params = dict(classifier_params)
        self.seed = seed
        self.memo = memo

    def fit(self, X: FloatArray, y: FloatArray, domains: ObjectArray) -> SliceEstimatorMethod:
        from sklearn.frozen import FrozenEstimator

        columns = self.params.get("classifier_columns")
        Xc = X if columns is None else np.ascontiguousarray(X[:, :columns])
        clf = fit_classifier(self.classifier_params, Xc, y, self.seed, self.memo)
        self.estimator_ = self.estimator_class(
            classifier=FrozenEstimator(clf), **self.params, random_state=self.seed
        ).fit(X, y, groups=domains)
        return self

    def assess(self, X: FloatArray) -> Assessment:
        p = np.ascontiguousarray(self.estimator_.predict_proba(X)[:, 1], dtype=np.float64)
        return Assessment(float(self.estimator_.estimate(X)), p, p)
