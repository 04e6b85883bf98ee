"""`SliceStats`: per-response contributions that merge exactly, in any grouping and order."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.aggregate import FLAT_FIELDS, SHIFT_DIM, SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.intervals import finish
from entropy_sentinel.estimator.slices import group_records

FloatArray = npt.NDArray[np.float64]
Arrays = dict[str, npt.NDArray[Any]]


def _slice(seed: int, n: int) -> Arrays:
    """A slice with every kind of response: plain labels, designed labels (with their
    inclusion probability), unlabelled; seen and unseen; calibration terms; features."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    kind = rng.integers(0, 3, n)  # 0 unlabelled, 1 plain label, 2 designed label
    y = np.where(kind > 0, (rng.uniform(size=n) < p).astype(float), np.nan)
    pi = np.where(kind == 2, rng.uniform(0.05, 1.0, n), np.nan)
    unseen = rng.uniform(size=n) < 0.5
    cal = np.where(unseen, 0.0, p * (1 - p) * rng.uniform(0, 0.3, n))
    w = rng.normal(size=(n, SHIFT_DIM))
    return {"p": p, "y": y, "pi": pi, "unseen": unseen, "cal": cal, "w": w}


def _stats(parts: Arrays, idx: npt.NDArray[np.intp]) -> SliceStats:
    return SliceStats.from_arrays(
        parts["p"][idx],
        parts["y"][idx],
        pi=parts["pi"][idx],
        unseen=parts["unseen"][idx],
        cal=parts["cal"][idx],
        w=parts["w"][idx],
    )


def test_flat_fields_name_every_sum() -> None:
    fields = [f.name for f in dataclasses.fields(SliceStats)]
    assert len(FLAT_FIELDS) == len(fields) - 1 + SHIFT_DIM
    assert [n for n in FLAT_FIELDS if n.startswith("sum_w_")] == [
        f"sum_w_{j}" for j in range(SHIFT_DIM)
    ]
    assert set(FLAT_FIELDS) - {f"sum_w_{j}" for j in range(SHIFT_DIM)} == set(fields) - {"sum_w"}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 80), data=st.data())
def test_the_contributions_of_two_parts_sum_to_the_whole(
    seed: int, n: int, data: st.DataObject
) -> None:
    parts = _slice(seed, n)
    cut = data.draw(st.integers(1, n - 1))
    perm = np.random.default_rng(seed).permutation(n)
    whole = _stats(parts, np.arange(n))
    a, b = _stats(parts, perm[:cut]), _stats(parts, perm[cut:])
    merged = a + b
    assert merged.flat() == pytest.approx(whole.flat(), rel=1e-9, abs=1e-9)
    for name in ("n", "n_labelled", "n_unseen", "n_design"):  # counts: exactly
        assert getattr(merged, name) == getattr(whole, name)
    assert whole.n == n
    assert whole.n_labelled + whole.n_design == int((~np.isnan(parts["y"])).sum())
    assert whole.n_unseen == int(parts["unseen"].sum())
    # and the slice's estimates with them
    a_iv, w_iv = finish(merged, n_reference=500), finish(whole, n_reference=500)
    assert a_iv.estimate == pytest.approx(w_iv.estimate, rel=1e-12)
    assert a_iv.ppi_estimate == pytest.approx(w_iv.ppi_estimate, rel=1e-9, nan_ok=True)
    assert a_iv.shift == pytest.approx(w_iv.shift, rel=1e-9, nan_ok=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60))
def test_contributions_are_the_rows_of_the_flat_sums(seed: int, n: int) -> None:
    parts = _slice(seed, n)
    rows = SliceStats.contributions(
        parts["p"],
        parts["y"],
        pi=parts["pi"],
        unseen=parts["unseen"],
        cal=parts["cal"],
        w=parts["w"],
    )
    assert rows.shape == (n, len(FLAT_FIELDS))
    stats = _stats(parts, np.arange(n))
    assert rows.sum(axis=0) == pytest.approx(stats.flat(), rel=1e-12, abs=1e-12)
    assert SliceStats.from_flat(stats.flat()) == stats  # a round trip, exactly
    col = {name: j for j, name in enumerate(FLAT_FIELDS)}
    # the features of seen responses are left out of the shift sums
    seen = ~parts["unseen"]
    w_cols = [col[f"sum_w_{j}"] for j in range(SHIFT_DIM)]
    assert (rows[seen][:, w_cols] == 0).all()
    assert rows[~seen][:, w_cols] == pytest.approx(parts["w"][~seen])
    # a designed label weighs 1/pi; a plain one counts once
    designed = ~np.isnan(parts["pi"]) & ~np.isnan(parts["y"])
    assert rows[designed, col["dw"]] == pytest.approx(1.0 / parts["pi"][designed])
    assert (rows[designed, col["n_labelled"]] == 0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_records_do_not_depend_on_the_order_of_the_traces(seed: int) -> None:
    """Grouped and finished, with every new field in play, bit for bit."""
    n = 120
    parts = _slice(seed, n)
    parts["p"] = np.round(parts["p"], 2)  # ties in P
    keys = [(str(k),) for k in np.random.default_rng(seed).integers(0, 3, n)]

    def records(order: npt.NDArray[np.intp]) -> object:
        rows = SliceStats.contributions(
            parts["p"][order],
            parts["y"][order],
            pi=parts["pi"][order],
            unseen=parts["unseen"][order],
            cal=parts["cal"][order],
            w=parts["w"][order],
        )
        return group_records(
            [keys[i] for i in order],
            rows,
            parts["p"][order],
            parts["y"][order],
            by=("k",),
            level=0.9,
            finish=lambda s, lv: finish(s, lv, n_reference=300),
        ).records

    first = records(np.arange(n))
    for shuffle in range(3):
        perm = np.random.default_rng([seed, shuffle]).permutation(n)
        assert records(perm) == first


def test_from_flat_clips_drift_and_rounds_counts() -> None:
    flat = SliceStats.from_arrays([0.2, 0.7], [1.0, np.nan]).flat()
    col = {name: j for j, name in enumerate(FLAT_FIELDS)}
    flat[col["sum_pq"]] = -1e-17  # float drift of a sum of differences
    flat[col["n"]] = 2.0000000001
    stats = SliceStats.from_flat(flat)
    assert stats.sum_pq == 0.0 and stats.n == 2 and isinstance(stats.n, int)
    with pytest.raises(ConfigError, match=f"flat statistics need {len(FLAT_FIELDS)} values"):
        SliceStats.from_flat(flat[:-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": [0.5, 1.2]}, r"probabilities p must lie in \[0, 1\]"),
        ({"p": [0.5, np.nan]}, "not be NaN"),
        ({"p": [[0.5]]}, "p must be 1-D"),
        ({"p": [0.5, 0.5], "y": [1.0, 2.0]}, "labels y must be 0, 1 or NaN"),
        ({"p": [0.5, 0.5], "y": [1.0]}, "labels y must have the shape of p"),
        ({"p": [0.5], "y": [1.0], "pi": [0.0]}, r"pi must lie in \(0, 1\]"),
        ({"p": [0.5], "y": [1.0], "pi": [1.5]}, r"pi must lie in \(0, 1\]"),
        ({"p": [0.5], "unseen": [True]}, "unseen responses need their whitened features w"),
        ({"p": [0.5], "unseen": [True], "w": np.zeros((1, 3))}, r"w must have shape \(1, 11\)"),
        ({"p": [0.5], "cal": [0.1, 0.2]}, "cal must have the shape of p"),
    ],
)
def test_bad_contributions_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SliceStats.contributions(**kwargs)  # type: ignore[arg-type]


def test_a_designed_label_with_pi_one_is_a_census_label() -> None:
    """pi = 1: drawn for sure, weight 1 and no design variance (a = (1 - pi) / pi^2 = 0)."""
    stats = SliceStats.from_arrays([0.3, 0.6], [1.0, 0.0], pi=[1.0, 1.0])
    assert (stats.n_design, stats.n_labelled) == (2, 0)
    assert (stats.dw, stats.da, stats.dwy) == (2.0, 0.0, 1.0)
