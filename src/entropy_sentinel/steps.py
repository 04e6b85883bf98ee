"""Per-step statistics of a batch, computed once and shared by features and scores.

`StepStats` wraps a `TraceBatch` and exposes the per-token quantities every
feature and baseline score reduces over: the step entropy ``H(t)`` in the chosen
mode, the returned probability mass, the top-two probabilities. Each is computed
on first use, for the whole batch at once, and cached.

Definitions (docs/definitions.md), per step ``t`` with returned set ``K_t`` (the
top-k alternatives, plus the sampled token when it is not among them):

* ``topk``:        ``H(t) = -sum_{v in K_t} p ln p`` with ``p = exp(logprob)``, not
  renormalised (the paper's definition). Nats.
* ``topk_renorm``: the entropy of ``p / m`` with ``m = sum_{v in K_t} p``, which is
  ``H_topk / m + ln m``.
* ``topk_tail``:   ``H_topk - r ln r`` with the leftover mass ``r = max(0, 1 - m)``
  counted as one extra outcome.

Precomputed entropies (``token_entropy`` records) are used as given in every mode.

Precision: ``"float32"`` (default) evaluates ``exp`` in float32 and accumulates
``p ln p`` in float64 (logprobs arrive with about 7 significant digits); per-step
entropies then carry a relative error below 1e-6 (an absolute one below ~2e-6 nats
for the leftover mass of ``topk_tail``), tested. ``"float64"`` is exact to rounding.
Which is faster depends on the processor (``benchmarks/bench_features.py`` measures
both). Accumulating ``p ln p`` in float32 as well would be faster still, but a trace's
sums would then depend on where it sits in the batch (the float32 matrix-vector kernel
sums rows differently by position), and a trace must score the same in any batch.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["ENTROPY_MODES", "EntropyMode", "Precision", "StepStats", "check_mode"]

EntropyMode = Literal["topk", "topk_renorm", "topk_tail"]
ENTROPY_MODES: tuple[str, ...] = get_args(EntropyMode)
Precision = Literal["float32", "float64"]


_CHUNK_ELEMENTS = 1 << 15  # top-k cells per chunk: keeps the temporaries in L2
_FLOOR = -1.0e4  # logprobs below this have p == 0 in both precisions; clears -inf padding


def check_mode(mode: str) -> EntropyMode:
    """Return ``mode`` if it is a known entropy mode, else raise `ConfigError`."""
    if mode not in ENTROPY_MODES:
        raise ConfigError(f"entropy mode {mode!r} is unknown; use one of {list(ENTROPY_MODES)}")
    return mode  # type: ignore[return-value]


class StepStats:
    """Shared per-step arrays of one batch (see the module docstring).

    >>> from entropy_sentinel.traces import TraceBatch
    >>> b = TraceBatch.from_arrays([0, 1], topk_logprobs=[[np.log(0.5), np.log(0.25)]])
    >>> s = StepStats(b, precision="float64")
    >>> round(float(s.entropy[0]), 6), round(float(s.returned_mass[0]), 6)
    (0.693147, 0.75)
    """

    def __init__(
        self, batch: TraceBatch, mode: str = "topk", *, precision: str = "float32"
    ) -> None:
        if precision not in ("float32", "float64"):
            raise ConfigError(f"precision {precision!r} is unknown; use 'float32' or 'float64'")
        self.batch = batch
        self.mode: EntropyMode = check_mode(mode)
        self.precision: Precision = precision  # type: ignore[assignment]

    @property
    def offsets(self) -> npt.NDArray[np.int64]:
        return self.batch.offsets

    @cached_property
    def _computed(self) -> npt.NDArray[np.bool_]:
        """Steps whose entropy is computed from logprobs (not precomputed)."""
        return np.isnan(self.batch.token_entropy)

    def share_passes(self) -> StepStats:
        """Compute the top two probabilities in the same pass over the top-k matrix as the
        entropies (when both are needed, e.g. for the baseline scores); returns self."""
        self._want_top_two = True
        return self

    @cached_property
    def _raw(self) -> tuple[FloatArray, FloatArray]:
        """(``H_topk``, returned mass ``m``) per step from the logprobs."""
        b = self.batch
        dtype = np.float32 if self.precision == "float32" else np.float64
        want = getattr(self, "_want_top_two", False) and "_top_two_logprobs" not in self.__dict__
        h, mass, two = _entropy_and_mass(b.topk_logprobs, dtype, top_two=want)
        if two is not None:
            self.__dict__["_top_two_logprobs"] = two
        outside = ~b.sampled_in_topk & self._computed
        if outside.any():  # the sampled token joins the returned set
            lp = b.sampled_logprob[outside]
            ps = np.exp(lp)
            h[outside] -= ps * lp
            mass[outside] += ps
        return h, mass

    @cached_property
    def returned_mass(self) -> FloatArray:
        """Probability mass of the returned set per step (NaN for precomputed entropies)."""
        mass = self._raw[1].copy()
        mass[~self._computed] = np.nan
        return mass

    @cached_property
    def tail_mass(self) -> FloatArray:
        """Leftover mass outside the returned set, ``max(0, 1 - m)`` (NaN where unknown)."""
        return np.clip(1.0 - self.returned_mass, 0.0, 1.0)

    @cached_property
    def entropy(self) -> FloatArray:
        """``H(t)`` per step in nats, in this object's mode. Shape ``(N,)``."""
        h, mass = self._raw
        if self.mode == "topk":
            out = h.copy()
        elif self.mode == "topk_renorm":
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(mass > 0.0, h / mass + np.log(mass), 0.0)
        else:  # topk_tail
            r = np.clip(1.0 - mass, 0.0, 1.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = h - np.where(r > 0.0, r * np.log(r), 0.0)
        given = ~self._computed
        out[given] = self.batch.token_entropy[given]
        return out

    @cached_property
    def _top_two_logprobs(self) -> tuple[FloatArray, FloatArray]:
        return _top_two_logprobs(self.batch.topk_logprobs)

    @cached_property
    def top_two(self) -> tuple[FloatArray, FloatArray]:
        """Largest and second-largest probability of the returned set per step (p2 = 0
        when only one outcome is returned; NaN for precomputed entropies)."""
        b = self.batch
        lp1, lp2 = self._top_two_logprobs
        p1, p2 = np.exp(lp1), np.exp(lp2)
        outside = ~b.sampled_in_topk & self._computed
        ps = np.where(outside, np.exp(b.sampled_logprob), 0.0)
        p1, p2 = np.maximum(p1, ps), np.maximum(np.minimum(p1, ps), p2)
        p1[~self._computed] = np.nan
        p2[~self._computed] = np.nan
        return p1, p2


def _entropy_and_mass(
    topk: FloatArray, dtype: type[np.floating], top_two: bool = False
) -> tuple[FloatArray, FloatArray, tuple[FloatArray, FloatArray] | None]:
    """``-sum p ln p`` and ``sum p`` over each row of ``topk`` (chunked, float64 results),
    and with ``top_two`` each row's two largest entries (`_top_two_logprobs`), taken from
    the same blocks while they are in cache."""
    n, k = topk.shape
    h = np.zeros(n)
    mass = np.zeros(n)
    if k == 0 or n == 0:
        return h, mass, _top_two_logprobs(topk) if top_two else None
    rows = max(1, _CHUNK_ELEMENTS // k)
    lp_buf = np.empty((rows, k), dtype=dtype)
    p_buf = np.empty((rows, k), dtype=dtype)
    plogp_buf = np.empty((rows, k))
    ones = np.ones(k, dtype=dtype)
    ones64 = np.ones(k)
    two = (np.empty(n), np.empty(n), np.empty(rows * k, dtype=bool)) if top_two else None
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = topk[start:stop]
        lp = lp_buf[: stop - start]
        p = p_buf[: stop - start]
        plogp = plogp_buf[: stop - start]
        # One pass each; row sums as matrix-vector products (numpy's reductions
        # along a short inner axis are several times slower).
        np.maximum(block, _FLOOR, out=lp, casting="same_kind")
        np.exp(lp, out=p)
        np.matmul(p, ones, out=mass[start:stop], casting="same_kind")
        np.multiply(p, lp, out=plogp, dtype=np.float64)  # accumulate in float64: the same
        np.matmul(plogp, ones64, out=h[start:stop])  # sums whatever block a row is in
        if two is not None:
            _top_two_block(block, start, two)
    np.negative(h, out=h)
    return h, mass, (two[0], two[1]) if two is not None else None


def _top_two_logprobs(topk: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Largest and second-largest entry of each row (``-inf`` where missing).

    Servers list the alternatives most probable first, so a row is usually sorted and its
    first two entries are the answer: each block of rows is checked for any entry larger
    than the one before it in its row (one pass over contiguous memory), and only the rows
    that are not sorted get column-by-column running maxima.
    """
    n, k = topk.shape
    if k == 0:
        return np.full(n, -np.inf), np.full(n, -np.inf)
    rows = max(1, _CHUNK_ELEMENTS // k)
    two = (np.empty(n), np.empty(n), np.empty(rows * k, dtype=bool))
    for start in range(0, n, rows):
        _top_two_block(topk[start : start + rows], start, two)
    return two[0], two[1]


def _top_two_block(
    block: FloatArray, start: int, out: tuple[FloatArray, FloatArray, BoolArray]
) -> None:
    """`_top_two_logprobs` of the rows ``block`` into ``out[0:2][start:...]``; ``out[2]``
    is scratch space of at least ``block.size`` booleans."""
    first, second, scratch = out
    n, k = block.shape
    stop = start + n
    if k < 2:
        first[start:stop] = block[:, 0] if k else -np.inf
        second[start:stop] = -np.inf
        return
    block = np.ascontiguousarray(block)
    first[start:stop] = block[:, 0]
    second[start:stop] = block[:, 1]
    flat = block.ravel()
    rising = np.greater(flat[1:], flat[:-1], out=scratch[: flat.shape[0] - 1])
    rising[k - 1 :: k] = False  # a row's first entry follows the previous row's last
    if rising.any():
        unsorted = np.unique(np.flatnonzero(rising) // k)
        a, b = _running_top_two(block[unsorted])
        first[start + unsorted] = a
        second[start + unsorted] = b


def _running_top_two(block: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Largest and second-largest entry of each row, by running maxima over the columns."""
    a = np.full(block.shape[0], -np.inf)
    b = np.full(block.shape[0], -np.inf)
    t = np.empty(block.shape[0])
    for j in range(block.shape[1]):
        col = block[:, j]
        np.minimum(a, col, out=t)
        np.maximum(b, t, out=b)
        np.maximum(a, col, out=a)
    return a, b
