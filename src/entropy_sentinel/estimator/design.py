"""Which responses to label: a sampling design with known inclusion probabilities.

Labels correct an estimate without bias only when the way they were chosen is known. A
design here draws, within each slice, each response independently with its inclusion
probability ``pi_i`` (Poisson sampling); every label keeps its ``pi_i``, and the
label-corrected estimate weighs it by ``1 / pi_i`` (`entropy_sentinel.estimator.
intervals`). Labels that come back without a design count as a simple random sample.

**Active selection** (Zrnic and Candes 2024, "Active statistical inference"): the
variance of the corrected estimate is smallest when ``pi_i`` grows with the expected
squared residual, which for a calibrated P is ``P_i (1 - P_i)``; so ``pi_i`` is
proportional to ``sqrt(P_i (1 - P_i))``, mixed half and half with uniform sampling so
that no response is nearly unreachable (which would make its weight, and the estimate's
variance, explode when it is drawn). Probabilities above 1 are capped and their excess
spread over the others.

**Budget across slices**: `allocate` shares a labelling budget out so that the slices
with the widest label-free intervals (the ones labels tell most about) get the most,
every slice at least ``minimum`` where it has that many responses; then each slice's
expected sample size is its allocation.

>>> p = np.array([0.02, 0.5, 0.5, 0.9, 0.1, 0.3])
>>> pi = inclusion_probabilities(p, 3)
>>> round(float(pi.sum()), 6), bool(pi[1] > pi[0])
(3.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.errors import ConfigError

__all__ = ["MIX", "LabelDesign", "allocate", "draw", "inclusion_probabilities", "plan"]

MIX = 0.5
"""Weight of uniform sampling in the active design."""


def inclusion_probabilities(p: npt.ArrayLike, size: float, *, mix: float = MIX) -> FloatArray:
    """Per response, its inclusion probability in (0, 1] for an expected sample of ``size``.

    Args:
        p: float ``(n,)`` estimated P(correct) of the slice's responses (unlabelled ones).
        size: expected number of labels, ``0 < size <= n``.
        mix: weight of uniform sampling (1: uniform, 0: fully active).
    """
    pa = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    n = pa.shape[0]
    if not 0.0 <= mix <= 1.0:
        raise ConfigError(f"mix={mix!r} must lie in [0, 1]")
    if n == 0 or size <= 0:
        return np.zeros(n)
    if size >= n:
        return np.ones(n)
    spread = np.sqrt(pa * (1.0 - pa))
    mean = float(spread.mean())
    score = mix + (1.0 - mix) * (spread / mean if mean > 0 else np.ones(n))
    pi = np.zeros(n)
    free = np.ones(n, dtype=bool)
    left = float(size)
    for _ in range(n):  # cap at 1 and spread the excess over the rest (at most n rounds)
        pi[free] = left * score[free] / score[free].sum()
        over = free & (pi >= 1.0)
        if not over.any():
            break
        pi[over] = 1.0
        free &= ~over
        left = size - float(pi[~free].sum())
    return pi


def draw(pi: npt.ArrayLike, rng: np.random.Generator) -> BoolArray:
    """One Poisson sample: each response independently with its probability."""
    pa = np.asarray(pi, dtype=np.float64)
    return np.asarray(rng.random(pa.shape[0]) < pa, dtype=bool)


def allocate(
    budget: int,
    sizes: Sequence[int],
    half_widths: Sequence[float],
    *,
    minimum: int = 5,
) -> list[int]:
    """Labels per slice: at least ``minimum`` (or all of a smaller slice), the rest in
    proportion to each slice's label-free interval half-width times the square root of
    its size, never more than a slice has (largest remainders; what a slice cannot take
    goes to the others). With a budget below the minimums, the slices with the highest
    priority (that weight) come first, as a ranking by it lists them.
    """
    if budget < 0:
        raise ConfigError(f"budget={budget!r} must be >= 0")
    n = np.asarray(sizes, dtype=np.int64)
    h = np.nan_to_num(np.asarray(half_widths, dtype=np.float64), nan=1.0)
    if n.shape != h.shape:
        raise ConfigError("sizes and half_widths need one entry per slice")
    out = np.zeros(n.shape[0], dtype=np.int64)
    weight = h * np.sqrt(np.maximum(n, 0))
    left = budget
    for i in np.argsort(-weight, kind="stable"):  # the floor, in the order of the priority
        take = int(min(minimum, n[i], left))
        out[i] = take
        left -= take
    while left > 0:
        room = n - out
        open_ = room > 0
        if not open_.any():
            break
        share = np.where(open_, weight, 0.0)
        if share.sum() <= 0:
            share = open_.astype(np.float64)
        ideal = left * share / share.sum()
        give = np.minimum(np.floor(ideal).astype(np.int64), room)
        rest = left - int(give.sum())
        if rest > 0:  # largest remainders, among slices with room
            frac = np.where(open_ & (give < room), ideal - np.floor(ideal), -1.0)
            for i in np.argsort(-frac, kind="stable")[:rest]:
                if frac[i] >= 0:
                    give[i] += 1
        if give.sum() == 0:
            break
        out += give
        left -= int(give.sum())
    return [int(x) for x in out]


@dataclass(frozen=True, eq=False)
class LabelDesign:
    """Which responses to label: a drawn sample with each response's inclusion probability.

    Attributes:
        ids: every candidate response's id.
        keys: each one's slice key.
        inclusion: its inclusion probability (0 in slices that got no budget).
        chosen: whether it was drawn (label these).
        allocation: expected labels per slice key.
        seed: the seed of the draw.
    """

    ids: tuple[str, ...]
    keys: tuple[tuple[str | None, ...], ...]
    inclusion: FloatArray
    chosen: BoolArray
    allocation: dict[tuple[str | None, ...], int]
    seed: int

    def __len__(self) -> int:
        return int(self.chosen.sum())

    def inclusion_of(self, ids: Sequence[str]) -> FloatArray:
        """The inclusion probability of each of ``ids`` if it was drawn, else NaN: what
        `SentinelEstimator.estimate` takes as ``inclusion`` once the labels are back."""
        where = {i: j for j, i in enumerate(self.ids)}
        out = np.full(len(ids), np.nan)
        for k, i in enumerate(ids):
            j = where.get(i)
            if j is not None and self.chosen[j]:
                out[k] = self.inclusion[j]
        return out


def plan(
    ids: Sequence[str],
    keys: Sequence[tuple[str | None, ...]],
    p: npt.ArrayLike,
    half_widths: dict[tuple[str | None, ...], float],
    budget: int,
    *,
    minimum: int = 5,
    seed: int = 0,
    mix: float = MIX,
) -> LabelDesign:
    """Share ``budget`` out over the slices (`allocate`, by their label-free half-widths),
    then draw each slice's responses by active Poisson sampling (`inclusion_probabilities`
    on their P(correct) ``p``, seeded)."""
    pa = np.asarray(p, dtype=np.float64)
    if len(ids) != pa.shape[0] or len(keys) != pa.shape[0]:
        raise ConfigError("ids, keys and p need one entry per response")
    order = sorted(half_widths, key=lambda k: tuple("" if v is None else v for v in k))
    members = {k: [i for i, key in enumerate(keys) if tuple(key) == k] for k in order}
    counts = allocate(
        budget, [len(members[k]) for k in order], [half_widths[k] for k in order],
        minimum=minimum,
    )  # fmt: skip
    inclusion = np.zeros(pa.shape[0])
    for k, m in zip(order, counts, strict=True):
        idx = np.asarray(members[k], dtype=np.intp)
        if m and idx.size:
            inclusion[idx] = inclusion_probabilities(pa[idx], m, mix=mix)
    rng = np.random.default_rng(seed)
    chosen = draw(inclusion, rng)
    return LabelDesign(
        ids=tuple(ids),
        keys=tuple(tuple(k) for k in keys),
        inclusion=inclusion,
        chosen=chosen,
        allocation=dict(zip(order, counts, strict=True)),
        seed=seed,
    )
