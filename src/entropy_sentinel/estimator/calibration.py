"""Calibration maps from a classifier's score to P(correct), and calibration metrics.

Both maps are fitted on out-of-fold scores ``s`` (the classifier's P(correct)
for rows it was not trained on) and labels ``y`` in {0, 1}:

* ``isotonic``: a non-decreasing step function (`IsotonicRegression`), clipped
  outside the fitted range;
* ``sigmoid``: Platt scaling on the logit of the score,
  ``P = 1 / (1 + exp(-(a * logit(s) + b)))``, fitted by unpenalised maximum
  likelihood. Scores are clipped to ``[1e-6, 1 - 1e-6]`` first, because random
  forests return exact 0 and 1.

Both reproduce the mean of ``y`` on the data they were fitted on (the intercept's
score equation for Platt, the pooling of adjacent violators for isotonic).

>>> s = np.array([0.1, 0.4, 0.35, 0.8]); y = np.array([0, 0, 1, 1])
>>> cal = fit_calibrator("isotonic", s, y)
>>> cal.transform(s).tolist()
[0.0, 0.5, 0.5, 1.0]
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError

__all__ = [
    "CALIBRATIONS",
    "Calibration",
    "Calibrator",
    "brier_score",
    "check_calibration",
    "cross_calibrate",
    "expected_calibration_error",
    "fit_calibrator",
    "reliability_bins",
]

Calibration = Literal["isotonic", "sigmoid"]
CALIBRATIONS: tuple[str | None, ...] = (*get_args(Calibration), None)

_EPS = 1e-6


def check_calibration(name: str | None) -> Calibration | None:
    """Return ``name`` if it is ``"isotonic"``, ``"sigmoid"`` or None, else `ConfigError`."""
    if name not in CALIBRATIONS:
        raise ConfigError(
            f"calibration {name!r} is unknown; use 'isotonic', 'sigmoid' or None (no calibration)"
        )
    return name  # type: ignore[return-value]


def _logit(s: FloatArray) -> FloatArray:
    c = np.clip(s, _EPS, 1.0 - _EPS)
    return np.asarray(np.log(c) - np.log1p(-c), dtype=np.float64).reshape(-1, 1)


class Calibrator:
    """A fitted calibration map (see the module docstring). ``transform(s)`` -> P in [0, 1]."""

    def __init__(self, method: Calibration, model: IsotonicRegression | LogisticRegression):
        self.method = method
        self.model = model

    def transform(self, scores: npt.ArrayLike) -> FloatArray:
        s = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            p = self.model.predict(s)
        else:
            p = self.model.predict_proba(_logit(s))[:, 1]
        return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)


def fit_calibrator(method: Calibration, scores: npt.ArrayLike, y: npt.ArrayLike) -> Calibrator:
    """Fit a calibration map of ``method`` on scores in [0, 1] and labels in {0, 1}."""
    s = np.asarray(scores, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        return Calibrator(method, iso.fit(s, ya))
    if method == "sigmoid":
        # C=inf: plain maximum likelihood; the two parameters need no shrinkage.
        platt = LogisticRegression(C=np.inf)
        return Calibrator(method, platt.fit(_logit(s), ya.astype(np.int64)))
    raise ConfigError(f"calibration {method!r} is unknown; use 'isotonic' or 'sigmoid'")


def cross_calibrate(
    method: Calibration | None,
    scores: FloatArray,
    y: FloatArray,
    folds: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]],
) -> FloatArray:
    """Honest calibrated probabilities of out-of-fold ``scores``.

    Each fold's rows are calibrated by a map fitted on the other folds' rows only,
    so metrics computed from the result (Brier, calibration error, residuals) are
    not flattered by the map having seen the rows. With ``method=None`` the scores
    are returned unchanged.
    """
    if method is None:
        return scores.copy()
    out = np.empty_like(scores)
    for train, test in folds:
        out[test] = fit_calibrator(method, scores[train], y[train]).transform(scores[test])
    return out


def brier_score(y: FloatArray, p: FloatArray) -> float:
    """Mean squared error of probabilities ``p`` against labels ``y`` in {0, 1}."""
    return float(np.mean((p - y) ** 2))


def reliability_bins(y: FloatArray, p: FloatArray, n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-count bins of ``p``: per bin its count, mean P and observed accuracy.

    Rows are sorted by ``p`` and cut into ``n_bins`` groups of (nearly) equal
    size, so every bin holds data even when ``p`` is concentrated near 1.
    """
    order = np.argsort(p, kind="stable")
    bins = []
    for idx in np.array_split(order, min(n_bins, max(1, p.shape[0]))):
        if idx.size:
            bins.append(
                {
                    "n": int(idx.size),
                    "mean_p": float(p[idx].mean()),
                    "accuracy": float(y[idx].mean()),
                }
            )
    return bins


def expected_calibration_error(y: FloatArray, p: FloatArray, n_bins: int = 10) -> float:
    """Count-weighted mean of ``|accuracy - mean P|`` over `reliability_bins`."""
    bins = reliability_bins(y, p, n_bins)
    n = sum(b["n"] for b in bins)
    return float(sum(b["n"] * abs(b["accuracy"] - b["mean_p"]) for b in bins) / n)
