"""The runner on real Phi-3.5 traces: every task recorded, cached, resumed; failures kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator import ATC, CorrectnessEstimator
from entropy_sentinel.evaluation import (
    EvalData,
    InputSpec,
    Split,
    domain_split,
    load_results,
    resolve,
    run_evaluation,
    score_baselines,
    training_groups,
)
from entropy_sentinel.evaluation.runner import cache_path
from entropy_sentinel.scores import confidence_of
from tests.evaluation_data import phi35_eval_data

CONFIGS = [
    *resolve(["lr.profile10.isotonic.bal"]),
    *score_baselines(["atc", "ac"], ["max_entropy"]),
]


@pytest.fixture(scope="module")
def data(phi35_path: Path) -> EvalData:
    return phi35_eval_data(phi35_path, n=480)


@pytest.fixture(scope="module")
def first_run(data: EvalData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results")
    groups = training_groups(data.domain_names, (1, 2))
    summary = run_evaluation(data, CONFIGS, groups, out, progress=False, command=["test"])
    assert summary.n_tasks == summary.n_computed == len(CONFIGS) * len(groups) == 30
    assert summary.n_failed == 0
    return out


def test_every_configuration_and_group_has_a_row(data: EvalData, first_run: Path) -> None:
    res = load_results(first_run)
    assert len(res.groups) == 30 and set(res.groups["status"]) == {"ok"}
    assert set(res.groups["configuration"]) == {c.name for c in CONFIGS}
    # one row per evaluated domain: every domain of the corpus for every task
    assert len(res.domains) == 30 * len(data.domain_names)
    two = res.domains[res.domains["group"] == "len1+len2"]
    roles = two.groupby("domain")["role"].first().to_dict()
    assert roles == {"len1": "in", "len2": "in", "len3": "heldout", "len4": "heldout"}
    assert res.manifest["runs"][0]["command"] == ["test"]


def test_numbers_match_a_direct_computation(data: EvalData, first_run: Path) -> None:
    res = load_results(first_run)
    train_part = domain_split(data.domains, seed=0)
    train = train_part & np.isin(data.domains, ["len1", "len2"])
    X = data.matrix(InputSpec("profile10"))
    est = CorrectnessEstimator(family="lr", random_state=0).fit(X[train], data.labels[train])
    conf = confidence_of("max_entropy", data.matrix(InputSpec(scores=("max_entropy",)))[:, 0])
    atc = ATC().fit(conf[train], data.labels[train])
    rows = res.domains[res.domains["group"] == "len1+len2"].set_index(["configuration", "domain"])
    for d in data.domain_names:
        ev = (data.domains == d) & ~train
        assert len(ev) and rows.loc[("lr.profile10.isotonic.bal", d), "n"] == ev.sum()
        assert rows.loc[("lr.profile10.isotonic.bal", d), "estimate"] == pytest.approx(
            est.predict_proba(X[ev])[:, 1].mean()
        )
        assert rows.loc[("atc.max_entropy", d), "estimate"] == pytest.approx(atc.estimate(conf[ev]))
        assert rows.loc[("atc.max_entropy", d), "true_accuracy"] == pytest.approx(
            data.labels[ev].mean()
        )
    summary = res.groups[
        (res.groups["configuration"] == "atc.max_entropy") & (res.groups["group"] == "len1+len2")
    ]
    atc_rows = rows.loc["atc.max_entropy"]
    assert summary["aee"].item() == pytest.approx(atc_rows["abs_error"].mean())
    assert summary["aee_heldout"].item() == pytest.approx(
        atc_rows.loc[atc_rows["role"] == "heldout", "abs_error"].mean()
    )


def test_a_second_run_resumes_from_the_cache(data: EvalData, first_run: Path) -> None:
    groups = training_groups(data.domain_names, (1, 2))
    again = run_evaluation(data, CONFIGS, groups, first_run, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 30)
    # An interrupted run leaves some tasks missing: only those are computed.
    lost = cache_path(first_run, CONFIGS[0], groups[0])
    lost.unlink()
    resumed = run_evaluation(data, CONFIGS, groups, first_run, progress=False)
    assert (resumed.n_computed, resumed.n_cached) == (1, 29)
    assert lost.exists()


def test_a_failing_configuration_is_an_explicit_row(data: EvalData, tmp_path: Path) -> None:
    # Phi-3.5 traces carry entropies only: nll_avg is NaN, so ATC on it must fail, loudly.
    bad = score_baselines(["atc"], ["nll_avg"])
    groups = training_groups(data.domain_names, (1,))
    summary = run_evaluation(data, [*bad, CONFIGS[1]], groups, tmp_path, progress=False)
    assert summary.n_failed == 4
    res = load_results(tmp_path)
    failed = res.groups[res.groups["status"] == "failed"]
    assert len(failed) == 4 and set(failed["configuration"]) == {"atc.nll_avg"}
    assert failed["error"].str.contains("ConfigError: scores.* is not finite").all()
    assert failed["aee"].isna().all()
    # cached like any result, recomputed only on request
    assert run_evaluation(data, bad, groups, tmp_path, progress=False).n_computed == 0
    retried = run_evaluation(data, bad, groups, tmp_path, progress=False, retry_failed=True)
    assert retried.n_computed == 4


def test_a_results_folder_belongs_to_one_corpus_and_split(
    data: EvalData, first_run: Path, phi35_path: Path
) -> None:
    other = phi35_eval_data(phi35_path, n=200, seed=1)
    with pytest.raises(ConfigError, match="another corpus or split"):
        run_evaluation(other, CONFIGS, [], first_run, progress=False)
    with pytest.raises(ConfigError, match="another corpus or split"):
        run_evaluation(data, CONFIGS, [], first_run, split=Split(seed=1), progress=False)


def test_a_changed_recipe_is_recomputed_and_old_entries_are_ignored(
    data: EvalData, tmp_path: Path
) -> None:
    groups = training_groups(data.domain_names, (1,))
    run_evaluation(data, CONFIGS[1:2], groups, tmp_path, progress=False)
    entry = json.loads(cache_path(tmp_path, CONFIGS[1], groups[0]).read_text())
    entry["key"] = "something-else"
    cache_path(tmp_path, CONFIGS[1], groups[0]).write_text(json.dumps(entry))
    res = load_results(tmp_path)
    assert res.n_stale == 1 and len(res.groups) == 3
    assert run_evaluation(data, CONFIGS[1:2], groups, tmp_path, progress=False).n_computed == 1


def test_parallel_runs_give_the_same_numbers(data: EvalData, tmp_path: Path) -> None:
    groups = training_groups(data.domain_names, (1,))
    configs = [*resolve(["blend_rf"]), CONFIGS[1]]
    lr_blend = [
        type(c)(c.name, c.kind, c.inputs, {**c.params, "family": "lr"}, c.description)
        for c in configs[:1]
    ]
    run_evaluation(data, [*lr_blend, CONFIGS[1]], groups, tmp_path / "a", progress=False)
    run_evaluation(data, [*lr_blend, CONFIGS[1]], groups, tmp_path / "b", jobs=2, progress=False)
    a = load_results(tmp_path / "a").domains
    b = load_results(tmp_path / "b").domains
    cols = ["configuration", "group", "domain", "estimate", "true_accuracy", "auroc"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not math.isnan(a["estimate"].iloc[0])
