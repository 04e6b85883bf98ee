"""Synthetic arithmetic domains of graded difficulty, generated from a seed.

A small model's accuracy falls steeply from one-digit addition to multi-digit
multiplication, so these domains give a wide, known spread of per-domain accuracy
without any external data. Items are deterministic: item ``i`` of a domain depends
only on the domain, the seed and ``i`` (generating more items keeps the first ones).
The questions are ours, so they may be stored with the traces.

>>> [item.question for item in generate("synth_add_1d", 2, seed=0)]  # doctest: +SKIP
['What is 3 + 7?', 'What is 8 + 1?']
>>> items = generate("synth_mul_2d", 3, seed=1)
>>> [item.id for item in items]
['synth_mul_2d-0', 'synth_mul_2d-1', 'synth_mul_2d-2']
>>> a, b = map(int, items[0].question.removeprefix("What is ").rstrip("?").split(" * "))
>>> str(a * b) == items[0].answer
True
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.errors import ConfigError

__all__ = ["SYNTHETIC_DOMAINS", "SyntheticDomain", "generate"]


@dataclass(frozen=True)
class SyntheticDomain:
    """One arithmetic domain: operand digit counts and the operation.

    Attributes:
        name: domain name (also the benchmark name and the id prefix).
        op: ``+``, ``-`` or ``*``.
        digits: digits of each operand (an operand with ``d`` digits is drawn
            uniformly from ``[10**(d-1), 10**d - 1]``; one digit means 1..9).
        description: what the domain asks, for docs and READMEs.
        fixed_b: when set, the second operand is always this number (``digits[1]`` is
            then its digit count, for the record).
    """

    name: str
    op: str
    digits: tuple[int, int]
    description: str
    fixed_b: int | None = None


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}

SYNTHETIC_DOMAINS: dict[str, SyntheticDomain] = {
    d.name: d
    for d in (
        SyntheticDomain("synth_add_1d", "+", (1, 1), "one-digit addition"),
        SyntheticDomain("synth_add_10", "+", (2, 2), "two-digit number plus 10", fixed_b=10),
        SyntheticDomain("synth_mul_10", "*", (2, 2), "two-digit number times 10", fixed_b=10),
        SyntheticDomain("synth_sub_1d", "-", (1, 1), "one-digit subtraction (may be negative)"),
        SyntheticDomain("synth_add_2x1", "+", (2, 1), "two-digit plus one-digit addition"),
        SyntheticDomain("synth_add_2d", "+", (2, 2), "two-digit addition"),
        SyntheticDomain("synth_sub_2d", "-", (2, 2), "two-digit subtraction (may be negative)"),
        SyntheticDomain("synth_add_3d", "+", (3, 3), "three-digit addition"),
        SyntheticDomain("synth_mul_1d", "*", (1, 1), "one-digit multiplication"),
        SyntheticDomain("synth_mul_2x1", "*", (2, 1), "two-digit by one-digit multiplication"),
        SyntheticDomain("synth_mul_2d", "*", (2, 2), "two-digit multiplication"),
        SyntheticDomain("synth_mul_3x2", "*", (3, 2), "three-digit by two-digit multiplication"),
    )
}
"""The domains by name, by operation, easier first within each (see the corpus README
for SmolLM2-135M's accuracy on them)."""


def _operand(rng: np.random.Generator, digits: int) -> int:
    low = 1 if digits == 1 else 10 ** (digits - 1)
    return int(rng.integers(low, 10**digits))


def generate(name: str, n: int, *, seed: int = 0) -> list[Item]:
    """``n`` items of the synthetic domain ``name`` (ids ``<name>-<i>``, answer_type number).

    Item ``i`` is drawn from ``numpy.random.default_rng([seed, crc32(name), i])``.
    """
    domain = SYNTHETIC_DOMAINS.get(name)
    if domain is None:
        raise ConfigError(
            f"unknown synthetic domain {name!r}; known: {', '.join(SYNTHETIC_DOMAINS)}"
        )
    if n < 0:
        raise ConfigError(f"number of items {n} must be >= 0")
    key = zlib.crc32(name.encode())
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, key, i])
        a = _operand(rng, domain.digits[0])
        b = _operand(rng, domain.digits[1]) if domain.fixed_b is None else domain.fixed_b
        items.append(
            Item(
                id=f"{name}-{i}",
                benchmark=name,
                question=f"What is {a} {domain.op} {b}?",
                answer=str(_OPS[domain.op](a, b)),
                answer_type="number",
                meta={"a": a, "b": b, "op": domain.op, "seed": seed, "synthetic": True},
            )
        )
    return items
