"""Sampling designs: inclusion probabilities of the active design, and budgets across slices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.design import MIX, allocate, draw, inclusion_probabilities

probabilities = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(p=probabilities, data=st.data(), mix=st.floats(0.01, 1.0))
def test_inclusion_probabilities_sum_to_the_size_and_rise_with_uncertainty(
    p: list[float], data: st.DataObject, mix: float
) -> None:
    n = len(p)
    size = data.draw(st.floats(0.01, n))
    pi = inclusion_probabilities(p, size, mix=mix)
    assert pi.shape == (n,)
    if size >= n:
        assert (pi == 1.0).all()
        return
    assert float(pi.sum()) == pytest.approx(size, rel=1e-9)
    assert ((pi > 0.0) & (pi <= 1.0)).all()
    # monotone in p (1 - p): the more uncertain the response, the likelier its label
    spread = np.asarray(p) * (1 - np.asarray(p))
    order = np.argsort(spread, kind="stable")
    assert (np.diff(pi[order]) >= -1e-12).all()
    ties = spread[:, None] == spread[None, :]  # equally uncertain: equally likely
    rows, cols = np.nonzero(ties)
    np.testing.assert_allclose(pi[rows], pi[cols], rtol=1e-12)


def test_the_active_design_by_hand() -> None:
    """pi proportional to MIX + (1 - MIX) sqrt(p (1 - p)) / mean(sqrt(p (1 - p)))."""
    p = np.array([0.05, 0.2, 0.5, 0.5, 0.9, 0.99])
    pi = inclusion_probabilities(p, 2.0)
    spread = np.sqrt(p * (1 - p))
    score = MIX + (1 - MIX) * spread / spread.mean()
    np.testing.assert_allclose(pi, 2.0 * score / score.sum(), rtol=1e-12)
    np.testing.assert_allclose(inclusion_probabilities(p, 2.0, mix=1.0), np.full(6, 2 / 6))
    # all equally certain: uniform, even fully active
    np.testing.assert_allclose(inclusion_probabilities(np.full(5, 0.3), 2.0, mix=0.0), 0.4)


def test_probabilities_above_one_are_capped_and_their_excess_spread() -> None:
    p = np.array([0.5] + [0.001] * 9)
    pi = inclusion_probabilities(p, 3.0, mix=0.0)
    assert pi[0] == 1.0
    np.testing.assert_allclose(pi[1:], 2.0 / 9)  # the rest share what is left, equally
    assert float(pi.sum()) == pytest.approx(3.0)


def test_degenerate_sizes_and_bad_mix() -> None:
    assert (inclusion_probabilities([0.2, 0.4], 0) == 0).all()
    assert (inclusion_probabilities([0.2, 0.4], 5) == 1).all()
    assert inclusion_probabilities([], 3).shape == (0,)
    with pytest.raises(ConfigError, match=r"mix=1\.5 must lie in"):
        inclusion_probabilities([0.2], 0.5, mix=1.5)


def test_draw_includes_each_response_with_its_probability() -> None:
    pi = np.linspace(0.05, 0.95, 10)
    rng = np.random.default_rng(0)
    hits = np.mean([draw(pi, rng) for _ in range(4000)], axis=0)
    np.testing.assert_allclose(hits, pi, atol=0.03)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=12),
    widths=st.data(),
    budget=st.integers(0, 400),
    minimum=st.integers(0, 10),
)
def test_allocate_spends_the_budget_within_the_slices(
    sizes: list[int], widths: st.DataObject, budget: int, minimum: int
) -> None:
    half = widths.draw(
        st.lists(
            st.one_of(st.floats(0.0, 0.5), st.just(float("nan"))),
            min_size=len(sizes),
            max_size=len(sizes),
        )
    )
    out = allocate(budget, sizes, half, minimum=minimum)
    assert len(out) == len(sizes) and all(isinstance(x, int) for x in out)
    assert all(0 <= x <= n for x, n in zip(out, sizes))  # never more than a slice has
    assert sum(out) == min(budget, sum(sizes))  # all of it, when the slices have room
    floors = [min(minimum, n) for n in sizes]
    if budget >= sum(floors):
        assert all(x >= f for x, f in zip(out, floors))  # every slice its minimum


def test_allocate_favours_wide_intervals_and_large_slices() -> None:
    out = allocate(60, [100, 100, 400], [0.05, 0.2, 0.2], minimum=5)
    assert out[0] < out[1] < out[2]
    # a budget below the minimums goes to the widest intervals first
    assert allocate(7, [50, 50, 50], [0.1, 0.3, 0.2], minimum=5) == [0, 5, 2]
    assert allocate(0, [10, 20], [0.1, 0.2]) == [0, 0]


def test_allocate_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="budget=-1 must be >= 0"):
        allocate(-1, [3], [0.1])
    with pytest.raises(ConfigError, match="one entry per slice"):
        allocate(5, [3, 4], [0.1])


def test_a_budget_below_the_minimums_goes_to_the_highest_priorities_first() -> None:
    """The floor follows the priority (half-width times sqrt(size)) that ranks the
    slices, so a small budget never skips a slice ranked above one it serves."""
    sizes, halves = [400, 25, 100, 900], [0.2, 0.5, 0.3, 0.1]
    # priorities 4.0, 2.5, 3.0, 3.0: ranked 1st, 4th, 2nd, 3rd (ties: first listed first)
    assert allocate(12, sizes, halves, minimum=5) == [5, 0, 5, 2]
