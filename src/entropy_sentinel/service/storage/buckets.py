"""Per-(dimension, value, bucket) contributions of traces to the stored `SliceStats` sums.

Each trace adds, to the bucket of its event time, in every slice it belongs to (one
per slice dimension, plus the all-traffic slice ``*``):
``n = 1, sum_p = p, sum_p2 = p^2, sum_pq = p (1 - p)`` and, when labelled with ``y``,
``n_labelled = 1, sum_y = y, sum_r = y - p, sum_r2 = (y - p)^2``. Contributions of
many traces to the same key are summed here (``np.bincount``), so a write touches
each aggregate row once; keys come out sorted, so concurrent writers on PostgreSQL
lock rows in the same order and cannot deadlock.

>>> rows = bucket_rows(7, [60, 60], [{"domain": "a"}, {"domain": "a"}],
...                    np.array([0.5, 1.0]), np.array([np.nan, 1.0]))
>>> [(r["dimension"], r["value"], r["n"], r["sum_p"], r["n_labelled"]) for r in rows]
[('*', '*', 2, 1.5, 1), ('domain', 'a', 2, 1.5, 1)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel.service.storage.tables import ALL, SUM_COLUMNS

__all__ = ["bucket_rows", "contributions"]


def contributions(
    p: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Per-trace contributions ``(n, 8)`` in `SUM_COLUMNS` order (labels NaN = none)."""
    lab = ~np.isnan(y)
    r = np.where(lab, y - p, 0.0)
    return np.column_stack(
        [
            np.ones_like(p),
            p,
            p * p,
            p * (1.0 - p),
            lab.astype(np.float64),
            np.where(lab, y, 0.0),
            r,
            r * r,
        ]
    )


def bucket_rows(
    scorer_id: int,
    buckets: Sequence[int] | npt.NDArray[np.int64],
    slices: Sequence[Mapping[str, str]],
    p: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    *,
    sign: float = 1.0,
) -> list[dict[str, Any]]:
    """Summed rows for ``slice_buckets`` (see the module docstring), sorted by key.

    ``sign = -1`` gives the rows that take the traces out again.
    """
    per_trace = contributions(np.asarray(p, np.float64), np.asarray(y, np.float64)) * sign
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
        [np.bincount(code_arr, weights=rows_of[:, j], minlength=len(index)) for j in range(8)]
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
            row[name] = round(s[j]) if name in ("n", "n_labelled") else float(s[j])
        out.append(row)
    return out
