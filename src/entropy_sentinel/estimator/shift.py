"""Slice-accuracy estimators built for domain shift, beyond the paper's mean calibrated P.

The paper estimates a slice's accuracy as the mean of a calibrated classifier's
P(correct). Calibration is learnt on the training domains, so on a domain with
other features or another base rate the map is off, and the estimates stay near
the training accuracy. The estimators here try to correct for that; each wraps
a `CorrectnessEstimator` (``classifier``: any family, grid, calibration,
balancing; the paper's configuration by default) and shares one API:

* ``fit(X, y, groups=None)``: ``X`` the ``(n, d)`` features, ``y`` binary labels,
  ``groups`` the ``(n,)`` training domain of each row (used by
  `DomainHoldoutCalibrated`, accepted and ignored by the others);
* ``estimate(X) -> float``: estimated accuracy of the slice ``X``, in [0, 1];
* ``predict_proba(X)``: ``(n, 2)`` per-row probabilities (the wrapped classifier's;
  the recalibrated ones for `DomainHoldoutCalibrated`; the members' weighted per-row
  values for `SliceEnsemble`).

=============================  ===================================================
estimator                      slice estimate
=============================  ===================================================
`ClassifierATC`                ATC (Garg et al. 2022) with the classifier's P as
                               the score: the fraction of the slice above the
                               threshold that reproduces the source accuracy
`SliceEnsemble`                weighted mean of the classifier's mean P and score
                               baselines (ATC, AC) on input columns (default:
                               equal weights, ATC on ``h_max``); also per row
`QuantificationAdjusted`       the mean P corrected for a change of the base rate:
                               ``pacc`` (probabilistic adjusted classify-and-count,
                               Bella et al. 2010) or ``emq`` (EM re-estimation of
                               the prior, Saerens et al. 2002)
`ImportanceWeighted`           doubly robust: ``mean(P) + sum_s w (y - P_oof) /
                               sum_s w`` with covariate-shift weights ``w`` from a
                               logistic domain classifier (source vs slice)
`DomainHoldoutCalibrated`      calibration map fitted on leave-one-domain-out scores
                               (each training domain scored by a model that did not
                               see it), so it learns how the classifier behaves on
                               unseen domains
=============================  ===================================================

Hyper-parameters were fixed by rule before any comparison (docs/evaluation.md):
equal ensemble weights, importance weights normalised to mean 1 and clipped at
``max_weight=20``, EM tolerance 1e-6.

Every source-side statistic (the ATC threshold, PACC's class-conditional means, the
doubly robust residuals) is computed from honest out-of-fold probabilities
(``oof_proba_``): the classifier's out-of-fold scores, cross-calibrated so that no
row's probability comes from a map that saw its label.

>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(300, 2)); y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
>>> clf = CorrectnessEstimator(family="lr", random_state=0)
>>> est = SliceEnsemble(classifier=clf, random_state=0).fit(X, y)
>>> 0.0 <= est.estimate(X[X[:, 0] > 1]) <= 1.0
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence
from entropy_sentinel.estimator.blend import member_value
from entropy_sentinel.estimator.calibration import (
    Calibrator,
    check_calibration,
    cross_calibrate,
    fit_calibrator,
)
from entropy_sentinel.estimator.grids import make_model
from entropy_sentinel.estimator.model import CorrectnessEstimator

__all__ = [
    "QUANTIFIERS",
    "ClassifierATC",
    "DomainHoldoutCalibrated",
    "ImportanceWeighted",
    "QuantificationAdjusted",
    "SliceEnsemble",
]


class _ShiftEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Shared fitting: the wrapped classifier and its honest out-of-fold probabilities.

    ``classifier`` is a `CorrectnessEstimator` template (cloned before fitting; None:
    the paper's configuration, ``CorrectnessEstimator(random_state=random_state)``,
    i.e. random forest, isotonic, balanced). A fitted one wrapped in
    `sklearn.frozen.FrozenEstimator` is used as it is, which lets several estimators
    share one fit. Subclasses list every parameter in their own ``__init__``
    (scikit-learn reads parameters from the signature).
    """

    classifier: Any
    random_state: int | None

    def _fit_classifier(self, X: npt.ArrayLike, y: npt.ArrayLike) -> FloatArray:
        """Fit ``classifier_``; set ``classes_``, ``oof_proba_``; return y as 0/1 floats."""
        template = (
            CorrectnessEstimator(random_state=self.random_state)
            if self.classifier is None
            else self.classifier
        )
        clf = clone(template).fit(X, y)
        self.classifier_ = clf
        self.classes_ = clf.classes_
        self.n_features_in_ = clf.n_features_in_
        y01: FloatArray = (np.asarray(y) == clf.classes_[1]).astype(np.float64)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        folds = list(
            StratifiedKFold(n_splits=clf.n_splits_, shuffle=True, random_state=seed).split(
                clf.oof_scores_, y01
            )
        )
        method = check_calibration(clf.calibration)
        self.oof_proba_ = cross_calibrate(method, clf.oof_scores_, y01, folds)
        self.source_accuracy_ = float(y01.mean())
        return y01

    def _proba(self, X: npt.ArrayLike) -> FloatArray:
        check_is_fitted(self)
        return np.asarray(self.classifier_.predict_proba(X)[:, 1], dtype=np.float64)

    def predict_proba(self, X: npt.ArrayLike) -> FloatArray:
        """``(n, 2)`` probabilities of ``classes_[0]`` and ``classes_[1]`` (correct)."""
        p = self._proba(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])

    def estimate(self, X: npt.ArrayLike) -> float:
        """Estimated accuracy of the slice ``X`` (the mean P unless overridden)."""
        return float(self._proba(X).mean())


class ClassifierATC(_ShiftEstimator):
    """ATC with the classifier's P(correct) as the confidence score.

    The threshold is fitted on the honest out-of-fold probabilities of the source
    (``oof_proba_``), so that it reproduces the source accuracy on data like the
    data it will be applied to.
    """

    def __init__(
        self,
        classifier: Any = None,
        random_state: int | None = None,
    ) -> None:
        self.classifier = classifier
        self.random_state = random_state

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> ClassifierATC:
        y01 = self._fit_classifier(X, y)
        self.atc_ = ATC().fit(self.oof_proba_, y01)
        return self

    def estimate(self, X: npt.ArrayLike) -> float:
        return float(self.atc_.estimate(self._proba(X)))


class SliceEnsemble(_ShiftEstimator):
    """Weighted mean of several slice estimates: the classifier's and score baselines'.

    Every member's slice estimate is a mean over the slice's rows of a per-row value
    in [0, 1]: the classifier's P(correct); for ATC, 1 above its threshold, 0 below
    and the tie weight on it; for AC, the isotonic-calibrated score. So the ensemble
    has a per-row value too, the weighted mean of its members' (`predict_proba`),
    and its slice estimate is exactly the mean of those values: it can be summed,
    merged and served like any P(correct).

    Args:
        members: what is averaged, each ``"classifier"`` or
            ``"METHOD:COLUMN:ORIENTATION"``: ``METHOD`` ``atc`` (`ATC`) or ``ac``
            (`AverageConfidence`, isotonic-calibrated) on input column ``COLUMN``,
            whose ``ORIENTATION`` is ``uncertainty`` (higher = more likely wrong, like
            an entropy) or ``confidence``. Default: the classifier and ATC on column 0
            (``h_max`` in the profile feature sets).
        weights: one weight per member (None: equal weights); normalised to sum 1.
        classifier_columns: the classifier sees the first this many columns (None:
            all), so that columns kept for the baselines need not be features.
        classifier: the `CorrectnessEstimator` template (None: the paper's).
        random_state: seed of the out-of-fold calibration folds (and of the default
            classifier).

    ``member_estimates_`` holds the members' estimates of the last slice estimated.
    """

    def __init__(
        self,
        members: tuple[str, ...] = ("classifier", "atc:0:uncertainty"),
        weights: tuple[float, ...] | None = None,
        classifier_columns: int | None = None,
        classifier: Any = None,
        random_state: int | None = None,
    ) -> None:
        self.members = members
        self.weights = weights
        self.classifier_columns = classifier_columns
        self.classifier = classifier
        self.random_state = random_state

    def _parse(self, n_features: int) -> list[tuple[str, int, bool]]:
        parsed = []
        for member in self.members:
            if member == "classifier":
                parsed.append(("classifier", -1, True))
                continue
            parts = member.split(":")
            ok = len(parts) == 3 and parts[0] in ("atc", "ac")
            ok = ok and parts[2] in ("uncertainty", "confidence") and parts[1].isdigit()
            if not ok or int(parts[1]) >= n_features:
                raise ConfigError(
                    f"ensemble member {member!r}: use 'classifier' or METHOD:COLUMN:ORIENTATION "
                    f"with METHOD atc or ac, COLUMN below {n_features} and ORIENTATION "
                    "uncertainty or confidence (e.g. 'atc:0:uncertainty')"
                )
            parsed.append((parts[0], int(parts[1]), parts[2] == "confidence"))
        if not parsed:
            raise ConfigError("an ensemble needs at least one member")
        return parsed

    def _columns(self, X: npt.ArrayLike) -> FloatArray:
        Xa = np.asarray(X, dtype=np.float64)
        return Xa if self.classifier_columns is None else Xa[:, : self.classifier_columns]

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> SliceEnsemble:
        Xa = np.asarray(X, dtype=np.float64)
        parsed = self._parse(Xa.shape[1])
        w = np.ones(len(parsed)) if self.weights is None else np.asarray(self.weights, float)
        if w.shape != (len(parsed),) or (w < 0).any() or w.sum() <= 0:
            raise ConfigError(
                f"weights={self.weights!r}: give one non-negative weight per member "
                f"({len(parsed)}), not all zero"
            )
        self.weights_ = w / w.sum()
        y01 = self._fit_classifier(self._columns(Xa), y)
        self.baselines_: list[tuple[int, bool, ATC | AverageConfidence] | None] = []
        for method, column, confidence in parsed:
            if method == "classifier":
                self.baselines_.append(None)
                continue
            score = Xa[:, column] if confidence else -Xa[:, column]
            model = ATC() if method == "atc" else AverageConfidence(calibration="isotonic")
            self.baselines_.append((column, confidence, model.fit(score, y01)))
        return self

    def member_values(self, X: npt.ArrayLike) -> FloatArray:
        """``(n, n_members)`` per-row values of each member (their column means are the
        members' slice estimates)."""
        check_is_fitted(self)
        Xa = np.asarray(X, dtype=np.float64)
        columns = []
        for member in self.baselines_:
            if member is None:
                columns.append(super()._proba(self._columns(Xa)))
                continue
            column, confidence, model = member
            columns.append(member_value(model, Xa[:, column] if confidence else -Xa[:, column]))
        return np.column_stack(columns).astype(np.float64)

    def _proba(self, X: npt.ArrayLike) -> FloatArray:
        return np.asarray(self.member_values(X) @ self.weights_, dtype=np.float64)

    def estimate(self, X: npt.ArrayLike) -> float:
        values = self.member_values(X)
        self.member_estimates_ = values.mean(axis=0).tolist()
        return float(values.mean(axis=0) @ self.weights_)


QUANTIFIERS: tuple[str, ...] = ("pacc", "emq")


class QuantificationAdjusted(_ShiftEstimator):
    """The mean P corrected for a shift of the base rate (prior probability shift).

    * ``pacc``: with ``a = E_src[P | correct]`` and ``b = E_src[P | wrong]`` (out of
      fold), a slice of accuracy ``A`` has ``E[P] = A a + (1 - A) b`` if only the base
      rate changed, so ``A = (mean P - b) / (a - b)``, clipped to [0, 1]. When
      ``a - b < 0.01`` the classifier cannot tell the classes apart and the plain
      mean P is returned.
    * ``emq``: the expectation-maximisation of Saerens et al. (2002): the slice's
      prior ``pi`` and its rows' posteriors are updated in turn,
      ``P' = (pi / pi_s) P / ((pi / pi_s) P + ((1 - pi) / (1 - pi_s)) (1 - P))``,
      ``pi = mean P'``, from ``pi = pi_s`` (the source accuracy) until ``pi`` moves
      less than ``tol``.
    """

    def __init__(
        self,
        method: str = "pacc",
        tol: float = 1e-6,
        max_iter: int = 1000,
        classifier: Any = None,
        random_state: int | None = None,
    ) -> None:
        self.method = method
        self.tol = tol
        self.max_iter = max_iter
        self.classifier = classifier
        self.random_state = random_state

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> QuantificationAdjusted:
        if self.method not in QUANTIFIERS:
            raise ConfigError(f"method {self.method!r} is unknown; use one of {list(QUANTIFIERS)}")
        y01 = self._fit_classifier(X, y)
        self.tpr_ = float(self.oof_proba_[y01 == 1].mean())
        self.fpr_ = float(self.oof_proba_[y01 == 0].mean())
        return self

    def estimate(self, X: npt.ArrayLike) -> float:
        p = self._proba(X)
        if self.method == "pacc":
            if self.tpr_ - self.fpr_ < 0.01:
                return float(p.mean())  # no separation: the adjustment would divide by ~0
            return float(np.clip((p.mean() - self.fpr_) / (self.tpr_ - self.fpr_), 0.0, 1.0))
        return _emq_prior(p, self.source_accuracy_, self.tol, self.max_iter)


def _emq_prior(p: FloatArray, prior: float, tol: float, max_iter: int) -> float:
    """Saerens et al.'s EM estimate of a slice's prior from source posteriors ``p``."""
    if prior in (0.0, 1.0):
        return prior  # a one-class source cannot be re-weighted
    # Calibrated maps return exact 0 and 1; such posteriors could never move.
    q = np.clip(p, 1e-6, 1.0 - 1e-6)
    pi = prior
    for _ in range(max_iter):
        up = (pi / prior) * q
        post = up / (up + ((1.0 - pi) / (1.0 - prior)) * (1.0 - q))
        new = float(post.mean())
        if abs(new - pi) < tol:
            return new
        pi = new
    return pi


class ImportanceWeighted(_ShiftEstimator):
    """Doubly robust slice estimate with covariate-shift importance weights.

    For a slice ``T``, a logistic regression (standardised features, C=1) separates
    the source rows from ``T``'s rows; a source row's weight is the odds of it
    belonging to ``T``, ``w = q / (1 - q) * n_src / n_T``, normalised to mean 1 and
    clipped at ``max_weight``. The estimate is ``mean_T(P) + sum_src w (y - P_oof) /
    sum_src w``: the classifier's mean P plus its error on source rows that look
    like the slice, clipped to [0, 1]. ``last_ess_`` is the effective sample size
    ``(sum w)^2 / sum w^2`` of the last slice estimated.
    """

    def __init__(
        self,
        max_weight: float = 20.0,
        classifier: Any = None,
        random_state: int | None = None,
    ) -> None:
        self.max_weight = max_weight
        self.classifier = classifier
        self.random_state = random_state

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> ImportanceWeighted:
        if not self.max_weight >= 1.0:
            raise ConfigError(f"max_weight={self.max_weight!r} must be at least 1")
        y01 = self._fit_classifier(X, y)
        self.X_source_ = np.asarray(X, dtype=np.float64).copy()
        self.residual_ = y01 - self.oof_proba_
        return self

    def estimate(self, X: npt.ArrayLike) -> float:
        Xt = np.asarray(X, dtype=np.float64)
        p = self._proba(Xt)
        Xs = self.X_source_
        Z = np.vstack([Xs, Xt])
        side = np.r_[np.zeros(Xs.shape[0]), np.ones(Xt.shape[0])]
        domain = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        q = domain.fit(Z, side).predict_proba(Xs)[:, 1]
        w = q / np.clip(1.0 - q, 1e-12, None)
        w = np.minimum(w / w.mean(), self.max_weight)
        self.last_ess_ = float(w.sum() ** 2 / np.square(w).sum())
        return float(np.clip(p.mean() + np.sum(w * self.residual_) / w.sum(), 0.0, 1.0))


class DomainHoldoutCalibrated(_ShiftEstimator):
    """Calibration learnt on leave-one-domain-out scores.

    The classifier is fitted as usual (tuned on all training rows); only its raw,
    uncalibrated scores are used. Each training domain ``d`` is scored by the best
    setting refitted on the *other* domains, and a calibration map (the
    classifier's ``calibration``, isotonic if it has none) is fitted on these
    cross-domain scores: it maps a score to the accuracy it has on domains the model
    has not seen. Predictions are that map applied to the raw scores of the model
    fitted on all rows.

    With a single training domain (or ``groups=None``) no domain can be held out:
    the map is fitted on the in-domain out-of-fold scores, as in
    `CorrectnessEstimator` (``strategy_ == "in-domain"``). A domain whose
    complement lacks a class cannot be scored and is left out of the map
    (listed in ``skipped_domains_``).
    """

    def __init__(self, classifier: Any = None, random_state: int | None = None) -> None:
        self.classifier = classifier
        self.random_state = random_state

    def fit(
        self, X: npt.ArrayLike, y: npt.ArrayLike, groups: npt.ArrayLike | None = None
    ) -> DomainHoldoutCalibrated:
        Xa = np.asarray(X, dtype=np.float64)
        y01 = self._fit_classifier(Xa, y)
        clf = self.classifier_
        method = check_calibration(clf.calibration) or "isotonic"
        names = None if groups is None else np.asarray(groups, dtype=object)
        domains = [] if names is None else sorted({str(g) for g in names})
        self.skipped_domains_: list[str] = []
        scores = np.full(y01.shape[0], np.nan)
        if names is not None and len(domains) >= 2:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
            for d in domains:
                out = names == d
                rest = y01[~out]
                if rest.min() == rest.max():
                    self.skipped_domains_.append(d)
                    continue
                model = make_model(
                    clf.family,
                    clf.best_params_,
                    balance=clf.balance,
                    seed=seed,
                    n_samples=int((~out).sum()),
                )
                with threadpool_limits(limits=1):  # parallelism comes from the caller
                    model.fit(Xa[~out], rest.astype(np.int64))
                    scores[out] = model.predict_proba(Xa[out])[:, 1]
        scored = ~np.isnan(scores)
        if scored.any():
            self.strategy_ = "leave-domain-out"
            self.calibrator_: Calibrator = fit_calibrator(method, scores[scored], y01[scored])
        else:
            self.strategy_ = "in-domain"
            self.calibrator_ = fit_calibrator(method, clf.oof_scores_, y01)
        return self

    def _proba(self, X: npt.ArrayLike) -> FloatArray:
        check_is_fitted(self)
        with threadpool_limits(limits=1):
            raw = self.classifier_.model_.predict_proba(np.asarray(X, dtype=np.float64))[:, 1]
        return self.calibrator_.transform(raw)
