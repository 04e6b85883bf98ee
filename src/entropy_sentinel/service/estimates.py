"""Per-slice, per-window accuracy estimates, summed from the stored bucket aggregates.

One `SliceEstimate` record per (slice value, window): n, and the numbers of the model's
estimator finishing the slice's summed statistics (`entropy_sentinel.service.
slice_numbers.finish_slice`, the library's `finish`): the label-free estimate (mean
P(correct)) with its interval (sampling, calibration and transfer error), the parts of
that interval, the shift score and its word, and, when some traces of the slice are
labelled, the label-corrected estimate and interval (designed labels weighted by their
inclusion probabilities, plain labels as a simple random sample); the reference
window's numbers and the change against them.

Models: each model's traces are counted by its own scorer and finished by its own
estimator. Given several scorers, `estimate` either combines them (all models, each
trace scored by its own estimator: `entropy_sentinel.service.slice_numbers.combine`)
or, with ``split=True``, answers each model on the same slices and windows (records
carry their ``model``). A record is marked ``other_model`` when some of its traces were
scored by an estimator fitted on another model's traces (`ScorerInfo.other_model`).

Windows are ``window`` seconds long and aligned to the epoch (a ``1d`` window starts
at 00:00 UTC); without ``window`` one window spans ``since .. until``. The reference
of a window starting at ``t`` is ``[t - reference, t)``. Every figure is a sum of
stored buckets (no trace is rescanned), so a query over a year of traffic costs
what the number of (slice, bucket) rows in it costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from entropy_sentinel.aggregate import Interval, SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.intervals import SliceInterval
from entropy_sentinel.estimator.slices import word_of
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.slice_numbers import SliceSums, combine, finish_slice
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.tables import ALL, SUM_COLUMNS, slice_buckets
from entropy_sentinel.timeutil import format_duration, format_instant

__all__ = [
    "EstimateQuery",
    "EstimateResult",
    "SliceEstimate",
    "estimate",
    "slice_stats",
    "slice_values",
]


@dataclass(frozen=True)
class EstimateQuery:
    """What to estimate. Times are epoch seconds, durations seconds.

    Attributes:
        by: slice dimension (``"domain"``), or ``"*"`` for all traffic.
        window: window length; None for one window over ``since .. until``.
        since, until: time range (None: from the first stored trace / up to now).
        reference: reference length before each window; None or 0 for none.
        level: interval level.
        min_count: leave out (slice, window) records with fewer traces.
    """

    by: str
    window: int | None = None
    since: float | None = None
    until: float | None = None
    reference: int | None = None
    level: float = 0.95
    min_count: int = 1

    def check(self, bucket: int) -> None:
        """Raise `ConfigError` when the query cannot be answered from ``bucket`` grain."""
        if not self.by:
            raise ConfigError("`by` must name a slice dimension (or '*' for all traffic)")
        for name in ("window", "reference"):
            value = getattr(self, name)
            if value and value % bucket:
                raise ConfigError(
                    f"{name}={format_duration(value)} is not a whole number of the database's "
                    f"{format_duration(bucket)} buckets; use a multiple of {bucket} s"
                )
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ConfigError(
                f"since ({format_instant(self.since)}) must be before until "
                f"({format_instant(self.until)})"
            )
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"level={self.level!r} must be in (0, 1), e.g. 0.95")
        if self.min_count < 1:
            raise ConfigError(f"min_count={self.min_count!r} must be >= 1")


@dataclass(frozen=True)
class SliceEstimate:
    """Estimated accuracy of one slice in one window (see the module docstring).

    Attributes:
        sums: the slice's summed statistics in the window.
        interval: its numbers (`SliceInterval`: estimate and interval, their parts, the
            shift, the label part and the label-corrected estimate and interval).
        reference, reference_interval: the same for the reference window (None without).
    """

    dimension: str
    value: str
    window_start: float
    window_end: float
    sums: SliceSums
    interval: SliceInterval
    reference: SliceSums | None
    reference_interval: SliceInterval | None
    model: str | None = None
    other_model: bool = False

    @property
    def n(self) -> int:
        return self.interval.n

    @property
    def shift_word(self) -> str:
        """The shift in plain words (`word_of`)."""
        return word_of(self.interval)

    @property
    def n_labelled(self) -> int:
        """Labels in the slice: designed and plain."""
        return 0 if self.interval.labels is None else self.interval.labels.n_labels

    @property
    def label_corrected(self) -> Interval | None:
        """The label-corrected estimate and interval (None without labels)."""
        iv = self.interval
        if iv.labels is None or not math.isfinite(iv.ppi_estimate):
            return None
        return Interval(iv.ppi_estimate, iv.ppi_lower, iv.ppi_upper, iv.level)

    @property
    def change(self) -> float:
        """Estimate minus the reference estimate (NaN without a reference)."""
        if self.reference_interval is None:
            return math.nan
        return self.interval.estimate - self.reference_interval.estimate

    @property
    def change_z(self) -> float:
        """`change` in standard errors (sampling only, both windows in quadrature)."""
        ref = self.reference_interval
        if ref is None or not ref.n or not self.interval.n:
            return math.nan
        se = math.hypot(self.interval.sampling_sd, ref.sampling_sd)
        return self.change / se if se > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (NaN becomes None)."""
        iv = self.interval
        labels = iv.labels
        out: dict[str, Any] = {
            "slice": {} if self.dimension == ALL else {self.dimension: self.value},
            "model": self.model,
            "other_model": self.other_model,
            "window_start": format_instant(self.window_start),
            "window_end": format_instant(self.window_end),
            "n": iv.n,
            "estimate": _num(iv.estimate),
            "lower": _num(iv.lower),
            "upper": _num(iv.upper),
            "sampling_sd": _num(iv.sampling_sd),
            "calibration_sd": _num(iv.calibration_sd),
            "transfer_half_width": _num(iv.transfer_half_width),
            "unseen_fraction": _num(iv.unseen_fraction),
            "shift": _num(iv.shift),
            "shift_word": self.shift_word,
            "n_labelled": self.n_labelled,
            "n_plain": 0 if labels is None else labels.n_plain,
            "labelled_accuracy": None if labels is None else _num(labels.labelled_accuracy),
            "lambda": None if labels is None else _num(labels.lam),
            "label_corrected": None,
            "reference": None,
            "change": _num(self.change),
            "change_z": _num(self.change_z),
        }
        if self.label_corrected is not None:
            out["label_corrected"] = _interval_dict(self.label_corrected)
        if self.reference is not None and self.reference_interval is not None:
            ref = self.reference_interval
            out["reference"] = {
                "n": ref.n,
                "estimate": _num(ref.estimate),
                "lower": _num(ref.lower),
                "upper": _num(ref.upper),
            }
        return out


@dataclass(frozen=True)
class EstimateResult:
    """Records of one query, worst estimate first within each window (and model)."""

    query: EstimateQuery
    scorers: tuple[ScorerInfo, ...]
    start: float
    end: float
    records: tuple[SliceEstimate, ...]

    @property
    def scorer(self) -> ScorerInfo | None:
        """The scorer when the result covers one model, else None."""
        return self.scorers[0] if len(self.scorers) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        q = self.query
        one = self.scorer
        return {
            "by": q.by,
            "window": None if q.window is None else format_duration(q.window),
            "since": format_instant(self.start),
            "until": format_instant(self.end),
            "reference": format_duration(q.reference) if q.reference else None,
            "level": q.level,
            "model_sd": None if one is None else one.model_sd,
            "scorer_id": None if one is None else one.id,
            "models": [
                {
                    "model": s.model,
                    "scorer_id": s.id,
                    "model_sd": s.model_sd,
                    "fitted_on": s.fitted_on,
                    "other_model": s.other_model,
                }
                for s in self.scorers
            ],
            "records": [r.to_dict() for r in self.records],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per record, flat columns (for CSV and tables)."""
        rows = []
        for r in self.records:
            iv, ref, lc = r.interval, r.reference_interval, r.label_corrected
            labels = iv.labels
            rows.append(
                {
                    "model": r.model,
                    "other_model": r.other_model,
                    "dimension": r.dimension,
                    "value": r.value,
                    "window_start": format_instant(r.window_start),
                    "window_end": format_instant(r.window_end),
                    "n": iv.n,
                    "estimate": iv.estimate,
                    "lower": iv.lower,
                    "upper": iv.upper,
                    "shift": iv.shift,
                    "shift_word": r.shift_word,
                    "sampling_sd": iv.sampling_sd,
                    "calibration_sd": iv.calibration_sd,
                    "transfer_half_width": iv.transfer_half_width,
                    "unseen_fraction": iv.unseen_fraction,
                    "reference_n": ref.n if ref is not None else 0,
                    "reference_estimate": ref.estimate if ref is not None else math.nan,
                    "change": r.change,
                    "change_z": r.change_z,
                    "n_labelled": r.n_labelled,
                    "n_plain": 0 if labels is None else labels.n_plain,
                    "labelled_accuracy": math.nan if labels is None else labels.labelled_accuracy,
                    "lambda": math.nan if labels is None else labels.lam,
                    "label_corrected": lc.estimate if lc is not None else math.nan,
                    "label_corrected_lower": lc.lower if lc is not None else math.nan,
                    "label_corrected_upper": lc.upper if lc is not None else math.nan,
                }
            )
        return pd.DataFrame(rows)


def estimate(
    db: Database,
    scorers: ScorerInfo | Sequence[ScorerInfo],
    bucket: int,
    query: EstimateQuery,
    *,
    now: float,
    split: bool = False,
) -> EstimateResult:
    """Answer ``query`` from the aggregates of ``scorers`` (see the module docstring):
    summed over them, or per scorer (model) with ``split``."""
    query.check(bucket)
    group = (scorers,) if isinstance(scorers, ScorerInfo) else tuple(scorers)
    ids = [s.id for s in group]
    until = now if query.until is None else query.until
    end = _ceil(until, bucket)
    since = query.since
    if since is None:
        first = _first_bucket(db, ids, query.by)
        since = float(first) if first is not None else float(end - (query.window or bucket))
    start = _floor(since, bucket)
    if query.window:
        start, end = _floor(start, query.window), _ceil(end, query.window)
    ref = query.reference or 0
    frame = _bucket_frame(db, ids, query.by, start - ref, end)
    if frame.empty:
        return EstimateResult(query, group, float(start), float(end), ())
    width = query.window or (end - start)
    scorer_of = frame["scorer_id"].to_numpy(np.int64)
    per_scorer = {
        sid: _window_stats(frame[scorer_of == sid], start, end, width, ref) for sid in ids
    }
    parts = [[s] for s in group] if split else [list(group)]
    level = query.level
    records: list[SliceEstimate] = []
    for members in parts:
        merged: dict[tuple[str, int], list[Any]] = {}
        for s in members:
            for key, (cur, reference) in per_scorer.get(s.id, {}).items():
                acc = merged.setdefault(key, [SliceSums(SliceStats()), None, [], [], False])
                acc[0] = acc[0] + cur
                acc[2].append(finish_slice(s, cur, level))
                acc[4] = acc[4] or (s.other_model and cur.stats.n > 0)
                if reference is not None:
                    acc[1] = reference if acc[1] is None else acc[1] + reference
                    acc[3].append(finish_slice(s, reference, level))
        model = members[0].model if split else None
        for (value, w), (cur, reference, ivs, ref_ivs, other) in merged.items():
            if cur.stats.n < query.min_count:
                continue
            has_ref = bool(ref) and reference is not None
            records.append(
                SliceEstimate(
                    dimension=query.by,
                    value=value,
                    window_start=float(w),
                    window_end=float(w + width),
                    sums=cur,
                    interval=combine(ivs, level),
                    reference=reference if has_ref else None,
                    reference_interval=combine(ref_ivs, level)
                    if has_ref and reference.stats.n
                    else None,
                    model=model,
                    other_model=other,
                )
            )
    records.sort(
        key=lambda r: (r.window_start, r.model or "", _nan_last(r.interval.estimate), r.value)
    )
    return EstimateResult(query, group, float(start), float(end), tuple(records))


def _window_stats(
    frame: pd.DataFrame, start: int, end: int, width: int, ref: int
) -> dict[tuple[str, int], tuple[SliceSums, SliceSums | None]]:
    """(value, window start) -> (its sums, its reference sums) for one scorer's rows."""
    out: dict[tuple[str, int], tuple[SliceSums, SliceSums | None]] = {}
    for value, group in frame.groupby("value", sort=True):
        b = group["bucket"].to_numpy(np.int64)
        sums = group[list(SUM_COLUMNS)].to_numpy(np.float64)
        order = np.argsort(b, kind="stable")
        b, sums = b[order], sums[order]
        cum = np.vstack([np.zeros((1, sums.shape[1])), np.cumsum(sums, axis=0)])
        in_range = (b >= start) & (b < end)
        wins = np.unique(start + ((b[in_range] - start) // width) * width)
        for w in wins.tolist():
            cur = SliceSums.from_columns(_range_sum(cum, b, w, w + width))
            reference = SliceSums.from_columns(_range_sum(cum, b, w - ref, w)) if ref else None
            out[(str(value), int(w))] = (cur, reference)
    return out


def slice_stats(
    db: Database, scorer_id: int | Sequence[int], dimension: str, start: float, end: float
) -> dict[str, SliceSums]:
    """Per value of ``dimension``: the merged sums of buckets in ``[start, end)`` (of one
    scorer, or summed over several)."""
    cols = [sa.func.sum(slice_buckets.c[c]) for c in SUM_COLUMNS]
    query = (
        sa.select(slice_buckets.c.value, *cols)
        .where(
            _of_scorers(scorer_id),
            slice_buckets.c.dimension == dimension,
            slice_buckets.c.bucket >= int(start),
            slice_buckets.c.bucket < math.ceil(end),
        )
        .group_by(slice_buckets.c.value)
        .having(sa.func.sum(slice_buckets.c.n) > 0)
    )
    with db.read.connect() as conn:
        rows = conn.execute(query).all()
    return {row[0]: SliceSums.from_columns(row[1:]) for row in rows}


def slice_values(
    db: Database, scorer_id: int | Sequence[int], start: float, end: float
) -> dict[str, dict[str, int]]:
    """Every slice dimension seen in ``[start, end)``, with each value's trace count
    (of one scorer, or summed over several)."""
    query = (
        sa.select(slice_buckets.c.dimension, slice_buckets.c.value, sa.func.sum(slice_buckets.c.n))
        .where(
            _of_scorers(scorer_id),
            slice_buckets.c.bucket >= int(start),
            slice_buckets.c.bucket < math.ceil(end),
        )
        .group_by(slice_buckets.c.dimension, slice_buckets.c.value)
        .having(sa.func.sum(slice_buckets.c.n) > 0)
    )
    out: dict[str, dict[str, int]] = {}
    with db.read.connect() as conn:
        for dim, value, n in conn.execute(query):
            out.setdefault(dim, {})[value] = int(n)
    return out


# ------------------------------------------------------------------ helpers
def _of_scorers(scorer_id: int | Sequence[int]) -> sa.ColumnElement[bool]:
    if isinstance(scorer_id, int):
        return slice_buckets.c.scorer_id == scorer_id
    return slice_buckets.c.scorer_id.in_(list(scorer_id))


def _bucket_frame(
    db: Database, scorer_ids: Sequence[int], dimension: str, lo: int, hi: int
) -> pd.DataFrame:
    query = sa.select(
        slice_buckets.c.scorer_id,
        slice_buckets.c.value,
        slice_buckets.c.bucket,
        *(slice_buckets.c[c] for c in SUM_COLUMNS),
    ).where(
        _of_scorers(scorer_ids),
        slice_buckets.c.dimension == dimension,
        slice_buckets.c.bucket >= lo,
        slice_buckets.c.bucket < hi,
    )
    with db.read.connect() as conn:
        rows = conn.execute(query).all()
    return pd.DataFrame(rows, columns=["scorer_id", "value", "bucket", *SUM_COLUMNS])


def _first_bucket(db: Database, scorer_ids: Sequence[int], dimension: str) -> int | None:
    query = sa.select(sa.func.min(slice_buckets.c.bucket)).where(
        _of_scorers(scorer_ids), slice_buckets.c.dimension == dimension
    )
    with db.read.connect() as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else int(value)


def _range_sum(cum: np.ndarray, b: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Sum of the rows whose bucket is in ``[lo, hi)`` from prefix sums ``cum``."""
    i, j = np.searchsorted(b, [lo, hi], side="left")
    return np.asarray(cum[j] - cum[i], dtype=np.float64)


def _interval_dict(iv: Interval) -> dict[str, float | None]:
    return {"estimate": _num(iv.estimate), "lower": _num(iv.lower), "upper": _num(iv.upper)}


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def _floor(t: float, step: int) -> int:
    return int(t // step) * step


def _ceil(t: float, step: int) -> int:
    return -int(-t // step) * step
