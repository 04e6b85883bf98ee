"""Per-slice estimated accuracy with intervals: slice -> record -> result.

Every slice estimator (`entropy_sentinel.estimator.interface.SliceEstimator`) returns a
`SliceAccuracy`: one frozen `SliceRecord` per slice, ranked worst first, whose numbers
come from the slice's mergeable statistics (`entropy_sentinel.aggregate.SliceStats`)
through `entropy_sentinel.estimator.intervals.finish`:

* ``estimate`` and its interval ``[lower, upper]``: label-free, with sampling,
  calibration and transfer error (see `finish`);
* ``shift`` and ``shift_word``: how unlike the training data the slice's uncalibrated
  responses look, in plain words ("seen in training" when all are calibrated);
* with labels: the accuracy of the labelled responses, the error ``estimate - true``
  (only when the whole slice is labelled) and the label-corrected estimate with its
  interval (``ppi_*``).

Traces that lack a dimension form their own slice (value None), so nothing is
dropped. Within a slice the contributions are summed in sorted order (of P, then of
every other column), so the records do not depend on the order of the traces, to the
last bit.

>>> import numpy as np
>>> res = slice_accuracy(np.array([0.9, 0.8, 0.4]), [("a",), ("a",), ("b",)], by=("domain",))
>>> [(r.key, r.n, round(r.estimate, 2)) for r in res.records]
[(('b',), 1, 0.4), (('a',), 2, 0.85)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError, SliceDimensionError
from entropy_sentinel.estimator.intervals import SliceInterval, finish
from entropy_sentinel.estimator.plotting import axes_for
from entropy_sentinel.estimator.plotting import finish as finish_figure
from entropy_sentinel.estimator.shiftscore import shift_word
from entropy_sentinel.traces.batch import TraceBatch

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from entropy_sentinel.estimator.interface import SliceEstimator
    from entropy_sentinel.steps import StepStats

__all__ = [
    "SEEN_WORD",
    "SliceAccuracy",
    "SliceRecord",
    "accuracy_from_stats",
    "estimate_accuracy",
    "finisher_of",
    "group_records",
    "knows_slices",
    "slice_accuracy",
    "slice_keys",
    "word_of",
]

SliceKey = tuple[str | None, ...]
Finisher = Callable[[SliceStats, float], SliceInterval]

SEEN_WORD = "seen in training"
"""The shift word of a slice whose responses all had calibration in training."""

_COLUMNS = (
    "n",
    "estimate",
    "lower",
    "upper",
    "level",
    "shift",
    "shift_word",
    "sampling_sd",
    "model_sd",
    "calibration_sd",
    "transfer_half_width",
    "unseen_fraction",
)
_LABELLED_COLUMNS = (
    "n_labelled",
    "labelled_accuracy",
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
        estimate, lower, upper: label-free estimate and its interval at ``level``.
        level: the interval's nominal coverage.
        shift: shift score (0.5 = like the training traces, 1 = nothing alike) of the
            responses without calibration; NaN when all had calibration.
        shift_word: the shift in plain words ("" from an estimator that knows nothing of
            slices: a bare classifier or a score baseline).
        sampling_sd: Poisson-binomial sd of the realised accuracy given P.
        model_sd: the estimator's own error as one sd (calibration and transfer).
        calibration_sd: the calibration offsets' part (sd).
        transfer_half_width: the transfer part (a half-width at ``level``).
        unseen_fraction: fraction of responses without calibration.
        n_labelled: responses with a label.
        labelled_accuracy: the (design-weighted) accuracy of the labelled responses.
        true_accuracy: the plain accuracy of the labelled responses (NaN without labels).
        error: ``estimate - true_accuracy`` when every response is labelled, else NaN.
        ppi_estimate, ppi_lower, ppi_upper: label-corrected estimate and interval; NaN
            without labels.
        stats: the mergeable sufficient statistics behind the numbers.
    """

    key: SliceKey
    n: int
    estimate: float
    lower: float
    upper: float
    level: float
    shift: float
    shift_word: str
    sampling_sd: float
    model_sd: float
    calibration_sd: float
    transfer_half_width: float
    unseen_fraction: float
    n_labelled: int
    labelled_accuracy: float
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
        records: one `SliceRecord` per slice.
    """

    by: tuple[str, ...]
    level: float
    records: tuple[SliceRecord, ...]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[SliceRecord]:
        return iter(self.records)

    @property
    def has_labels(self) -> bool:
        return any(r.n_labelled for r in self.records)

    def to_df(self) -> pd.DataFrame:
        """One row per slice: a column per dimension, then n, estimate, lower, upper, level,
        shift, shift_word, sampling_sd, model_sd, calibration_sd, transfer_half_width,
        unseen_fraction and, when any label is present, n_labelled, labelled_accuracy,
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
        finish_figure(fig, target)
        return ax


def group_records(
    keys: Sequence[SliceKey],
    contributions: FloatArray,
    p: FloatArray,
    labels: FloatArray | None,
    *,
    by: Sequence[str],
    level: float,
    finish: Finisher,
    model_sd: float = math.nan,
    shift_words: bool = True,
) -> SliceAccuracy:
    """Sum per-trace ``contributions`` (`SliceStats.contributions`) by slice key and finish
    each slice into a record, ranked worst first.

    ``shift_words``: whether the estimator knows which slices it saw in training and how
    far the others are (a `SentinelEstimator`); False leaves every record's shift word
    empty, as for an estimator that knows nothing of slices (the classic interval).

    Within a slice the rows are summed in sorted order (by ``p``, then every column), so
    the records do not depend on the order of the traces; ``labels`` give the true
    accuracy; ``finish`` turns a slice's statistics into its `SliceInterval`.
    """
    if contributions.shape[0] != len(keys) or p.shape[0] != len(keys):
        raise ConfigError(
            f"need one contribution row and one P per key; got {contributions.shape[0]} rows, "
            f"{p.shape[0]} P and {len(keys)} keys"
        )
    groups: dict[SliceKey, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(tuple(key), []).append(i)
    records = []
    for key, members in groups.items():
        idx = np.asarray(members)
        # Sorted by the whole contribution row (P first): responses that tie in P can
        # differ in their label, design weight or features, and float sums depend on
        # their order. Rows equal in every column are interchangeable.
        rows = contributions[idx]
        order = np.lexsort((*rows.T[::-1], p[idx]))
        idx = idx[order]
        stats = SliceStats.from_flat(contributions[idx].sum(axis=0))
        y = None if labels is None else labels[idx]
        records.append(_record(key, stats, finish(stats, level), y, shift_words))
    records.sort(key=lambda r: (r.estimate, tuple("" if v is None else v for v in r.key)))
    return SliceAccuracy(tuple(by), level, tuple(records))


def accuracy_from_stats(
    stats: Mapping[SliceKey, SliceStats],
    *,
    by: Sequence[str] = (),
    level: float = 0.95,
    finish: Finisher,
    shift_words: bool = True,
) -> SliceAccuracy:
    """Per-slice estimates from each slice's summed `SliceStats` (the finishing step shared
    by streaming estimates and the Spark engine, which sum the statistics batch by batch or
    partition by partition first; `finisher_of` gives an estimator's ``finish``, and
    `knows_slices` its ``shift_words``, as for `group_records`). The true accuracy comes
    from the plain labels in the statistics.

    >>> s = {("a",): SliceStats.from_arrays(np.array([0.9, 0.8]))}
    >>> [(r.key, r.n) for r in accuracy_from_stats(s, by=("domain",), finish=finish_classic)]
    [(('a',), 2)]
    """
    records = [
        _record(tuple(k), s, finish(s, level), None, shift_words) for k, s in stats.items() if s.n
    ]
    records.sort(key=lambda r: (r.estimate, tuple("" if v is None else v for v in r.key)))
    return SliceAccuracy(tuple(by), level, tuple(records))


def finish_classic(stats: SliceStats, level: float) -> SliceInterval:
    """The classic interval of an estimator that knows nothing of the slices: sampling
    error only (see `slice_accuracy` for a constant estimator error)."""
    return finish(stats, level)


def knows_slices(estimator: Any) -> bool:
    """Whether ``estimator`` finishes slices itself (a `SentinelEstimator`: calibrated
    slices and shift scores, hence shift words) rather than by the classic interval."""
    return callable(getattr(estimator, "finish", None))


def finisher_of(estimator: Any) -> Finisher:
    """How ``estimator`` turns a slice's statistics into its interval: its own ``finish``
    (`SentinelEstimator`), else the classic interval with its ``model_sd_``."""
    if knows_slices(estimator):
        return estimator.finish  # type: ignore[no-any-return]
    model_sd = float(getattr(estimator, "model_sd_", 0.0))
    return lambda s, lv: finish(s, lv, model_sd=model_sd)


def slice_accuracy(
    p: npt.ArrayLike,
    keys: Sequence[SliceKey],
    labels: npt.ArrayLike | None = None,
    *,
    by: Sequence[str] = (),
    level: float = 0.95,
    model_sd: float = 0.0,
) -> SliceAccuracy:
    """Per-slice estimates from per-trace P(correct) ``p`` and slice ``keys``, with the
    classic interval: sampling error and a constant estimator error ``model_sd`` in
    quadrature (no calibration or transfer term: an estimator that knows nothing of the
    slices, e.g. a bare `CorrectnessEstimator`).

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
    if model_sd < 0 or not math.isfinite(model_sd):
        raise ConfigError(f"model_sd={model_sd!r} must be finite and >= 0")
    return group_records(
        keys,
        SliceStats.contributions(pa, ya),
        pa,
        ya,
        by=by,
        level=level,
        finish=lambda s, lv: finish(s, lv, model_sd=model_sd),
        shift_words=False,
    )


def _record(
    key: SliceKey, stats: SliceStats, iv: SliceInterval, y: FloatArray | None, words: bool
) -> SliceRecord:
    nan = math.nan
    if y is not None:
        n_lab = int((~np.isnan(y)).sum())
        true_acc = float(np.nanmean(y)) if n_lab else nan
    else:  # from the statistics alone: the plain labels (designed ones are weighted)
        n_lab = stats.n_labelled + stats.n_design
        plain_only = stats.n_labelled and not stats.n_design
        true_acc = stats.sum_y / stats.n_labelled if plain_only else nan
    full = n_lab == stats.n and n_lab > 0
    word = word_of(iv) if words else ""
    return SliceRecord(
        key=key,
        n=stats.n,
        estimate=iv.estimate,
        lower=iv.lower,
        upper=iv.upper,
        level=iv.level,
        shift=iv.shift,
        shift_word=word,
        sampling_sd=iv.sampling_sd,
        model_sd=iv.model_sd,
        calibration_sd=iv.calibration_sd,
        transfer_half_width=iv.transfer_half_width,
        unseen_fraction=iv.unseen_fraction,
        n_labelled=n_lab,
        labelled_accuracy=iv.labels.labelled_accuracy if iv.labels else nan,
        true_accuracy=true_acc,
        error=iv.estimate - true_acc if full else nan,
        ppi_estimate=iv.ppi_estimate,
        ppi_lower=iv.ppi_lower,
        ppi_upper=iv.ppi_upper,
        stats=stats,
    )


def word_of(iv: SliceInterval) -> str:
    """A slice's shift in plain words: `SEEN_WORD` when every response had calibration in
    training, else the word of its shift score (`shift_word`; '' when unknown)."""
    return SEEN_WORD if iv.unseen_fraction == 0.0 and iv.n else shift_word(iv.shift)


def slice_keys(batch: TraceBatch, by: Sequence[str]) -> list[SliceKey]:
    """Each trace's value for each dimension of ``by`` (None where it lacks one).

    A dimension that no trace carries is a `ConfigError` listing those present.
    """
    present = set(batch.slice_dimensions)
    absent = [d for d in by if d not in present]
    if absent and len(batch):
        raise SliceDimensionError(
            f"no trace has slice dimension(s) {absent}; dimensions present: "
            f"{sorted(present) or 'none'}. Choose one of those, or by=None (the CLI's "
            "--by all) for one slice",
            absent=absent,
            present=sorted(present),
        )
    return [tuple(s.get(d) for d in by) for s in batch.slices]


def estimate_accuracy(
    traces: TraceBatch | StepStats,
    estimator: SliceEstimator,
    by: str | Sequence[str] | None = "domain",
    level: float = 0.95,
    *,
    inclusion: npt.ArrayLike | None = None,
) -> SliceAccuracy:
    """Estimated accuracy per slice of ``traces`` with intervals: ``estimator.estimate``.

    Args:
        traces: the traces (labels, where present, give true accuracies and the
            label-corrected estimate).
        estimator: any fitted slice estimator (`SentinelEstimator`, the default of
            ``sentinel fit``; a `CorrectnessEstimator`; a score baseline).
        by: a slice dimension, several, or None for a single slice of everything.
        level: nominal coverage of the intervals.
        inclusion: per trace, the inclusion probability of its label (NaN: plain label).

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
    from entropy_sentinel.steps import StepStats

    batch = traces.batch if isinstance(traces, StepStats) else traces
    dims = None if by is None else (by,) if isinstance(by, str) else tuple(by)
    return estimator.estimate(batch, by=dims, level=level, inclusion=inclusion)
