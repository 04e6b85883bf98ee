"""Per-(dimension, value, bucket) contributions of traces to the stored `SliceStats` sums.

Each trace adds, to the bucket of its event time, in every slice it belongs to (one
per slice dimension, plus the all-traffic slice ``*``), its contribution to every flat
field of `entropy_sentinel.aggregate.SliceStats`, computed by the one function that
computes them everywhere (`SliceStats.contributions`: the library, the streaming
engine and Spark sum the same columns), from its `TraceTerms`: P, label, the label's
inclusion probability, whether its slice value had a calibration offset, that offset's
part, and its whitened profile. One column more, ``n_shift_unknown``, counts the
uncalibrated responses whose whitened profile is not known (stored before the service
kept it, or scored by an estimator without a shift reference): a window holding any of
them has no shift score (`entropy_sentinel.service.estimates`).

Contributions of many traces to the same key are summed here (``np.bincount``), so a
write touches each aggregate row once; keys come out sorted, so concurrent writers on
PostgreSQL lock rows in the same order and cannot deadlock.

>>> terms = TraceTerms.plain(np.array([0.5, 1.0]), np.array([np.nan, 1.0]))
>>> rows = bucket_rows(7, [60, 60], [{"domain": "a"}, {"domain": "a"}], terms)
>>> [(r["dimension"], r["value"], r["n"], r["sum_p"], r["n_labelled"]) for r in rows]
[('*', '*', 2, 1.5, 1), ('domain', 'a', 2, 1.5, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.aggregate import SHIFT_DIM, SliceStats
from entropy_sentinel.service.storage.tables import ALL, COUNT_COLUMNS, SUM_COLUMNS, traces

__all__ = ["TERM_COLUMNS", "TraceTerms", "bucket_rows", "pack_w", "unpack_w"]

_W_BYTES = SHIFT_DIM * 8

TERM_COLUMNS = (
    traces.c.id,
    traces.c.bucket,
    traces.c.slice,
    traces.c.scorer_id,
    traces.c.p,
    traces.c.label,
    traces.c.label_pi,
    traces.c.seen,
    traces.c.cal,
    traces.c.w,
)
"""The ``traces`` columns a stored trace's contribution to the sums needs (with its key:
id, bucket, slice, scorer), what `TraceTerms.from_rows` reads."""


def pack_w(w: npt.ArrayLike) -> bytes | None:
    """A whitened profile (`SHIFT_DIM` floats) as stored: float64 little-endian; None for
    a row of NaN (not known)."""
    row = np.asarray(w, dtype="<f8").reshape(SHIFT_DIM)
    return None if np.isnan(row).any() else row.tobytes()


def unpack_w(data: bytes | None) -> FloatArray:
    """The inverse of `pack_w` (NaN where nothing is stored)."""
    if data is None or len(data) != _W_BYTES:
        return np.full(SHIFT_DIM, np.nan)
    return np.frombuffer(data, dtype="<f8").astype(np.float64)


@dataclass(frozen=True, eq=False)
class TraceTerms:
    """What each trace's contribution to the sums needs (one row per trace).

    Attributes:
        p: P(correct) in [0, 1] (after any recalibration).
        y: label, 1 correct, 0 wrong, NaN unlabelled.
        pi: the label's inclusion probability under the design that drew it; NaN for a
            plain label (or none).
        seen: whether the trace's slice value had a calibration offset.
        cal: that offset's part ``p (1 - p) sd(b)`` (0 where not seen).
        w: ``(n, SHIFT_DIM)`` whitened profile; rows of NaN where not known.
    """

    p: FloatArray
    y: FloatArray
    pi: FloatArray
    seen: BoolArray
    cal: FloatArray
    w: FloatArray

    def __len__(self) -> int:
        return int(self.p.shape[0])

    @classmethod
    def plain(cls, p: npt.ArrayLike, y: npt.ArrayLike) -> TraceTerms:
        """Terms of traces with only P and plain labels: not seen, shift unknown."""
        pa = np.asarray(p, dtype=np.float64)
        n = pa.shape[0]
        return cls(
            pa,
            np.asarray(y, dtype=np.float64),
            np.full(n, np.nan),
            np.zeros(n, dtype=bool),
            np.zeros(n),
            np.full((n, SHIFT_DIM), np.nan),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Any]) -> TraceTerms:
        """From stored ``traces`` rows (``p, label, label_pi, seen, cal, w``)."""
        n = len(rows)
        w = np.full((n, SHIFT_DIM), np.nan)
        for i, r in enumerate(rows):
            w[i] = unpack_w(r.w)
        return cls(
            np.array([r.p for r in rows], dtype=np.float64),
            np.array([np.nan if r.label is None else r.label for r in rows], dtype=np.float64),
            np.array([np.nan if r.label_pi is None else r.label_pi for r in rows], np.float64),
            np.array([bool(r.seen) for r in rows], dtype=bool),
            np.array([0.0 if r.cal is None else r.cal for r in rows], dtype=np.float64),
            w,
        )

    def take(self, idx: npt.ArrayLike) -> TraceTerms:
        """The rows ``idx``."""
        i = np.asarray(idx, dtype=np.intp)
        return TraceTerms(self.p[i], self.y[i], self.pi[i], self.seen[i], self.cal[i], self.w[i])

    def with_labels(self, y: npt.ArrayLike, pi: npt.ArrayLike) -> TraceTerms:
        """The same traces with other labels (and inclusion probabilities)."""
        return TraceTerms(
            self.p,
            np.asarray(y, dtype=np.float64),
            np.asarray(pi, dtype=np.float64),
            self.seen,
            self.cal,
            self.w,
        )

    def contributions(self) -> FloatArray:
        """Per trace, ``(n, len(SUM_COLUMNS))``: `SliceStats.contributions` (in
        `FLAT_FIELDS` order), then ``n_shift_unknown``."""
        known = np.asarray(~np.isnan(self.w).any(axis=1), dtype=bool)
        unknown = ~self.seen & ~known
        flat = SliceStats.contributions(
            self.p,
            self.y,
            pi=self.pi,
            unseen=~self.seen,
            cal=self.cal,
            w=np.where(known[:, None], self.w, 0.0),
        )
        return np.column_stack([flat, unknown.astype(np.float64)])


def bucket_rows(
    scorer_id: int,
    buckets: Sequence[int] | npt.NDArray[np.int64],
    slices: Sequence[Mapping[str, str]],
    terms: TraceTerms,
    *,
    sign: float = 1.0,
) -> list[dict[str, Any]]:
    """Summed rows for ``slice_buckets`` (see the module docstring), sorted by key.

    ``sign = -1`` gives the rows that take the traces out again.
    """
    per_trace = terms.contributions() * sign
    index: dict[tuple[str, int, str], int] = {}
    codes: list[int] = []
    owners: list[int] = []
    for i, (bucket, slice_) in enumerate(zip(buckets, slices, strict=True)):
        for key in ((ALL, int(bucket), ALL), *((d, int(bucket), v) for d, v in slice_.items())):
            codes.append(index.setdefault(key, len(index)))
            owners.append(i)
    if not codes:
        return []
    code_arr = np.asarray(codes, dtype=np.int64)
    rows_of = per_trace[np.asarray(owners, dtype=np.int64)]
    sums = np.column_stack(
        [
            np.bincount(code_arr, weights=rows_of[:, j], minlength=len(index))
            for j in range(len(SUM_COLUMNS))
        ]
    )
    out = []
    for key in sorted(index):
        dim, bucket, value = key
        s = sums[index[key]]
        row: dict[str, Any] = {
            "scorer_id": scorer_id,
            "dimension": dim,
            "bucket": bucket,
            "value": value,
        }
        for j, name in enumerate(SUM_COLUMNS):
            row[name] = round(s[j]) if name in COUNT_COLUMNS else float(s[j])
        out.append(row)
    return out
