"""How unlike the training traces a slice looks: a per-slice shift score from mergeable sums.

`ShiftReference` is fitted on the training traces' entropy profiles (nats, the 11
`FEATURE_NAMES` columns). It maps each profile to normal scores (a quantile transform
fitted on the training rows: the columns are heavy-tailed) and whitens them with the
training covariance (Ledoit-Wolf shrinkage: the quantile columns are nearly collinear),
centred on the training mean. In that space the training traces have mean 0 and
identity covariance, so a slice's shift is the length of its mean vector.

The score of a slice of ``n`` responses with whitened vectors ``w_i`` needs only the
mergeable sums ``S = sum w_i`` and ``Q = sum |w_i|^2`` (`entropy_sentinel.aggregate.
SliceStats` carries them), so the service, the Spark engine and the library compute it
alike from stored aggregates:

* ``delta^2 = |S/n|^2 - tr/n - d/n_ref``, where ``tr = (Q - |S|^2/n) / (n - 1)`` is the
  slice's own total variance (``d`` when ``n = 1``): the squared Mahalanobis distance
  between the slice's and the training mean, with the upward bias of both means' noise
  taken out (clipped at 0);
* ``shift = Phi(delta / 2)``: the AUROC that the best linear classifier telling the slice
  from the training traces would reach if both were Gaussian with the training
  covariance (0.5: indistinguishable, 1: disjoint). It is the score shown to users.

It sees covariate shift (other entropy profiles), not concept shift (the same profiles,
another accuracy), which no label-free statistic can see; docs/estimator.md says how
the intervals and the label loop answer that.

>>> rng = np.random.default_rng(0)
>>> ref = ShiftReference().fit(rng.gamma(2.0, 0.3, size=(500, 11)))
>>> same = ref.transform(rng.gamma(2.0, 0.3, size=(200, 11)))
>>> moved = ref.transform(rng.gamma(2.0, 0.6, size=(200, 11)))
>>> score = lambda w: shift_score(len(w), w.sum(0), (w * w).sum(), ref.n_reference_)
>>> round(score(same), 2) < 0.6 < 0.9 < score(moved)
True
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.utils.validation import check_is_fitted

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.aggregate import SHIFT_DIM
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.grids import NormalScores

__all__ = ["SHIFT_WORDS", "ShiftReference", "shift_score", "shift_word"]

_MIN_EIGEN = 1e-6
"""Smallest covariance eigenvalue kept as is (relative to the largest), so that whitening
nearly collinear columns does not blow their noise up."""

SHIFT_WORDS: tuple[tuple[float, str], ...] = (
    (0.6, "not calibrated, looks like training"),
    (0.75, "not calibrated, somewhat unlike training"),
    (1.01, "unlike the training data: label some"),
)
"""Plain words for the shift score of responses whose slice value has no calibration
(new to the training data, or with too few labels there): the first whose bound exceeds
the score. (A slice whose every response had
calibration in training is "seen in training", `entropy_sentinel.estimator.slices`.)"""


class ShiftReference(BaseEstimator):  # type: ignore[misc]
    """Normal scores and whitening of the training profiles (see the module docstring).

    Attributes (after fit):
        transformer_: the per-column normal-score transform.
        whiten_: ``(d, d)`` matrix taking normal scores to whitened coordinates.
        center_: ``(d,)`` the training mean in whitened coordinates (subtracted).
        n_reference_: training rows.
    """

    def fit(self, X: npt.ArrayLike, y: object = None) -> ShiftReference:
        """Fit on the training traces' profiles ``X`` ``(n, SHIFT_DIM)``, nats."""
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != SHIFT_DIM or Xa.shape[0] < 2:
            raise ConfigError(
                f"a shift reference needs the entropy profiles of at least 2 training traces, "
                f"shape (n, {SHIFT_DIM}); got {Xa.shape}"
            )
        n = Xa.shape[0]
        self.transformer_ = NormalScores(
            n_quantiles=min(1000, n), output_distribution="normal", subsample=None
        ).fit(Xa)
        Z = self.transformer_.transform(Xa)
        cov = LedoitWolf().fit(Z).covariance_
        evals, evecs = np.linalg.eigh(cov)
        floor = max(float(evals.max()), 1e-12) * _MIN_EIGEN
        self.whiten_ = evecs / np.sqrt(np.maximum(evals, floor))
        self.center_ = (Z @ self.whiten_).mean(axis=0)
        self.n_reference_ = n
        return self

    def transform(self, X: npt.ArrayLike) -> FloatArray:
        """Whitened, centred coordinates ``(n, SHIFT_DIM)`` of profiles ``X`` (nats)."""
        check_is_fitted(self)
        Xa = np.asarray(X, dtype=np.float64)
        if Xa.ndim != 2 or Xa.shape[1] != SHIFT_DIM:
            raise ConfigError(f"profiles must have shape (n, {SHIFT_DIM}), got {Xa.shape}")
        if Xa.shape[0] == 0:
            return np.zeros((0, SHIFT_DIM))
        W = self.transformer_.transform(Xa) @ self.whiten_ - self.center_
        return np.ascontiguousarray(W, dtype=np.float64)


def shift_score(n: int, sum_w: npt.ArrayLike, sum_w2: float, n_reference: int) -> float:
    """The shift score in [0.5, 1) of ``n`` responses from their sums (module docstring);
    NaN when ``n`` is 0."""
    if n <= 0:
        return math.nan
    s = np.asarray(sum_w, dtype=np.float64)
    d = s.shape[0]
    mean2 = float(s @ s) / (n * n)
    spread = (sum_w2 - n * mean2) / (n - 1) if n > 1 else float(d)
    delta2 = mean2 - max(spread, 0.0) / n - d / max(n_reference, 1)
    return float(ndtr(math.sqrt(max(delta2, 0.0)) / 2.0))


def shift_word(score: float) -> str:
    """The plain word for a shift score (`SHIFT_WORDS`); '' for NaN."""
    if math.isnan(score):
        return ""
    return next(word for bound, word in SHIFT_WORDS if score < bound)
