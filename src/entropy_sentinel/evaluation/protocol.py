"""The paper's evaluation protocol: training groups of k domains and seeded 80/20 splits.

docs/definitions.md: for every training group ``S`` of ``k`` domains, an
estimator is trained on 80% of each domain in ``S`` and estimates the accuracy
of every domain: the other 20% of each domain in ``S`` ("in-domain") and every
domain outside ``S`` in full ("held-out").

Choices made here (the spec leaves them open):

* **One split per domain**, drawn once from ``(seed, crc32(domain name))`` and
  shared by every group and every configuration: all configurations see the
  same training rows, so their errors can be compared pair by pair, and a
  domain's 20% part is the same whichever group it belongs to. The split is a
  plain random permutation, not stratified by label: in-domain traffic is a
  random sample of its domain, so its accuracy differs from the training part's
  by sampling noise, and the estimators have to live with that.
* ``round(train_fraction * n)`` rows of a domain are for training (at least 1 and
  at most ``n - 1``, so every domain has an evaluation part).
* **Sampling groups** (``max_groups``): per ``k``, a seeded random order of all
  combinations is cut after ``max_groups``; a larger ``max_groups`` only adds groups.
* **Named groups**: ``Extremes`` is the easiest and the hardest domain (by accuracy
  over the whole corpus), ``Intermediate`` the homogeneous middle pair: of the
  pairs of domains adjacent in the accuracy ranking, the one whose mean accuracy
  is closest to the median domain accuracy (ties: the closer pair, then by name).
  Where the corpus has the paper's domains, the paper's groups are used instead
  (``Extremes`` = GSM8K + OlympiadBench, ``Intermediate`` = MATH + SciBench).

>>> groups = training_groups(["a", "b", "c"], ks=(1, 2))
>>> [g.key for g in groups]
['a', 'b', 'c', 'a+b', 'a+c', 'b+c']
>>> named_groups({"a": 0.9, "b": 0.5, "c": 0.45, "d": 0.1})["Intermediate"].key
'b+c'
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import BoolArray
from entropy_sentinel.errors import ConfigError

__all__ = [
    "PAPER_NAMED_GROUPS",
    "Group",
    "Split",
    "domain_split",
    "named_groups",
    "parse_ks",
    "training_groups",
]


PAPER_NAMED_GROUPS: Mapping[str, tuple[str, str]] = {
    "Extremes": ("gsm8k", "olympiadbench"),
    "Intermediate": ("math", "scibench"),
}
"""The paper's named groups (domain names compared case-insensitively)."""


@dataclass(frozen=True, order=True)
class Group:
    """A training group: the sorted names of its ``k`` domains."""

    domains: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.domains:
            raise ConfigError("a training group needs at least one domain")
        if tuple(sorted(set(self.domains))) != self.domains:
            raise ConfigError(
                f"group domains {self.domains!r} must be distinct and sorted; "
                "build groups with Group.of(...)"
            )

    @classmethod
    def of(cls, domains: Iterable[str]) -> Group:
        """The group of these domains (any order, no repeats)."""
        names = list(domains)
        if len(set(names)) != len(names):
            raise ConfigError(f"group domains {names!r} repeat a domain")
        return cls(tuple(sorted(names)))

    @property
    def k(self) -> int:
        return len(self.domains)

    @property
    def key(self) -> str:
        """The domains joined by ``+`` (unique per group)."""
        return "+".join(self.domains)


@dataclass(frozen=True)
class Split:
    """The split of every domain: the fraction used for training, and its seed."""

    train_fraction: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction < 1.0:
            raise ConfigError(
                f"train_fraction={self.train_fraction} must lie strictly between 0 and 1"
            )

    def to_dict(self) -> dict[str, float | int]:
        return {"train_fraction": self.train_fraction, "seed": self.seed}


def parse_ks(text: str) -> tuple[int, ...]:
    """``"1-4"`` -> ``(1, 2, 3, 4)``; ``"2"`` -> ``(2,)``; ``"1,3"`` -> ``(1, 3)``.

    >>> parse_ks("1-3"), parse_ks("2,4")
    ((1, 2, 3), (2, 4))
    """
    ks: set[int] = set()
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ConfigError(f"k {text!r} is not a list of sizes; write e.g. 1-4, 2 or 1,3")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1 or hi < lo:
            raise ConfigError(f"k range {part!r} must be increasing and start at 1 or more")
        ks.update(range(lo, hi + 1))
    return tuple(sorted(ks))


def training_groups(
    domains: Sequence[str],
    ks: Sequence[int],
    *,
    max_groups: int | None = None,
    seed: int = 0,
    always: Iterable[Group] = (),
) -> list[Group]:
    """Every group of ``k`` domains for each ``k`` in ``ks`` (or a seeded sample).

    Args:
        domains: the domain names (distinct).
        ks: group sizes; each must be at most the number of domains.
        max_groups: at most this many groups per ``k``, the first of a seeded random
            order of all combinations (None: all of them).
        seed: seed of that order.
        always: groups included whatever the sample (e.g. the named groups), when
            their size is in ``ks``.

    Returns:
        groups sorted by ``k``, then by name.
    """
    names = sorted(domains)
    if len(set(names)) != len(names):
        raise ConfigError(f"domain names repeat: {names}")
    for k in ks:
        if not 1 <= k <= len(names):
            raise ConfigError(
                f"k={k} is impossible with {len(names)} domains; use k between 1 and {len(names)}"
            )
    if max_groups is not None and max_groups < 1:
        raise ConfigError(f"max_groups={max_groups} must be at least 1 (or None for all)")
    kept: set[Group] = {g for g in always if g.k in ks}
    for k in sorted(set(ks)):
        combos = [Group(c) for c in itertools.combinations(names, k)]
        if max_groups is not None and max_groups < len(combos):
            order = np.random.default_rng([seed, k]).permutation(len(combos))
            combos = [combos[i] for i in order[:max_groups]]
        kept.update(combos)
    return sorted(kept, key=lambda g: (g.k, g.domains))


def domain_split(
    domains: Sequence[str] | npt.NDArray[np.object_],
    *,
    train_fraction: float = 0.8,
    seed: int = 0,
) -> BoolArray:
    """Per row, whether it is in its domain's training part (see the module docstring).

    Args:
        domains: ``(n,)`` domain name of each row.
        train_fraction: fraction of each domain used for training, in (0, 1).
        seed: the split seed; with the domain name it fixes each domain's split.

    >>> domain_split(["a"] * 5 + ["b"] * 5, seed=0).sum()
    np.int64(8)
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train_fraction={train_fraction} must lie strictly between 0 and 1")
    names = np.asarray(domains, dtype=object)
    mask = np.zeros(names.shape[0], dtype=bool)
    for name in sorted(set(names.tolist())):
        rows = np.flatnonzero(names == name)
        n = rows.shape[0]
        if n < 2:
            raise ConfigError(
                f"domain {name!r} has {n} row; the protocol needs at least 2 per domain "
                "(one to train on, one to evaluate)"
            )
        n_train = min(n - 1, max(1, round(train_fraction * n)))
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        mask[rows[rng.permutation(n)[:n_train]]] = True
    return mask


def named_groups(accuracy: Mapping[str, float]) -> dict[str, Group]:
    """``Extremes`` and ``Intermediate`` for domains with these accuracies.

    The paper's own groups where both of their domains are present, else the rule of
    the module docstring. Fewer than 2 domains give no named groups; with 2 or 3,
    ``Intermediate`` may share domains with ``Extremes``.
    """
    finite = {d: a for d, a in accuracy.items() if math.isfinite(a)}
    lower = {d.lower(): d for d in finite}
    out: dict[str, Group] = {}
    for name, pair in PAPER_NAMED_GROUPS.items():
        if all(p in lower for p in pair):
            out[name] = Group.of(lower[p] for p in pair)
    if len(finite) < 2:
        return out
    ranked = sorted(finite, key=lambda d: (-finite[d], d))
    out.setdefault("Extremes", Group.of((ranked[0], ranked[-1])))
    median = float(np.median(list(finite.values())))
    pairs: list[tuple[str, str]] = list(itertools.pairwise(ranked))

    def badness(pair: tuple[str, str]) -> tuple[float, float, tuple[str, ...]]:
        a, b = finite[pair[0]], finite[pair[1]]
        return (abs((a + b) / 2 - median), abs(a - b), tuple(sorted(pair)))

    middle: tuple[str, str] = min(pairs, key=badness)
    out.setdefault("Intermediate", Group.of(middle))
    return out
