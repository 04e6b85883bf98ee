"""The one shape of every slice estimator: fit on reference traces, estimate on analysis traces.

As NannyML gives its performance estimators one shape, every way of estimating a slice's
accuracy here is fitted on labelled *reference* traces and estimates *analysis* traces,
returning a `SliceAccuracy` (one `SliceRecord` per slice, the same records the CLI, the
service and the evaluation harness render):

==============================  ========================================================
estimator                       slice estimate
==============================  ========================================================
`SentinelEstimator`             the product's: calibrated P per response, a calibration
                                offset per slice value seen in training, transfer error
                                for the others (the ``sentinel`` and ``paper`` presets)
`CorrectnessEstimator`          the mean of the classifier's P, with the classic
                                interval (sampling and in-distribution error)
`ScoreBaseline`                 ATC, average confidence or DoC on one baseline score
==============================  ========================================================

A `SliceEstimator` needs only::

    fit_traces(reference: TraceBatch) -> self
    estimate(analysis: TraceBatch, by=..., level=..., *, inclusion=None) -> SliceAccuracy

``inclusion`` gives each analysis label's inclusion probability under the sampling design
that chose it (`entropy_sentinel.estimator.design`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy.typing as npt

from entropy_sentinel.estimator.slices import SliceAccuracy
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["SliceEstimator"]


@runtime_checkable
class SliceEstimator(Protocol):
    """Fit on labelled reference traces; estimate per-slice accuracy of analysis traces."""

    def fit_traces(self, reference: TraceBatch) -> Any: ...

    def estimate(
        self,
        analysis: TraceBatch,
        by: str | Sequence[str] | None = ...,
        level: float = ...,
        *,
        inclusion: npt.ArrayLike | None = ...,
    ) -> SliceAccuracy: ...
