"""The 11-D entropy profile of each trace (docs/definitions.md).

Columns, in order (`FEATURE_NAMES`), all in nats except the two shape statistics:

==========  ================================================================
``h_max``   largest step entropy
``h_mean``  mean step entropy
``h_std``   standard deviation, ddof=0
``h_q10``   10th percentile (linear interpolation), likewise q25, q50, q75, q90
``h_skew``  Fisher-Pearson skewness g1 (biased), dimensionless
``h_kurt``  excess kurtosis g2 (biased), dimensionless
``h_sea``   SEA, the sum of step entropies (= n_tokens * h_mean)
==========  ================================================================

A trace is *flat* when ``std <= 1e-9 * max(1, |mean|)``; its std, skew and kurt are
then 0 (a single-token trace is flat). Higher entropies mean more uncertainty.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from entropy_sentinel.segments import (
    segment_moments,
    segment_quantiles,
    segment_sum,
)
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["FEATURE_NAMES", "entropy_profile", "profile_from_entropy"]

FEATURE_NAMES: tuple[str, ...] = (
    "h_max",
    "h_mean",
    "h_std",
    "h_q10",
    "h_q25",
    "h_q50",
    "h_q75",
    "h_q90",
    "h_skew",
    "h_kurt",
    "h_sea",
)

_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90, 1.0)  # 1.0 is the maximum, from the same sort
_FLAT_RTOL = 1e-9


def entropy_profile(
    traces: TraceBatch | StepStats, mode: str = "topk", *, precision: str = "float32"
) -> npt.NDArray[np.float64]:
    """The entropy profile of every trace: float64 array ``(n_traces, 11)``.

    Args:
        traces: a `TraceBatch`, or its `StepStats` to reuse already computed steps
            (then ``mode`` and ``precision`` are those of the `StepStats`).
        mode: ``"topk"`` (the paper's truncated entropy), ``"topk_renorm"`` or
            ``"topk_tail"``; see `entropy_sentinel.steps`.
        precision: ``"float32"`` (fast, per-step relative error < 1e-6) or ``"float64"``.

    >>> from entropy_sentinel import read_traces
    >>> b = read_traces([{"id": "a", "token_entropy": [0.0, 1.0, 2.0]}])
    >>> dict(zip(FEATURE_NAMES, entropy_profile(b)[0].round(4).tolist()))["h_sea"]
    3.0
    """
    stats = (
        traces if isinstance(traces, StepStats) else StepStats(traces, mode, precision=precision)
    )
    return profile_from_entropy(stats.entropy, stats.offsets)


def profile_from_entropy(
    entropy: npt.NDArray[np.float64], offsets: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """The 11 features from ragged per-step entropies (nats): ``(n, 11)`` float64.

    ``entropy`` is the flat ``(N,)`` vector and ``offsets`` the ``(n + 1,)`` segment
    boundaries; every segment must hold at least one step.
    """
    entropy = np.asarray(entropy, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    n = lengths.shape[0]
    out = np.empty((n, len(FEATURE_NAMES)))
    if n == 0:
        return out
    sea = segment_sum(entropy, offsets)
    mean = sea / lengths
    m2, m3, m4 = segment_moments(entropy, offsets, mean)
    std = np.sqrt(m2)
    flat = std <= _FLAT_RTOL * np.maximum(1.0, np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        skew = np.where(flat, 0.0, m3 / (m2 * std))
        kurt = np.where(flat, 0.0, m4 / (m2 * m2) - 3.0)
    q = segment_quantiles(entropy, offsets, _QUANTILES)
    out[:, 0] = q[:, 5]
    out[:, 1] = mean
    out[:, 2] = np.where(flat, 0.0, std)
    out[:, 3:8] = q[:, :5]
    out[:, 8] = skew
    out[:, 9] = kurt
    out[:, 10] = sea
    return out
