"""Recalibration of the estimator's P(correct) from labels that came back.

A recalibration is a monotone map ``p = g(p_raw)`` from the estimator's own
P(correct) to a corrected one, fitted on the labelled traces of the traffic
(``isotonic`` or ``sigmoid``, with `entropy_sentinel.estimator.calibration`). It is
stored as plain JSON in the ``scorers`` table (no pickle), so every process
applies exactly the same map:

* isotonic: ``{"method": "isotonic", "x": [...], "y": [...]}``, linear interpolation
  between the fitted thresholds, clipped outside them (what `IsotonicRegression`
  with ``out_of_bounds="clip"`` does);
* sigmoid: ``{"method": "sigmoid", "a": a, "b": b}``,
  ``g(s) = 1 / (1 + exp(-(a * logit(s) + b)))`` with ``s`` clipped to [1e-6, 1 - 1e-6].

`fit_recalibration` also reports whether the map helps, on held-out labels: the
Brier score and expected calibration error before and after, cross-validated
(each fold's traces are calibrated by a map fitted on the other folds).

>>> spec = {"method": "isotonic", "x": [0.2, 0.8], "y": [0.1, 0.9]}
>>> apply_calibration(spec, np.array([0.0, 0.5, 1.0])).round(3).tolist()
[0.1, 0.5, 0.9]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.model_selection import StratifiedKFold

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError, EstimatorError
from entropy_sentinel.estimator.calibration import (
    brier_score,
    check_calibration,
    cross_calibrate,
    expected_calibration_error,
    fit_calibrator,
)

__all__ = ["Recalibration", "apply_calibration", "fit_recalibration"]

_EPS = 1e-6


@dataclass(frozen=True)
class Recalibration:
    """A fitted map and how it did on held-out labels (fractions; lower is better).

    Attributes:
        spec: the JSON map (see the module docstring).
        n_labels: labelled traces it was fitted on.
        brier_before, brier_after: Brier score of the estimator's P and of the
            recalibrated P (cross-validated), on the labelled traces.
        ece_before, ece_after: expected calibration error, likewise.
        folds: cross-validation folds used for ``*_after``.
    """

    spec: dict[str, Any]
    n_labels: int
    brier_before: float
    brier_after: float
    ece_before: float
    ece_after: float
    folds: int

    @property
    def improves(self) -> bool:
        """True when the recalibrated P has a lower held-out Brier score."""
        return self.brier_after < self.brier_before

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.spec["method"],
            "n_labels": self.n_labels,
            "brier_before": self.brier_before,
            "brier_after": self.brier_after,
            "ece_before": self.ece_before,
            "ece_after": self.ece_after,
            "folds": self.folds,
        }


def apply_calibration(spec: Mapping[str, Any] | None, p_raw: npt.ArrayLike) -> FloatArray:
    """``g(p_raw)`` for a stored map; the identity when ``spec`` is None."""
    s = np.asarray(p_raw, dtype=np.float64)
    if spec is None:
        return s.copy()
    method = spec.get("method")
    if method == "isotonic":
        out = np.interp(s, np.asarray(spec["x"], np.float64), np.asarray(spec["y"], np.float64))
    elif method == "sigmoid":
        c = np.clip(s, _EPS, 1.0 - _EPS)
        z = float(spec["a"]) * (np.log(c) - np.log1p(-c)) + float(spec["b"])
        out = 1.0 / (1.0 + np.exp(-z))
    else:
        raise ConfigError(f"stored calibration method {method!r} is unknown")
    return np.clip(np.asarray(out, dtype=np.float64), 0.0, 1.0)


def fit_recalibration(
    p_raw: npt.ArrayLike,
    y: npt.ArrayLike,
    method: str = "isotonic",
    *,
    min_labels: int = 50,
    folds: int = 5,
    seed: int = 0,
) -> Recalibration:
    """Fit ``method`` on labelled traces (``p_raw`` in [0, 1], ``y`` in {0, 1}).

    Raises:
        EstimatorError: fewer than ``min_labels`` labels, or one class only.
    """
    cal = check_calibration(method)
    if cal is None:
        raise ConfigError("recalibration needs a method: 'isotonic' or 'sigmoid'")
    s = np.asarray(p_raw, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    n = int(s.shape[0])
    if n < min_labels:
        raise EstimatorError(
            f"{n} labelled traces are too few to recalibrate (min_labels={min_labels}); "
            "label more with `sentinel prioritize` and `sentinel labels import`"
        )
    n_pos = int(ya.sum())
    if n_pos in (0, n):
        raise EstimatorError(
            f"all {n} labelled traces are {'correct' if n_pos else 'wrong'}; a calibration "
            "map needs both outcomes"
        )
    k = max(2, min(folds, n_pos, n - n_pos))
    splits = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(s, ya))
    honest = cross_calibrate(cal, s, ya, splits)
    fitted = fit_calibrator(cal, s, ya)
    if cal == "isotonic":
        spec: dict[str, Any] = {
            "method": "isotonic",
            "x": [float(v) for v in fitted.model.X_thresholds_],
            "y": [float(v) for v in fitted.model.y_thresholds_],
        }
    else:
        spec = {
            "method": "sigmoid",
            "a": float(fitted.model.coef_[0, 0]),
            "b": float(fitted.model.intercept_[0]),
        }
    for value in spec.values():
        if isinstance(value, float) and not math.isfinite(value):
            raise EstimatorError(f"the {cal} fit diverged ({spec}); try the other method")
    return Recalibration(
        spec=spec,
        n_labels=n,
        brier_before=brier_score(ya, s),
        brier_after=brier_score(ya, honest),
        ece_before=expected_calibration_error(ya, s),
        ece_after=expected_calibration_error(ya, honest),
        folds=k,
    )
