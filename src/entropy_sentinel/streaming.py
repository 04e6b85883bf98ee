"""Per-slice estimates over a stream of trace batches, in memory independent of its length.

Each batch is reduced to the mergeable `SliceStats` of its slices (`partial_estimate`:
the estimator's per-trace contributions, `SliceStats.contributions`, summed by slice);
partials add up (``a + b``), and the sum is finished once by
`entropy_sentinel.estimator.slices.accuracy_from_stats` with the estimator's own
``finish`` (the arithmetic `estimate_accuracy` ends with too). The same partial runs on
every Spark partition (`entropy_sentinel.spark`), so the local and the cluster engine
agree to rounding.

Traces the estimator cannot score (another entropy source, a narrower top-k:
`TraceSignature.refused`) are rejected one by one with the reason, as the service
does, instead of failing the run. Rejections go to a `RejectionLog`: all counted, the
first kept, every one passed to its sink (a file), so memory does not grow with them.

With ``window`` (seconds), each slice is split by time window: the key gains a last
value, the window's start as RFC 3339 text (windows aligned to the epoch; traces
without a timestamp go to window None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_sentinel.errors import ArtifactMismatchError, ConfigError, SliceDimensionError
from entropy_sentinel.timeutil import format_instant
from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.rejections import RejectionLog

if TYPE_CHECKING:
    from entropy_sentinel.aggregate import SliceStats
    from entropy_sentinel.estimator.features import TraceSignature
    from entropy_sentinel.estimator.interface import SliceEstimator
    from entropy_sentinel.estimator.slices import SliceAccuracy

__all__ = [
    "WINDOW_DIMENSION",
    "PartialEstimate",
    "estimate_stream",
    "partial_estimate",
    "signature_of",
    "slice_dimensions",
    "window_starts",
]

WINDOW_DIMENSION = "window"
"""Name of the key's time-window part in results (its values: window starts, RFC 3339)."""

SliceKey = tuple[str | None, ...]


@dataclass
class PartialEstimate:
    """The mergeable summary of some traces: per slice key, its `SliceStats`.

    Attributes:
        stats: slice key (the ``by`` values, then the window start when windowed) ->
            statistics of its traces' P(correct) and labels.
        rejected: records that were not read, then traces the estimator refused (a
            batch's partial keeps them all; a merged summary counts all and keeps the
            first, see `RejectionLog`).
        n_refused: how many of ``rejected`` the estimator refused.
        refusal: the reason of the first refusal (None: none).
        present: slice dimensions that at least one trace carries (all of them, so that
            an error about a missing one can list those there are).
        n_traces: traces scored.
        n_tokens: their generated tokens.
    """

    stats: dict[SliceKey, SliceStats] = field(default_factory=dict)
    rejected: RejectionLog = field(default_factory=RejectionLog)
    present: set[str] = field(default_factory=set)
    n_traces: int = 0
    n_tokens: int = 0
    n_refused: int = 0
    refusal: str | None = None

    def merge(self, other: PartialEstimate) -> PartialEstimate:
        """Add ``other`` into this summary (in place) and return it."""
        for key, stats in other.stats.items():
            mine = self.stats.get(key)
            self.stats[key] = stats if mine is None else mine + stats
        self.rejected.merge(other.rejected)
        self.present |= other.present
        self.n_traces += other.n_traces
        self.n_tokens += other.n_tokens
        self.n_refused += other.n_refused
        self.refusal = self.refusal or other.refusal
        return self


def slice_dimensions(by: str | Sequence[str] | None) -> tuple[str, ...]:
    """``by`` as a tuple of dimensions (None: one slice of everything)."""
    dims = () if by is None else (by,) if isinstance(by, str) else tuple(by)
    if WINDOW_DIMENSION in dims:
        raise ConfigError(
            f"slice dimension {WINDOW_DIMENSION!r} is reserved for time windows; give "
            "window=SECONDS (--window) instead"
        )
    return dims


def window_starts(timestamps: np.ndarray, window: int) -> list[str | None]:
    """Per trace, the start of its time window as RFC 3339 text (None: no timestamp)."""
    starts = np.floor(timestamps / window) * window
    return [None if np.isnan(t) else format_instant(float(t)) for t in starts]


def signature_of(estimator: Any) -> TraceSignature | None:
    """The trace signature an estimator checks traces against (None: it checks none)."""
    inner = getattr(estimator, "classifier_", estimator)
    signature: TraceSignature | None = getattr(inner, "signature_", None)
    return signature


def partial_estimate(
    batch: TraceBatch,
    estimator: SliceEstimator,
    by: Sequence[str] = (),
    *,
    window: int | None = None,
) -> PartialEstimate:
    """The `PartialEstimate` of one batch (its read rejections included)."""
    from entropy_sentinel.aggregate import SliceStats

    out = PartialEstimate(rejected=RejectionLog(keep=None))  # one batch: bounded
    out.rejected.add(batch.rejected)
    signature = signature_of(estimator)
    if signature is not None and len(batch):
        refused = signature.refused(batch)
        if refused.any():
            for i in np.flatnonzero(refused):
                reason = signature.why(batch.subset([int(i)]))
                out.rejected.add([Rejection(-1, batch.ids[int(i)], None, reason)])
                out.refusal = out.refusal or reason
            out.n_refused = int(refused.sum())
            batch = batch.subset(~refused)
    if not len(batch):
        return out
    labels = batch.labels if batch.has_label.any() else None
    p, contributions = _contributions(estimator, batch, labels)
    keys: list[SliceKey] = [tuple(s.get(d) for d in by) for s in batch.slices]
    if window is not None:
        keys = [(*k, w) for k, w in zip(keys, window_starts(batch.timestamps, window), strict=True)]
    out.present = set(batch.slice_dimensions)
    groups: dict[SliceKey, list[int]] = {}
    for j, key in enumerate(keys):
        groups.setdefault(key, []).append(j)
    for key, members in groups.items():
        idx = np.asarray(members)
        order = np.lexsort((p[idx],) if labels is None else (labels[idx], p[idx]))
        idx = idx[order]  # sorted by P, then label, as `group_records` sums
        out.stats[key] = SliceStats.from_flat(contributions[idx].sum(axis=0))
    out.n_traces, out.n_tokens = len(batch), batch.n_steps
    return out


def _contributions(
    estimator: Any, batch: TraceBatch, labels: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per trace: the value that orders sums, and the contributions to the statistics."""
    from entropy_sentinel.aggregate import SliceStats
    from entropy_sentinel.estimator.sentinel import SentinelEstimator

    if isinstance(estimator, SentinelEstimator):  # calibration, shift and transfer parts too
        scores = estimator.score(batch)
        return scores.p, scores.contributions(labels)
    p = np.asarray(estimator.predict_traces(batch), dtype=np.float64)
    return p, SliceStats.contributions(p, labels)


def finish(
    partial: PartialEstimate,
    estimator: SliceEstimator,
    by: Sequence[str],
    *,
    window: int | None = None,
    level: float = 0.95,
) -> SliceAccuracy:
    """The per-slice result of a merged summary (one call into the estimator layer)."""
    from entropy_sentinel.estimator.slices import accuracy_from_stats, finisher_of, knows_slices

    if not partial.n_traces and partial.n_refused:  # nothing scored: not a data problem
        raise ArtifactMismatchError(partial.refusal or "the estimator refused every trace")
    absent = [d for d in by if d not in partial.present]
    if absent and partial.n_traces:
        raise SliceDimensionError(
            f"no trace has slice dimension(s) {absent}; dimensions present: "
            f"{sorted(partial.present) or 'none'}. Choose one of those, or by=None for one slice",
            absent=absent,
            present=sorted(partial.present),
        )
    names = (*by, WINDOW_DIMENSION) if window is not None else tuple(by)
    return accuracy_from_stats(
        partial.stats,
        by=names,
        level=level,
        finish=finisher_of(estimator),
        shift_words=knows_slices(estimator),
    )


def estimate_stream(
    batches: Iterable[TraceBatch],
    estimator: SliceEstimator,
    by: str | Sequence[str] | None = "domain",
    level: float = 0.95,
    *,
    window: int | None = None,
    rejections: RejectionLog | None = None,
) -> tuple[SliceAccuracy, PartialEstimate]:
    """`estimate_accuracy` over batches read one at a time (see the module docstring).

    Returns the result and the merged summary: its ``rejected`` (``rejections`` when
    given, e.g. with a sink that writes them all) counts every record not read and every
    trace refused, and keeps the first of them.
    """
    dims = slice_dimensions(by)
    if window is not None and window <= 0:
        raise ConfigError(f"window={window!r} must be a positive number of seconds")
    total = PartialEstimate(rejected=RejectionLog() if rejections is None else rejections)
    for batch in batches:
        total.merge(partial_estimate(batch, estimator, dims, window=window))
        del batch  # not held while the next one is read
    result = finish(total, estimator, dims, window=window, level=level)
    return result, total
