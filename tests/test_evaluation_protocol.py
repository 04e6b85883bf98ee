"""The protocol: training groups, the per-domain split, named groups."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.evaluation import Group, Split, domain_split, named_groups, parse_ks
from entropy_sentinel.evaluation.protocol import training_groups

DOMAINS = [f"d{i:02d}" for i in range(11)]


def test_all_groups_for_each_k_like_the_paper() -> None:
    groups = training_groups(DOMAINS, (1, 2, 3, 4))
    counts = {k: sum(g.k == k for g in groups) for k in (1, 2, 3, 4)}
    assert counts == {k: math.comb(11, k) for k in (1, 2, 3, 4)}  # 11, 55, 165, 330
    assert len(set(groups)) == len(groups) == 561
    assert groups == sorted(groups, key=lambda g: (g.k, g.domains))


@settings(deadline=None)
@given(st.integers(1, 40), st.integers(0, 10))
def test_a_sample_is_seeded_and_nested(m: int, seed: int) -> None:
    small = training_groups(DOMAINS, (2, 3), max_groups=m, seed=seed)
    again = training_groups(DOMAINS, (2, 3), max_groups=m, seed=seed)
    larger = training_groups(DOMAINS, (2, 3), max_groups=m + 5, seed=seed)
    assert small == again
    assert set(small) <= set(larger)
    for k in (2, 3):
        assert sum(g.k == k for g in small) == min(m, math.comb(11, k))


def test_named_groups_are_kept_in_a_sample_when_their_k_is_run() -> None:
    extra = Group.of(["d10", "d00"])
    groups = training_groups(DOMAINS, (2,), max_groups=1, seed=0, always=[extra])
    assert extra in groups and len(groups) <= 2
    assert extra not in training_groups(DOMAINS, (1,), always=[extra])


@pytest.mark.parametrize(
    ("text", "ks"), [("1-4", (1, 2, 3, 4)), ("2", (2,)), ("1,3", (1, 3)), ("3-4,1", (1, 3, 4))]
)
def test_parse_ks(text: str, ks: tuple[int, ...]) -> None:
    assert parse_ks(text) == ks


@pytest.mark.parametrize("text", ["", "0", "4-2", "a", "1-"])
def test_parse_ks_rejects_nonsense(text: str) -> None:
    with pytest.raises(ConfigError, match="k"):
        parse_ks(text)


def test_impossible_k_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="k=5 is impossible with 3 domains"):
        training_groups(["a", "b", "c"], (5,))


def test_group_must_be_sorted_and_distinct() -> None:
    assert Group.of(["b", "a"]).key == "a+b"
    with pytest.raises(ConfigError, match="repeat"):
        Group.of(["a", "a"])
    with pytest.raises(ConfigError, match="sorted"):
        Group(("b", "a"))


@settings(deadline=None)
@given(
    st.dictionaries(st.sampled_from("abcdefg"), st.integers(2, 60), min_size=1),
    st.floats(0.05, 0.95),
    st.integers(0, 5),
)
def test_split_takes_the_fraction_of_every_domain(
    sizes: dict[str, int], fraction: float, seed: int
) -> None:
    domains = np.array([d for d, n in sizes.items() for _ in range(n)], dtype=object)
    mask = domain_split(domains, train_fraction=fraction, seed=seed)
    for d, n in sizes.items():
        got = int(mask[domains == d].sum())
        assert got == min(n - 1, max(1, round(fraction * n)))


def test_a_domains_split_does_not_depend_on_the_others_or_their_order() -> None:
    a = np.array(["x"] * 30 + ["y"] * 20, dtype=object)
    b = np.array(["z"] * 7 + ["x"] * 30, dtype=object)
    assert np.array_equal(domain_split(a)[:30], domain_split(b)[7:])
    assert not np.array_equal(domain_split(a)[:30], domain_split(a, seed=1)[:30])


def test_split_needs_two_rows_per_domain() -> None:
    with pytest.raises(ConfigError, match="domain 'b' has 1 row"):
        domain_split(np.array(["a", "a", "b"], dtype=object))
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        Split(train_fraction=1.0)


def test_named_groups_by_rule() -> None:
    acc = {"easy": 0.9, "m1": 0.52, "m2": 0.50, "m3": 0.30, "hard": 0.05}
    named = named_groups(acc)
    assert named["Extremes"].domains == ("easy", "hard")
    # median 0.50; pairs (m1, m2) mean 0.51 is the closest to it.
    assert named["Intermediate"].domains == ("m1", "m2")


def test_named_groups_prefer_the_papers_domains() -> None:
    acc = {"GSM8K": 0.9, "OlympiadBench": 0.1, "MATH": 0.5, "SciBench": 0.4, "x": 0.0}
    named = named_groups(acc)
    assert named["Extremes"].domains == ("GSM8K", "OlympiadBench")
    assert named["Intermediate"].domains == ("MATH", "SciBench")


def test_named_groups_need_two_domains() -> None:
    assert named_groups({"a": 0.5}) == {}
    pairs = [
        named_groups(dict(zip("ab", p, strict=True))) for p in itertools.permutations((0.1, 0.2))
    ]
    assert all(n["Extremes"].domains == ("a", "b") for n in pairs)
