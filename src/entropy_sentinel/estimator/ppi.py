"""Label-corrected accuracy of one slice: prediction-powered inference (PPI).

With P(correct) for all ``n`` responses of a slice and labels for ``m`` of them,
the prediction-powered estimate (Angelopoulos et al. 2023) is

    ``A_pp = mean_all(P) + mean_labelled(y - P)``,

the label-free estimate corrected by the estimator's average residual where
labels exist. Its interval for the slice's accuracy,
``A_pp +- t_{m-1} * sqrt((1 - m / n) * var(y - P) / m)``, is valid whatever the
estimator's bias, because the labelled residual measures it; a good estimator
makes the residual small and the interval narrower than the labelled responses
alone would give. With few labels the residual variance is poorly known, so it is
shrunk towards the variance a calibrated estimator implies (`SliceStats.ppi_interval`,
measured coverage in docs/estimator.md). The arithmetic lives in
`entropy_sentinel.aggregate.SliceStats.ppi_interval` (mergeable sums), shared
with the monitoring service.

>>> nan = float("nan")
>>> p = [0.9, 0.8, 0.7, 0.9]; y = [1.0, 0.0, nan, nan]
>>> round(label_corrected_accuracy(p, y).estimate, 4)
0.475
"""

from __future__ import annotations

import numpy.typing as npt

from entropy_sentinel.aggregate import Interval, SliceStats
from entropy_sentinel.errors import ConfigError

__all__ = ["label_corrected_accuracy"]


def label_corrected_accuracy(p: npt.ArrayLike, y: npt.ArrayLike, level: float = 0.95) -> Interval:
    """PPI estimate and interval of a slice's accuracy.

    Args:
        p: float ``(n,)`` P(correct) of every response in the slice.
        y: float ``(n,)`` labels: 1 correct, 0 wrong, NaN unlabelled (at least one label).
        level: nominal coverage.

    With a single label the interval is [0, 1] (no variance can be estimated).
    """
    stats = SliceStats.from_arrays(p, y)
    if stats.n_labelled == 0:
        raise ConfigError(
            "a label-corrected estimate needs at least one labelled response (y = 0 or 1); "
            "all labels are NaN"
        )
    return stats.ppi_interval(level)
