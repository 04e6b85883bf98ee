"""Assessing intervals and the label loop from a results folder, without refitting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import hypergeom, norm

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.transfer import TransferModel, load_transfer, transfer_magnitude
from entropy_sentinel.evaluation import (
    EvalData,
    load_results,
    resolve,
    run_evaluation,
    training_groups,
)
from entropy_sentinel.evaluation.assess import (
    ScoredTask,
    exact_interval,
    label_curve,
    label_free,
    load_scored,
    transfer_points,
)
from tests.estimator_data import RELATION
from tests.evaluation_data import SENTINEL_LR, corpus_eval_data


@pytest.fixture(scope="module")
def data() -> EvalData:
    return corpus_eval_data()


@pytest.fixture(scope="module")
def results(data: EvalData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assess")
    groups = training_groups(data.domain_names, (1, 2), max_groups=2, seed=0)
    run_evaluation(data, [SENTINEL_LR, *resolve(["atc.max_entropy"])], groups, out, progress=False)
    return out


@pytest.fixture(scope="module")
def tasks(results: Path) -> list[ScoredTask]:
    return load_scored(results, "sentinel-lr")


def test_scored_tasks_are_the_current_ok_entries(results: Path, tasks: list[ScoredTask]) -> None:
    assert len(tasks) == 4
    for task in tasks:
        n = task.rows.shape[0]
        assert task.p.shape == task.p_classifier.shape == task.cal.shape == task.seen.shape == (n,)
        assert task.w.shape == (n, 11) and task.n_reference > 0
    with pytest.raises(ConfigError, match="has no configuration 'paper'"):
        load_scored(results, "paper")
    assert load_scored(results, "atc.max_entropy") == []  # baselines keep no scores
    # a stale entry (another recipe) is not assessed
    entry_path = sorted((results / "cache" / "sentinel-lr").glob("*.json"))[0]
    entry = json.loads(entry_path.read_text())
    entry_path.write_text(json.dumps({**entry, "key": "old"}))
    try:
        assert len(load_scored(results, "sentinel-lr")) == 3
    finally:
        entry_path.write_text(json.dumps(entry))


def _runner_rows(results: Path) -> pd.DataFrame:
    domains = load_results(results).domains
    return domains[domains["configuration"] == "sentinel-lr"].set_index(["group", "domain"])


def test_label_free_with_the_shipped_relation_is_what_the_runner_recorded(
    data: EvalData, results: Path, tasks: list[ScoredTask]
) -> None:
    shipped = load_transfer("sentinel")
    frame = label_free(tasks, data, lambda name: shipped)
    rows = _runner_rows(results)
    assert len(frame) == 4 * len(data.domain_names)
    for _, r in frame.iterrows():
        row = rows.loc[(r["group"], r["domain"])]
        assert r["role"] == row["role"] and r["n"] == row["n"]
        for column in ("estimate", "lower", "upper", "shift"):
            assert r[column] == pytest.approx(row[column], nan_ok=True), column
        assert r["truth"] == pytest.approx(row["true_accuracy"])
    assert (frame["covered"] == ((frame["lower"] <= frame["truth"]) &
                                 (frame["truth"] <= frame["upper"]))).all()  # fmt: skip
    assert (frame["width"] == frame["upper"] - frame["lower"]).all()


def test_label_free_under_another_relation_per_domain(
    data: EvalData, tasks: list[ScoredTask]
) -> None:
    """The relation is chosen per domain (e.g. one fitted without it); none: no transfer
    term; the sampling-only width is the estimator's own Poisson-binomial interval."""
    chosen: list[str] = []

    def relation_for(name: str) -> TransferModel | None:
        chosen.append(name)
        return None if name == data.domain_names[0] else RELATION

    frame = label_free(tasks, data, relation_for, level=0.9)
    assert set(chosen) == set(data.domain_names)
    z = float(norm.ppf(0.95))
    for _, r in frame.iterrows():
        task = next(t for t in tasks if "+".join(t.group) == r["group"])
        mask = task.part(data.domains, r["domain"])
        p = task.p[mask]
        assert r["sampling_width"] == pytest.approx(2 * z * math.sqrt(np.sum(p * (1 - p))) / r["n"])
        if r["role"] == "heldout":
            h = 0.0 if r["domain"] == data.domain_names[0] else RELATION.half_width(r["shift"], 0.9)
            s = math.sqrt(np.sum(p * (1 - p))) / r["n"]
            half = math.hypot(z * s, h) + 0.5 / r["n"]
            assert r["upper"] == pytest.approx(min(1.0, r["estimate"] + half))
        else:
            assert math.isnan(r["shift"])


def test_transfer_points_are_the_held_out_domains(
    data: EvalData, results: Path, tasks: list[ScoredTask]
) -> None:
    points = transfer_points(tasks, data, prefix="smollm2:")
    rows = _runner_rows(results)
    n_heldout = sum(len(data.domain_names) - len(t.group) for t in tasks)
    assert len(points) == n_heldout
    assert points["domain"].str.startswith("smollm2:").all()
    for _, r in points.iterrows():
        row = rows.loc[(r["group"], r["domain"].removeprefix("smollm2:"))]
        assert row["role"] == "heldout"
        assert r["estimate"] == pytest.approx(row["estimate"]) and r["n"] == row["n"]
        assert r["shift"] == pytest.approx(row["shift"])
        assert r["error"] == pytest.approx(row["estimate"] - row["true_accuracy"])
    np.testing.assert_allclose(
        points["magnitude"], transfer_magnitude(points["error"], points["sampling_sd"])
    )
    assert (points["magnitude"] >= 0).all() and (points["magnitude"] <= points["error"].abs()).all()


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), data=st.data(), level=st.sampled_from([0.8, 0.9, 0.95]))
def test_exact_interval_holds_the_counts_the_sample_does_not_reject(
    n: int, data: st.DataObject, level: float
) -> None:
    m = data.draw(st.integers(1, n))
    x = data.draw(st.integers(0, m))
    lo, hi = exact_interval(x, m, n, level)
    alpha = (1 - level) / 2
    ks = np.arange(n + 1)
    kept = [
        k for k in ks if hypergeom.sf(x - 1, n, k, m) > alpha and hypergeom.cdf(x, n, k, m) > alpha
    ]
    assert (lo, hi) == (min(kept) / n, max(kept) / n)
    assert 0.0 <= lo <= hi <= 1.0
    # the sample's own accuracy is never rejected, up to the population's grain: with
    # n = 21, m = 20, x = 1 the interval is [0, 1/21] although x/m = 0.05 (no count K
    # of 21 equals it, and K = 2 is rejected at level 0.8)
    assert lo - 1 / n < x / m < hi + 1 / n
    if m == n:  # a census: the accuracy itself
        assert lo == hi == x / n


@pytest.mark.parametrize("level", [0.8, 0.95])
def test_exact_interval_covers_at_least_the_nominal_level(level: float) -> None:
    """Simple random samples of m out of n, many populations: the interval holds the
    population's accuracy at least ``level`` of the time (exact, so conservative)."""
    rng = np.random.default_rng(0)
    n, m = 40, 10
    intervals = [exact_interval(x, m, n, level) for x in range(m + 1)]
    for correct in (0, 3, 12, 20, 33, 40):
        population = np.r_[np.ones(correct), np.zeros(n - correct)]
        hits = 0
        for _ in range(2000):
            lo, hi = intervals[int(population[rng.choice(n, m, replace=False)].sum())]
            hits += lo <= correct / n <= hi
        assert hits / 2000 >= level - 0.01, (correct, hits)


def test_label_curve_rows(data: EvalData, tasks: list[ScoredTask]) -> None:
    budgets = (5, 10, 200)  # 200 is beyond every part: skipped
    frame = label_curve(tasks, data, lambda name: RELATION, budgets=budgets, repetitions=3)
    parts = [
        (t, name) for t in tasks for name in data.domain_names if t.part(data.domains, name).any()
    ]
    assert len(frame) == len(parts) * 2 * 3 * 3  # parts x budgets below n x reps x methods
    assert (frame["m"] < frame["n"]).all() and set(frame["m"]) == {5, 10}
    counts = frame.groupby(["group", "domain", "m", "method"]).size()
    assert (counts == 3).all()
    assert set(frame["method"]) == {"labels", "ppi", "ours"}
    assert (
        (
            (frame[["estimate", "lower", "upper"]] >= 0)
            & (frame[["estimate", "lower", "upper"]] <= 1)
        )
        .all()
        .all()
    )
    assert ((frame["lower"] <= frame["estimate"] + 1e-12) &
            (frame["estimate"] <= frame["upper"] + 1e-12)).all()  # fmt: skip
    assert (frame["abs_error"] == (frame["estimate"] - frame["truth"]).abs()).all()
    ours = frame[frame["method"] == "ours"]
    assert (
        ours["n_drawn"].notna().all()
        and frame.loc[frame["method"] != "ours", "n_drawn"].isna().all()
    )
    labels = frame[frame["method"] == "labels"]
    assert np.allclose(labels["estimate"] * labels["m"], np.round(labels["estimate"] * labels["m"]))
    # the same seed, the same curve
    again = label_curve(tasks, data, lambda name: RELATION, budgets=budgets, repetitions=3)
    pd.testing.assert_frame_equal(frame, again)


def test_label_curve_methods_by_hand(data: EvalData, tasks: list[ScoredTask]) -> None:
    """One row of each method, recomputed: labels alone and plain PPI on the same simple
    random sample; ours on its own Poisson draw."""
    task = tasks[0]
    frame = label_curve(tasks[:1], data, lambda name: None, budgets=(10,), repetitions=1, seed=7)
    name = data.domain_names[0]
    rows = frame[frame["domain"] == name].set_index("method")
    mask = task.part(data.domains, name)
    idx = np.flatnonzero(mask)
    y = data.labels[task.rows][idx]
    d_index = [n for n in data.domain_names if task.part(data.domains, n).any()].index(name)
    rng = np.random.default_rng([7, 0, d_index, 10, 0])
    sample = rng.choice(len(idx), 10, replace=False)
    x = int(y[sample].sum())
    assert rows.loc["labels", "estimate"] == x / 10
    assert (rows.loc["labels", "lower"], rows.loc["labels", "upper"]) == exact_interval(
        x, 10, len(idx)
    )
    plain = np.full(len(idx), np.nan)
    plain[sample] = y[sample]
    iv = SliceStats.from_arrays(task.p[idx], plain).ppi_interval()
    assert rows.loc["ppi", "estimate"] == pytest.approx(iv.estimate)
    assert (rows.loc["ppi", "lower"], rows.loc["ppi", "upper"]) == pytest.approx(
        (iv.lower, iv.upper)
    )
    assert rows.loc["ours", "truth"] == pytest.approx(y.mean())
