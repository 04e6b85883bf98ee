"""Slice-aware calibration: a calibration offset for each slice value seen in training.

A classifier calibrated on pooled training data is calibrated on average over the
training slices, not within each: on the SmolLM2 corpus, with all 13 domains in
training, one domain's mean P(correct) was 0.32 where its accuracy was 0.80. For each
value ``v`` of the calibration dimension (a domain, a customer) with enough labelled
training traces, `SliceCalibration` fits a shift ``b_v`` of the log-odds,

    ``P_v(x) = sigmoid(logit P(x) + b_v)``,

on the classifier's honest out-of-fold probabilities of that value's training traces
(each from a model that did not see the trace), by maximum a posteriori under a normal
prior ``b_v ~ N(0, prior_sd^2)``: the prior pools values with few labels towards the
pooled calibration, and many labels override it (partial pooling). The posterior
standard deviation ``sd(b_v) = 1 / sqrt(sum P_v (1 - P_v) + 1 / prior_sd^2)`` (Laplace)
is the calibration's own uncertainty; a slice of that value carries it into its interval
as ``sum_i P_i (1 - P_i) sd(b_v) / n`` (`entropy_sentinel.aggregate.SliceStats.sum_cal`).

A value with fewer than ``min_labels`` labelled training traces, and every value not
in the training data, keeps the pooled model: its slices carry transfer error instead
(`entropy_sentinel.estimator.transfer`).

Why a shift of the log-odds and one dimension: the shift corrects calibration-in-the-
large, which is what a slice's mean needs, and keeps each response's ranking; with one
dimension, "this response's population had labels" has one meaning, which the interval
needs (multicalibration over several dimensions would blur it).

>>> rng = np.random.default_rng(0)
>>> p = rng.uniform(0.1, 0.5, 400); v = np.array(["a", "b"] * 200, dtype=object)
>>> y = (rng.uniform(size=400) < np.where(v == "a", p, p + 0.4)).astype(float)
>>> cal = SliceCalibration().fit(p, y, v)
>>> pa, _, seen = cal.apply(p, v)
>>> [abs(round(float(pa[v == k].mean() - y[v == k].mean()), 2)) for k in "ab"], seen.all()
([0.0, 0.0], np.True_)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.errors import ConfigError

__all__ = ["MISSING", "Offset", "SliceCalibration"]

MISSING = "(missing)"
"""Calibration value of traces that lack the dimension."""

_CLIP = 1e-6
_NEWTON_STEPS = 50


@dataclass(frozen=True)
class Offset:
    """The fitted log-odds shift of one slice value.

    Attributes:
        value: the slice value.
        b: the shift (MAP), log-odds.
        sd: its posterior standard deviation, log-odds.
        n: labelled training traces of the value.
        accuracy: their accuracy.
        mean_p: their mean out-of-fold P before the shift.
    """

    value: str
    b: float
    sd: float
    n: int
    accuracy: float
    mean_p: float


class SliceCalibration:
    """Per-value log-odds shifts with partial pooling (see the module docstring).

    Args:
        prior_sd: standard deviation of the normal prior on each shift, log-odds.
        min_labels: labelled training traces a value needs to be calibrated.
    """

    def __init__(self, prior_sd: float = 1.5, min_labels: int = 20) -> None:
        if not (math.isfinite(prior_sd) and prior_sd > 0):
            raise ConfigError(f"prior_sd={prior_sd!r} must be a positive number (log-odds)")
        if min_labels < 1:
            raise ConfigError(f"min_labels={min_labels!r} must be at least 1")
        self.prior_sd = prior_sd
        self.min_labels = min_labels
        self.offsets_: dict[str, Offset] = {}

    def fit(
        self, p: npt.ArrayLike, y: npt.ArrayLike, values: Sequence[object] | npt.NDArray[np.object_]
    ) -> SliceCalibration:
        """Fit on honest (out-of-fold) P(correct) ``p``, labels ``y`` in {0, 1} and each
        trace's slice value (None: `MISSING`)."""
        pa = np.clip(np.asarray(p, dtype=np.float64), _CLIP, 1.0 - _CLIP)
        ya = np.asarray(y, dtype=np.float64)
        keys = _keys(values)
        if pa.shape != ya.shape or keys.shape != pa.shape:
            raise ConfigError("p, y and values must have one entry per training trace")
        self.offsets_ = {}
        for value in sorted(set(keys.tolist())):
            mask = keys == value
            if int(mask.sum()) < self.min_labels:
                continue
            self.offsets_[value] = self._fit_one(value, logit(pa[mask]), ya[mask])
        return self

    def _fit_one(self, value: str, lo: FloatArray, y: FloatArray) -> Offset:
        prec = 1.0 / self.prior_sd**2
        b = 0.0
        for _ in range(_NEWTON_STEPS):  # concave objective: Newton converges from 0
            q = expit(lo + b)
            grad = float(np.sum(y - q)) - prec * b
            hess = float(np.sum(q * (1.0 - q))) + prec
            step = grad / hess
            b += step
            if abs(step) < 1e-10:
                break
        q = expit(lo + b)
        sd = 1.0 / math.sqrt(float(np.sum(q * (1.0 - q))) + prec)
        return Offset(
            value=value,
            b=b,
            sd=sd,
            n=int(y.shape[0]),
            accuracy=float(y.mean()),
            mean_p=float(expit(lo).mean()),
        )

    def apply(
        self, p: npt.ArrayLike, values: Sequence[object] | npt.NDArray[np.object_]
    ) -> tuple[FloatArray, FloatArray, BoolArray]:
        """``(p_calibrated, cal, seen)`` per trace: the shifted P where the trace's value
        has an offset (``p`` itself elsewhere), ``P (1 - P) sd(b)`` (0 elsewhere), and
        whether it has one."""
        pa = np.asarray(p, dtype=np.float64)
        keys = _keys(values)
        b = np.zeros(pa.shape[0])
        sd = np.zeros(pa.shape[0])
        seen = np.zeros(pa.shape[0], dtype=bool)
        for value, off in self.offsets_.items():
            mask = keys == value
            b[mask], sd[mask], seen[mask] = off.b, off.sd, True
        shifted = expit(logit(np.clip(pa, _CLIP, 1.0 - _CLIP)) + b)
        out = np.where(seen, shifted, pa)
        return out, np.where(seen, out * (1.0 - out) * sd, 0.0), seen

    def seen(self, values: Sequence[object] | npt.NDArray[np.object_]) -> BoolArray:
        """Per trace, whether its value is calibrated."""
        return np.isin(_keys(values), list(self.offsets_))


def _keys(values: Sequence[object] | npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    return np.array([MISSING if v is None else str(v) for v in values], dtype=object)
