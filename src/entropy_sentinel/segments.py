"""Vectorised reductions over ragged segments (one segment = one trace).

A ragged array is a flat float64 vector ``values`` of length ``N`` and an int64
``offsets`` vector of length ``n + 1``; segment ``i`` is
``values[offsets[i]:offsets[i + 1]]``. Every segment must be non-empty.
Nothing here loops over segments in Python: quantiles sort the segments in
length buckets (a few padded 2-D row sorts), the rest are ``ufunc.reduceat``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from entropy_sentinel._typing import FloatArray, IntArray

__all__ = [
    "segment_max",
    "segment_mean",
    "segment_min",
    "segment_moments",
    "segment_quantiles",
    "segment_sum",
]


_BUCKET_ELEMENTS = 1 << 22  # rows sorted together: at most ~32 MiB of float64 padding


def segment_sum(values: FloatArray, offsets: IntArray) -> FloatArray:
    """Sum of each segment.

    >>> segment_sum(np.array([1.0, 2.0, 4.0]), np.array([0, 2, 3])).tolist()
    [3.0, 4.0]
    """
    if offsets.shape[0] <= 1:
        return np.zeros(0)
    return np.add.reduceat(values, offsets[:-1])


def segment_mean(values: FloatArray, offsets: IntArray) -> FloatArray:
    """Mean of each segment."""
    return segment_sum(values, offsets) / np.diff(offsets)


def segment_max(values: FloatArray, offsets: IntArray) -> FloatArray:
    """Maximum of each segment."""
    if offsets.shape[0] <= 1:
        return np.zeros(0)
    return np.maximum.reduceat(values, offsets[:-1])


def segment_min(values: FloatArray, offsets: IntArray) -> FloatArray:
    """Minimum of each segment."""
    if offsets.shape[0] <= 1:
        return np.zeros(0)
    return np.minimum.reduceat(values, offsets[:-1])


def segment_moments(
    values: FloatArray, offsets: IntArray, mean: FloatArray | None = None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Central moments ``m2, m3, m4`` of each segment (divided by n: biased, ddof=0).

    >>> m2, m3, m4 = segment_moments(np.array([0.0, 2.0]), np.array([0, 2]))
    >>> m2.tolist(), m3.tolist(), m4.tolist()
    ([1.0], [0.0], [1.0])
    """
    lengths = np.diff(offsets)
    if mean is None:
        mean = segment_mean(values, offsets)
    d = values - np.repeat(mean, lengths)
    d2 = d * d
    m2 = segment_sum(d2, offsets) / lengths
    m3 = segment_sum(d2 * d, offsets) / lengths
    m4 = segment_sum(d2 * d2, offsets) / lengths
    return m2, m3, m4


def segment_quantiles(values: FloatArray, offsets: IntArray, qs: Sequence[float]) -> FloatArray:
    """Quantiles of each segment with linear interpolation (numpy's default method).

    Returns an ``(n, len(qs))`` array that equals, bit for bit,
    ``np.quantile(values[offsets[i]:offsets[i + 1]], qs)`` for each segment.

    >>> segment_quantiles(np.array([3.0, 1.0, 2.0, 5.0]), np.array([0, 3, 4]), [0.5]).tolist()
    [[2.0], [5.0]]
    """
    q = np.asarray(qs, dtype=np.float64)
    lengths = np.diff(offsets)
    n = lengths.shape[0]
    out = np.empty((n, q.shape[0]))
    if n == 0:
        return out
    # Bucket segments by length (powers of two) so that padding wastes < 2x memory.
    bucket = np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    edges = np.flatnonzero(np.diff(bucket[order])) + 1
    for members in np.split(order, edges):
        width = int(lengths[members].max())
        rows_per_chunk = max(1, _BUCKET_ELEMENTS // width)
        for start in range(0, members.shape[0], rows_per_chunk):
            chunk = members[start : start + rows_per_chunk]
            out[chunk] = _sorted_rows_quantiles(values, offsets[chunk], lengths[chunk], width, q)
    return out


def _sorted_rows_quantiles(
    values: FloatArray, starts: IntArray, lengths: IntArray, width: int, q: FloatArray
) -> FloatArray:
    rows = lengths.shape[0]
    mat = np.full((rows, width), np.inf)
    row_idx = np.repeat(np.arange(rows), lengths)
    seg_start = np.repeat(np.cumsum(lengths) - lengths, lengths)
    col_idx = np.arange(row_idx.shape[0]) - seg_start
    mat[row_idx, col_idx] = values[np.repeat(starts, lengths) + col_idx]
    mat.sort(axis=1)
    # numpy "linear" method: virtual index q * (n - 1), lerp between neighbours.
    virtual = q[None, :] * (lengths[:, None] - 1).astype(np.float64)
    lo = np.floor(virtual)
    t = virtual - lo
    lo_i = lo.astype(np.int64)
    hi_i = np.minimum(lo_i + 1, lengths[:, None] - 1)
    r = np.arange(rows)[:, None]
    a = mat[r, lo_i]
    b = mat[r, hi_i]
    return _lerp(a, b, t)


def _lerp(a: FloatArray, b: FloatArray, t: FloatArray) -> FloatArray:
    """numpy's ``_lerp`` (same formula, so results match ``np.quantile`` exactly)."""
    diff = b - a
    res: FloatArray = np.where(t >= 0.5, b - diff * (1.0 - t), a + diff * t)
    return res
