"""Per-slice estimated accuracy with intervals: slice -> record -> result.

`estimate_accuracy` predicts P(correct) for every trace, groups the traces by
one or more slice dimensions and returns a `SliceAccuracy` result holding one
frozen `SliceRecord` per slice, ranked worst first. The arithmetic is
`entropy_sentinel.aggregate.SliceStats`:

* ``estimate = mean(P)`` over the slice;
* ``[lower, upper]``: ``estimate +- z * sqrt(sum P(1-P) / n^2 + model_sd^2)``,
  the Poisson-binomial spread of the slice's realised accuracy plus the
  estimator's own error (``model_sd``, by default the estimator's
  ``model_sd_``), clipped to [0, 1];
* with labels: the true accuracy over the labelled responses, the error
  ``estimate - true`` (only when the whole slice is labelled), and the
  prediction-powered, label-corrected estimate with its interval.

Traces that lack a dimension form their own slice (value None), so nothing is
dropped. Within a slice P is summed in sorted order, so for given
probabilities the records do not depend on the order of the traces, to the
last bit. (A classifier's P for a trace can itself move in the last bit with
the trace's position in the batch, through BLAS blocking.)

>>> import numpy as np
>>> res = slice_accuracy(np.array([0.9, 0.8, 0.4]), [("a",), ("a",), ("b",)], by=("domain",))
>>> [(r.key, r.n, round(r.estimate, 2)) for r in res.records]
[(('b',), 1, 0.4), (('a',), 2, 0.85)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.plotting import axes_for, finish
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from entropy_sentinel.estimator.model import CorrectnessEstimator

__all__ = [
    "SliceAccuracy",
    "SliceRecord",
    "accuracy_from_stats",
    "estimate_accuracy",
    "slice_accuracy",
]

SliceKey = tuple[str | None, ...]


_COLUMNS = ("n", "estimate", "lower", "upper", "level", "sampling_sd", "model_sd")
_LABELLED_COLUMNS = (
    "n_labelled",
    "true_accuracy",
    "error",
    "covered",
    "ppi_estimate",
    "ppi_lower",
    "ppi_upper",
)


@dataclass(frozen=True, slots=True)
class SliceRecord:
    """Estimated accuracy of one slice (accuracies are fractions in [0, 1]).

    Attributes:
        key: the slice's value for each dimension of ``SliceAccuracy.by`` (None where
            its traces lack the dimension); ``()`` for the whole batch.
        n: responses in the slice.
        estimate, lower, upper: mean P(correct) and its interval at ``level``.
        level: the interval's nominal coverage.
        sampling_sd: Poisson-binomial sd of the realised accuracy given P.
        model_sd: estimator-error sd added in quadrature.
        n_labelled: responses with a label.
        true_accuracy: accuracy over the labelled responses (NaN without labels).
        error: ``estimate - true_accuracy`` when every response is labelled, else NaN.
        ppi_estimate, ppi_lower, ppi_upper: label-corrected (prediction-powered)
            estimate and interval; NaN without labels.
        stats: the mergeable sufficient statistics behind the numbers.
    """

    key: SliceKey
    n: int
    estimate: float
    lower: float
    upper: float
    level: float
    sampling_sd: float
    model_sd: float
    n_labelled: int
    true_accuracy: float
    error: float
    ppi_estimate: float
    ppi_lower: float
    ppi_upper: float
    stats: SliceStats

    @property
    def label(self) -> str:
        """The key as text: values joined by " / ", "(missing)" for None, "all" for ()."""
        if not self.key:
            return "all"
        return " / ".join("(missing)" if v is None else v for v in self.key)

    @property
    def covered(self) -> bool | None:
        """Whether the interval contains the true accuracy (None unless fully labelled)."""
        if math.isnan(self.error):
            return None
        return self.lower <= self.true_accuracy <= self.upper


@dataclass(frozen=True)
class SliceAccuracy:
    """Per-slice estimates: ``records`` ranked by estimate, worst first.

    Attributes:
        by: the slice dimensions (``()``: one slice for everything).
        level: nominal coverage of the intervals.
        model_sd: the estimator-error sd used.
        records: one `SliceRecord` per slice.
    """

    by: tuple[str, ...]
    level: float
    model_sd: float
    records: tuple[SliceRecord, ...]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[SliceRecord]:
        return iter(self.records)

    @property
    def has_labels(self) -> bool:
        return any(r.n_labelled for r in self.records)

    def to_df(self) -> pd.DataFrame:
        """One row per slice: a column per dimension, then n, estimate, lower, upper,
        level, sampling_sd, model_sd and, when any label is present, n_labelled,
        true_accuracy, error, covered, ppi_estimate, ppi_lower, ppi_upper."""
        names = _COLUMNS + (_LABELLED_COLUMNS if self.has_labels else ())
        key_columns = list(self.by) if self.by else ["slice"]
        rows = [
            [*(r.key if self.by else ("all",)), *(getattr(r, name) for name in names)]
            for r in self.records
        ]
        columns = key_columns + list(names)
        return pd.DataFrame(rows, columns=columns)

    def plot(self, target: str | os.PathLike[str] | Axes | None = None) -> Axes:
        """Draw the ranked estimates with their intervals (and true accuracies, if known).

        Args:
            target: an Axes to draw into, a file path (PNG, SVG, PDF...) to save a new
                figure to, or None for a new figure.

        Returns:
            the Axes drawn into.
        """
        height = max(2.8, 0.35 * len(self.records) + 1.6)
        ax, fig = axes_for(target, (7.0, height))
        records = self.records[::-1]  # worst at the top
        ypos = np.arange(len(records))
        est = np.array([r.estimate for r in records])
        lo = np.array([r.lower for r in records])
        hi = np.array([r.upper for r in records])
        ax.errorbar(
            est,
            ypos,
            xerr=np.vstack([est - lo, hi - est]),
            fmt="o",
            color="tab:blue",
            ecolor="tab:blue",
            capsize=3,
            label=f"estimate ({self.level:.0%} interval)",
        )
        truth = np.array([r.true_accuracy for r in records])
        if np.isfinite(truth).any():
            ax.plot(truth, ypos, "x", color="tab:red", markersize=8, label="true accuracy")
        ax.set_yticks(ypos, [f"{r.label} (n={r.n})" for r in records])
        ax.set_ylim(-0.6, len(records) - 0.4)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("accuracy")
        ax.set_title("estimated accuracy by " + (", ".join(self.by) if self.by else "all"))
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small")
        finish(fig, target)
        return ax


def slice_accuracy(
    p: npt.ArrayLike,
    keys: Sequence[SliceKey],
    labels: npt.ArrayLike | None = None,
    *,
    by: Sequence[str] = (),
    level: float = 0.95,
    model_sd: float = 0.0,
) -> SliceAccuracy:
    """Per-slice estimates from per-trace P(correct) ``p`` and slice ``keys``.

    Args:
        p: float ``(n,)`` P(correct) in [0, 1].
        keys: one tuple per trace, its value for each dimension of ``by``.
        labels: optional float ``(n,)``: 1 correct, 0 wrong, NaN unlabelled.
        by: names of the key's dimensions.
        level: interval coverage in (0, 1).
        model_sd: estimator-error sd (>= 0) added in quadrature.
    """
    pa = np.asarray(p, dtype=np.float64)
    if pa.ndim != 1 or len(keys) != pa.shape[0]:
        raise ConfigError(f"p must be 1-D with one value per key; got {pa.shape}, {len(keys)} keys")
    ya = None if labels is None else np.asarray(labels, dtype=np.float64)
    if ya is not None and ya.shape != pa.shape:
        raise ConfigError(f"labels must have the shape of p {pa.shape}, got {ya.shape}")
    groups: dict[SliceKey, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(tuple(key), []).append(i)
    stats: dict[SliceKey, SliceStats] = {}
    for key, members in groups.items():
        idx = np.asarray(members)
        order = np.lexsort((pa[idx],) if ya is None else (ya[idx], pa[idx]))
        idx = idx[order]  # sorted by P (then label): sums independent of trace order
        stats[key] = SliceStats.from_arrays(pa[idx], None if ya is None else ya[idx])
    return accuracy_from_stats(stats, by=by, level=level, model_sd=model_sd)


def accuracy_from_stats(
    stats: Mapping[SliceKey, SliceStats],
    *,
    by: Sequence[str] = (),
    level: float = 0.95,
    model_sd: float = 0.0,
) -> SliceAccuracy:
    """Per-slice estimates from each slice's mergeable `SliceStats` (the finishing step
    shared by `slice_accuracy`, streaming estimates and the Spark engine, which sum the
    statistics batch by batch or partition by partition before calling this).

    >>> s = {("a",): SliceStats.from_arrays(np.array([0.9, 0.8]))}
    >>> [(r.key, r.n) for r in accuracy_from_stats(s, by=("domain",))]
    [(('a',), 2)]
    """
    records = [_record(tuple(key), s, level, model_sd) for key, s in stats.items() if s.n]
    records.sort(key=lambda r: (r.estimate, tuple("" if v is None else v for v in r.key)))
    return SliceAccuracy(tuple(by), level, model_sd, tuple(records))


def _record(key: SliceKey, stats: SliceStats, level: float, model_sd: float) -> SliceRecord:
    ci = stats.interval(level, model_sd)
    nan = math.nan
    ppi = stats.ppi_interval(level) if stats.n_labelled else None
    full = stats.n_labelled == stats.n
    return SliceRecord(
        key=key,
        n=stats.n,
        estimate=ci.estimate,
        lower=ci.lower,
        upper=ci.upper,
        level=level,
        sampling_sd=stats.sampling_sd,
        model_sd=model_sd,
        n_labelled=stats.n_labelled,
        true_accuracy=stats.true_accuracy,
        error=ci.estimate - stats.true_accuracy if full else nan,
        ppi_estimate=ppi.estimate if ppi else nan,
        ppi_lower=ppi.lower if ppi else nan,
        ppi_upper=ppi.upper if ppi else nan,
        stats=stats,
    )


def slice_keys(batch: TraceBatch, by: Sequence[str]) -> list[SliceKey]:
    """Each trace's value for each dimension of ``by`` (None where it lacks one).

    A dimension that no trace carries is a `ConfigError` listing those present.
    """
    present = set(batch.slice_dimensions)
    absent = [d for d in by if d not in present]
    if absent and len(batch):
        raise ConfigError(
            f"no trace has slice dimension(s) {absent}; dimensions present: "
            f"{sorted(present) or 'none'}. Choose one of those, or by=None for one slice"
        )
    return [tuple(s.get(d) for d in by) for s in batch.slices]


def estimate_accuracy(
    traces: TraceBatch | StepStats,
    estimator: CorrectnessEstimator,
    by: str | Sequence[str] | None = "domain",
    level: float = 0.95,
    *,
    model_sd: float | None = None,
) -> SliceAccuracy:
    """Estimated accuracy per slice of ``traces`` with intervals (see the module docstring).

    Args:
        traces: the traces (labels, where present, give true accuracies and PPI).
        estimator: a fitted `CorrectnessEstimator`.
        by: a slice dimension, several, or None for a single slice of everything.
        level: nominal coverage of the intervals.
        model_sd: estimator-error sd; None uses ``estimator.model_sd_``, which holds
            for slices drawn like the training data. Pass a larger value (e.g. an
            error measured across domains) for slices from other distributions.

    >>> import entropy_sentinel as es
    >>> rng = np.random.default_rng(1)
    >>> recs = [{"id": str(i), "slice": {"domain": "ab"[i % 2]}, "correct": bool(i % 3),
    ...          "token_entropy": rng.gamma(1.0, 0.3 + 0.2 * (i % 3 == 0), 20).tolist()}
    ...         for i in range(120)]
    >>> batch = es.read_traces(recs)
    >>> est = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(batch)
    >>> res = es.estimate_accuracy(batch, est, by="domain")
    >>> [r.key for r in res], [r.n for r in res]
    ([('a',), ('b',)], [60, 60])
    """
    dims: tuple[str, ...] = () if by is None else (by,) if isinstance(by, str) else tuple(by)
    batch = traces.batch if isinstance(traces, StepStats) else traces
    keys = slice_keys(batch, dims)
    p = estimator.predict_traces(traces)
    sd = estimator.model_sd_ if model_sd is None else float(model_sd)
    labels = batch.labels if batch.has_label.any() else None
    return slice_accuracy(p, keys, labels, by=dims, level=level, model_sd=sd)
