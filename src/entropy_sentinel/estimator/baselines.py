"""Baseline slice-accuracy estimators: average confidence, ATC and DoC.

Each is a small scikit-learn style object, fitted on labelled *source* data
(one confidence score per response and its label), that estimates the
accuracy of any other set of responses (a slice) from their scores alone:

* `AverageConfidence` (AC): the mean confidence of the slice. Needs confidences
  in [0, 1] (a probability such as the classifier's P, ``lntp``, ``mtp``); with
  ``calibration="sigmoid"`` or ``"isotonic"`` any score is first mapped to a
  probability on the source data.
* `ATC` (average thresholded confidence, Garg et al. 2022): a threshold ``t`` is
  fitted on the source so that the fraction of source scores above it equals the
  source accuracy; a slice's estimate is the fraction of its scores above ``t``.
  Ties at ``t`` count with weight ``gamma`` (fitted too), so that ATC reproduces
  the source accuracy exactly on its own source data even when scores tie.
  Works with any score, in its own units.
* `DoC` (difference of confidences, Guillory et al. 2021): source accuracy plus
  the shift of mean confidence, ``acc_src + mean(c_slice) - mean(c_src)``. Same
  confidence requirement as AC. With a fitted calibration it coincides with AC
  (both maps reproduce the source accuracy), so use it on raw probabilities.

Scores must be oriented so that higher means more likely correct: pass
``entropy_sentinel.confidence_of(name, values)`` for a baseline score.

Intervals (``interval(scores, level)``) follow the same recipe as the
classifier's: a sampling term for the slice (Poisson-binomial over the
confidences for AC and DoC; binomial at the estimate for ATC) plus
``model_sd_``, the standard error of what was learnt from the ``n`` source
labels (for AC also its bias on the source), in quadrature.

The objects never modify their inputs; `sklearn.base.clone` gives a fresh
unfitted copy for each fold of an evaluation.

>>> rng = np.random.default_rng(0)
>>> conf = rng.uniform(size=500); y = (rng.uniform(size=500) < conf).astype(int)
>>> atc = ATC().fit(conf, y)
>>> atc.estimate(conf) == float(y.mean())  # the source accuracy, exactly
True
>>> bool(atc.estimate(conf[conf > 0.5]) > atc.estimate(conf))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.aggregate import Interval, SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.calibration import Calibrator, check_calibration, fit_calibrator

if TYPE_CHECKING:
    from entropy_sentinel.estimator.slices import SliceAccuracy
    from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["ATC", "BASELINE_METHODS", "AverageConfidence", "DoC", "ScoreBaseline"]


def _scores(values: npt.ArrayLike, what: str = "scores") -> FloatArray:
    """A finite float64 1-D copy-free view of ``values`` (validated)."""
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1:
        raise ConfigError(f"{what} must be 1-D (one score per response), got shape {s.shape}")
    if s.size == 0:
        raise ConfigError(f"{what} is empty: a slice needs at least one response")
    if not np.isfinite(s).all():
        bad = int(np.flatnonzero(~np.isfinite(s))[0])
        raise ConfigError(
            f"{what}[{bad}] = {float(s[bad])} is not finite; scores that need logprobs are NaN "
            "for traces with precomputed entropies only"
        )
    return s


def _labels(y: npt.ArrayLike, n: int) -> FloatArray:
    ya = np.asarray(y, dtype=np.float64)
    if ya.shape != (n,):
        raise ConfigError(f"labels must have shape ({n},) like the scores, got {ya.shape}")
    if not np.isin(ya, (0.0, 1.0)).all():
        raise ConfigError("labels must be 0/1 or False/True (1 = correct), with no NaN")
    return ya


def _var(r: FloatArray) -> float:
    """Sample variance (ddof=1, as `CorrectnessEstimator.model_sd_`); 0 for one value."""
    return float(r.var(ddof=1)) if r.shape[0] > 1 else 0.0


def _check_unit(s: FloatArray, who: str) -> None:
    if s.min() < 0.0 or s.max() > 1.0:
        raise ConfigError(
            f"{who} needs confidences in [0, 1], got values in [{s.min():.4g}, {s.max():.4g}]; "
            "pass a probability (the classifier's P, lntp, mtp) or set "
            "calibration='sigmoid' to map a raw score to one"
        )


class _ConfidenceBaseline(BaseEstimator):  # type: ignore[misc]
    """Shared fitting of AC and DoC: optional calibration, source statistics."""

    def __init__(self, calibration: str | None = None) -> None:
        self.calibration = calibration

    def fit(self, scores: npt.ArrayLike, y: npt.ArrayLike) -> _ConfidenceBaseline:
        s = _scores(scores)
        ya = _labels(y, s.shape[0])
        method = check_calibration(self.calibration)
        self.calibrator_: Calibrator | None = (
            None if method is None else fit_calibrator(method, s, ya)
        )
        conf = self._confidence(s)
        self.n_source_ = int(s.shape[0])
        self.source_accuracy_ = float(ya.mean())
        self.source_confidence_ = float(conf.mean())
        self._fit_model_sd(conf, ya)
        return self

    def _fit_model_sd(self, conf: FloatArray, y: FloatArray) -> None:
        raise NotImplementedError

    def _confidence(self, s: FloatArray) -> FloatArray:
        conf = s if self.calibrator_ is None else self.calibrator_.transform(s)
        _check_unit(conf, type(self).__name__)
        return conf

    def _slice(self, scores: npt.ArrayLike) -> SliceStats:
        check_is_fitted(self)
        return SliceStats.from_arrays(self._confidence(_scores(scores)))


class AverageConfidence(_ConfidenceBaseline):
    """Estimated accuracy = mean confidence of the slice (see the module docstring).

    Attributes (after fit): ``source_accuracy_``, ``source_confidence_``,
    ``n_source_``, ``model_sd_`` (``sqrt(bias^2 + var(y - c) / n)`` on the source).
    """

    def _fit_model_sd(self, conf: FloatArray, y: FloatArray) -> None:
        r = y - conf
        self.model_sd_ = float(math.sqrt(r.mean() ** 2 + _var(r) / r.shape[0]))

    def estimate(self, scores: npt.ArrayLike) -> float:
        """Estimated accuracy of the responses with these scores."""
        return self._slice(scores).estimate

    def interval(self, scores: npt.ArrayLike, level: float = 0.95) -> Interval:
        return self._slice(scores).interval(level, self.model_sd_)


class DoC(_ConfidenceBaseline):
    """Estimated accuracy = source accuracy + (mean confidence of slice - of source).

    Attributes (after fit): ``source_accuracy_``, ``source_confidence_``,
    ``n_source_``, ``model_sd_`` (``sqrt(var(y - c) / n)``: the standard error of
    the source correction ``acc_src - mean(c_src)``).
    """

    def _fit_model_sd(self, conf: FloatArray, y: FloatArray) -> None:
        r = y - conf
        self.model_sd_ = float(math.sqrt(_var(r) / r.shape[0]))

    def estimate(self, scores: npt.ArrayLike) -> float:
        """Estimated accuracy, clipped to [0, 1]."""
        return self.interval(scores).estimate

    def interval(self, scores: npt.ArrayLike, level: float = 0.95) -> Interval:
        stats = self._slice(scores)
        est = stats.estimate + self.source_accuracy_ - self.source_confidence_
        iv = Interval.around(est, math.hypot(stats.sampling_sd, self.model_sd_), level)
        return Interval(min(1.0, max(0.0, est)), iv.lower, iv.upper, level)


class ATC(BaseEstimator):  # type: ignore[misc]
    """Average thresholded confidence (see the module docstring).

    Attributes (after fit):
        threshold_: the score threshold ``t``.
        tie_weight_: weight ``gamma`` in [0, 1] of scores equal to ``t``
            (``n_ties_counted_ / n_ties_``: of the ``n_ties_`` source scores equal
            to ``t``, how many the source accuracy needs counted).
        source_accuracy_, n_source_: the source's accuracy and size.
        model_sd_: ``sqrt(acc (1 - acc) / n)``, the standard error of the source
            accuracy that the threshold reproduces.
    """

    def fit(self, scores: npt.ArrayLike, y: npt.ArrayLike) -> ATC:
        s = _scores(scores)
        ya = _labels(y, s.shape[0])
        n = s.shape[0]
        n_correct = round(float(ya.sum()))
        desc = np.sort(s)[::-1]
        # The n_correct-th largest score is the threshold: at most n_correct - 1 scores lie
        # strictly above it and at least n_correct at or above it, so a weight in [0, 1]
        # on the ties makes the thresholded count equal n_correct exactly.
        t = float(desc[max(n_correct, 1) - 1])
        above = int(np.count_nonzero(s > t))
        ties = int(np.count_nonzero(s == t))
        self.threshold_ = t
        self.n_ties_ = ties
        self.n_ties_counted_ = n_correct - above
        self.tie_weight_ = self.n_ties_counted_ / ties
        self.n_source_ = n
        self.source_accuracy_ = n_correct / n
        acc = self.source_accuracy_
        self.model_sd_ = float(math.sqrt(acc * (1.0 - acc) / n))
        return self

    def estimate(self, scores: npt.ArrayLike) -> float:
        """Fraction of scores above the threshold (ties weighted by ``tie_weight_``)."""
        check_is_fitted(self)
        s = _scores(scores)
        above = np.count_nonzero(s > self.threshold_)
        ties = np.count_nonzero(s == self.threshold_)
        # ties * counted / n_ties rather than ties * tie_weight_: integer products are
        # exact, so the source data gives back exactly n_correct / n.
        return float((above + ties * self.n_ties_counted_ / self.n_ties_) / s.shape[0])

    def interval(self, scores: npt.ArrayLike, level: float = 0.95) -> Interval:
        est = self.estimate(scores)
        n = _scores(scores).shape[0]
        sampling = math.sqrt(est * (1.0 - est) / n)
        return Interval.around(est, math.hypot(sampling, self.model_sd_), level)


BASELINE_METHODS: tuple[str, ...] = ("atc", "ac", "doc")
"""Score baselines a `ScoreBaseline` runs: ATC, average (isotonic-calibrated) confidence,
DoC (on raw probability scores such as ``lntp``, ``mtp``)."""


class ScoreBaseline(BaseEstimator):  # type: ignore[misc]
    """ATC, AC or DoC on one baseline score, as a slice estimator over traces.

    The `entropy_sentinel.estimator.interface.SliceEstimator` shape around the score-level
    objects above: `fit_traces` computes the score (``entropy_sentinel.SCORES``, oriented
    with `confidence_of`) of the labelled reference traces and fits the method on it;
    `estimate` returns a `SliceAccuracy` whose estimates are the method's and whose
    intervals are its ``interval`` recipe (no transfer term: baselines are here to be
    compared with, on their own terms).

    Parameters:
        method: ``"atc"``, ``"ac"`` (isotonic-calibrated) or ``"doc"``.
        score: a registered baseline score, e.g. ``"max_entropy"``.
        entropy_mode: entropy mode of entropy-based scores.
    """

    def __init__(self, method: str = "atc", score: str = "max_entropy", entropy_mode: str = "topk"):
        self.method = method
        self.score = score
        self.entropy_mode = entropy_mode

    def _confidence(self, traces: TraceBatch) -> FloatArray:
        from entropy_sentinel.scores import SCORES, baseline_scores, confidence_of
        from entropy_sentinel.steps import StepStats

        if self.score not in SCORES:
            raise ConfigError(f"score {self.score!r} is unknown; use one of {list(SCORES)}")
        values = baseline_scores(StepStats(traces, self.entropy_mode), (self.score,))[self.score]
        return np.asarray(confidence_of(self.score, values), dtype=np.float64)

    def fit_traces(self, reference: TraceBatch) -> ScoreBaseline:
        """Fit on the labelled traces of ``reference``."""
        if self.method not in BASELINE_METHODS:
            raise ConfigError(
                f"baseline {self.method!r} is unknown; use one of {list(BASELINE_METHODS)}"
            )
        train = reference if reference.has_label.all() else reference.subset(reference.has_label)
        if len(train) == 0:
            raise ConfigError("a score baseline needs labelled reference traces")
        conf = self._confidence(train)
        model: ATC | AverageConfidence | DoC
        if self.method == "atc":
            model = ATC()
        elif self.method == "ac":
            model = AverageConfidence(calibration="isotonic")
        else:
            model = DoC()
        self.model_ = model.fit(conf, train.labels)
        return self

    def values(self, traces: TraceBatch) -> FloatArray:
        """Per trace, a value in [0, 1] whose slice mean is the method's estimate (ATC: 1
        above the threshold, the tie weight on it; AC: the calibrated confidence; DoC: the
        raw confidence, shifted at the slice level)."""
        from entropy_sentinel.estimator.blend import member_value

        if not hasattr(self, "model_"):
            raise NotFittedError("this ScoreBaseline is not fitted yet: call fit_traces first")
        conf = self._confidence(traces)
        if isinstance(self.model_, DoC):
            return conf
        return member_value(self.model_, conf)

    def estimate(
        self,
        analysis: TraceBatch,
        by: str | Sequence[str] | None = "domain",
        level: float = 0.95,
        *,
        inclusion: npt.ArrayLike | None = None,
    ) -> SliceAccuracy:
        """Per-slice estimates (see the class docstring)."""
        from entropy_sentinel.estimator.intervals import SliceInterval
        from entropy_sentinel.estimator.slices import group_records, slice_keys

        dims: tuple[str, ...] = () if by is None else (by,) if isinstance(by, str) else tuple(by)
        keys = slice_keys(analysis, dims)
        v = self.values(analysis)
        labels = analysis.labels if analysis.has_label.any() else None
        model = self.model_
        shift = model.source_accuracy_ - model.source_confidence_ if isinstance(model, DoC) else 0.0

        def finish(stats: SliceStats, lv: float) -> SliceInterval:
            est = min(1.0, max(0.0, stats.sum_p / stats.n + shift))
            if isinstance(model, ATC):
                sampling = math.sqrt(est * (1.0 - est) / stats.n)
            else:
                sampling = math.sqrt(max(stats.sum_pq, 0.0)) / stats.n
            iv = Interval.around(est, math.hypot(sampling, model.model_sd_), lv)
            nan = math.nan
            return SliceInterval(stats.n, est, iv.lower, iv.upper, lv, sampling, model.model_sd_,
                                 0.0, nan, 0.0, None, nan, nan, nan)  # fmt: skip

        return group_records(
            keys,
            SliceStats.contributions(v, labels, pi=inclusion),
            v,
            labels,
            by=dims,
            level=level,
            finish=finish,
            shift_words=False,
        )
