"""The runner on a small real corpus: every task recorded with the interval's parts, preset
scores kept, cached and resumed; failures kept; parallel runs give the same numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator import CorrectnessEstimator, ScoreBaseline, preset
from entropy_sentinel.evaluation import (
    Configuration,
    EvalData,
    Group,
    Split,
    domain_split,
    load_results,
    resolve,
    run_evaluation,
    training_groups,
)
from entropy_sentinel.evaluation.runner import cache_path
from tests.evaluation_data import SENTINEL_LR, corpus_eval_data

CONFIGS = [SENTINEL_LR, *resolve(["lr.profile10.isotonic.bal", "atc.max_entropy", "ac.lntp"])]
PARTS = ("lower", "upper", "shift", "sampling_sd", "calibration_sd", "transfer_half_width",
         "unseen_fraction")  # fmt: skip


@pytest.fixture(scope="module")
def data() -> EvalData:
    return corpus_eval_data()


@pytest.fixture(scope="module")
def groups(data: EvalData) -> list[Group]:
    return training_groups(data.domain_names, (1, 2), max_groups=2, seed=0)


@pytest.fixture(scope="module")
def first_run(
    data: EvalData, groups: list[Group], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("results")
    summary = run_evaluation(data, CONFIGS, groups, out, progress=False, command=["test"])
    assert summary.n_tasks == summary.n_computed == len(CONFIGS) * len(groups) == 16
    assert summary.n_failed == 0 and summary.n_cached == 0
    return out


def test_every_configuration_and_group_has_a_row(
    data: EvalData, groups: list[Group], first_run: Path
) -> None:
    res = load_results(first_run)
    assert len(res.groups) == 16 and set(res.groups["status"]) == {"ok"}
    assert res.configurations() == [c.name for c in CONFIGS]
    # one row per evaluated domain, every domain of the corpus for every task
    assert len(res.domains) == 16 * len(data.domain_names)
    assert res.domains[list(PARTS)].columns.tolist() == list(PARTS)
    pair = next(g for g in groups if g.k == 2)
    rows = res.domains[res.domains["group"] == pair.key]
    roles = rows.groupby("domain")["role"].first().to_dict()
    assert roles == {d: "in" if d in pair.domains else "heldout" for d in data.domain_names}
    assert res.manifest["runs"][0]["command"] == ["test"]
    kinds = res.groups.groupby("configuration")[["kind", "method"]].first()
    assert kinds.to_dict("index")["sentinel-lr"] == {"kind": "preset", "method": "sentinel"}
    assert kinds.to_dict("index")["atc.max_entropy"] == {"kind": "baseline", "method": "atc"}


def test_the_interval_parts_of_the_preset(data: EvalData, first_run: Path) -> None:
    """Training domains (their 20% parts) are calibrated; the others carry the transfer
    term and a shift score; baselines and bare classifiers carry neither."""
    res = load_results(first_run).domains
    preset_rows = res[res["configuration"] == "sentinel-lr"]
    seen = preset_rows[preset_rows["role"] == "in"]
    unseen = preset_rows[preset_rows["role"] == "heldout"]
    assert (seen["unseen_fraction"] == 0).all() and (seen["calibration_sd"] > 0).all()
    assert (seen["transfer_half_width"] == 0).all() and seen["shift"].isna().all()
    assert (unseen["unseen_fraction"] == 1).all() and (unseen["calibration_sd"] == 0).all()
    assert unseen["shift"].between(0.5, 1.0).all() and (unseen["transfer_half_width"] > 0).all()
    others = res[res["configuration"] != "sentinel-lr"]
    assert (others["transfer_half_width"] == 0).all() and (others["unseen_fraction"] == 0).all()
    assert (res["lower"] <= res["estimate"]).all() and (res["estimate"] <= res["upper"]).all()


def test_numbers_match_a_direct_computation(
    data: EvalData, groups: list[Group], first_run: Path
) -> None:
    pair = next(g for g in groups if g.k == 2)
    train = domain_split(data.domains, seed=0) & np.isin(data.domains, pair.domains)
    reference, evaluated = data.part(train), data.part(~train)
    direct: dict[str, Any] = {
        "sentinel-lr": preset("sentinel", family="lr", random_state=0),
        "lr.profile10.isotonic.bal": CorrectnessEstimator(
            family="lr", features="profile10", random_state=0
        ),
        "atc.max_entropy": ScoreBaseline("atc", "max_entropy"),
        "ac.lntp": ScoreBaseline("ac", "lntp"),
    }
    res = load_results(first_run)
    rows = res.domains[res.domains["group"] == pair.key].set_index(["configuration", "domain"])
    for name, estimator in direct.items():
        estimator.fit_traces(reference)
        for r in estimator.estimate(evaluated, by="domain"):
            row = rows.loc[(name, r.key[0])]
            assert row["n"] == r.n == int(((data.domains == r.key[0]) & ~train).sum())
            for column in ("estimate", *PARTS):
                assert row[column] == pytest.approx(getattr(r, column), nan_ok=True), column
            assert row["true_accuracy"] == pytest.approx(r.true_accuracy)
            assert row["abs_error"] == pytest.approx(abs(r.estimate - r.true_accuracy))
    summary = res.groups[
        (res.groups["configuration"] == "atc.max_entropy") & (res.groups["group"] == pair.key)
    ]
    atc_rows = rows.loc["atc.max_entropy"]
    assert summary["aee"].item() == pytest.approx(atc_rows["abs_error"].mean())
    assert summary["aee_heldout"].item() == pytest.approx(
        atc_rows.loc[atc_rows["role"] == "heldout", "abs_error"].mean()
    )
    # the preset runs with its classifier's family overridden: the table says which
    families = res.groups.groupby("configuration")["family"].first().to_dict()
    assert families["sentinel-lr"] == "lr" and families["lr.profile10.isotonic.bal"] == "lr"


def test_preset_scores_are_kept_for_assessment(
    data: EvalData, groups: list[Group], first_run: Path
) -> None:
    pair = next(g for g in groups if g.k == 2)
    for config in CONFIGS:
        npz = cache_path(first_run, config, pair).with_suffix(".npz")
        assert npz.exists() == (config.kind == "preset"), config.name
    train = domain_split(data.domains, seed=0) & np.isin(data.domains, pair.domains)
    estimator = preset("sentinel", family="lr", random_state=0).fit_traces(data.part(train))
    scores = estimator.score(data.part(~train))
    assert estimator.shift_ is not None
    with np.load(cache_path(first_run, SENTINEL_LR, pair).with_suffix(".npz")) as z:
        np.testing.assert_array_equal(z["rows"], np.flatnonzero(~train))
        for name in ("p", "p_classifier", "seen", "cal", "w"):
            np.testing.assert_allclose(z[name], getattr(scores, name), rtol=1e-12, err_msg=name)
        assert int(z["n_reference"]) == estimator.shift_.n_reference_


def test_a_second_run_resumes_from_the_cache(
    data: EvalData, groups: list[Group], first_run: Path
) -> None:
    again = run_evaluation(data, CONFIGS, groups, first_run, progress=False)
    assert (again.n_computed, again.n_cached) == (0, 16)
    # An interrupted run leaves some tasks missing: only those are computed.
    lost = cache_path(first_run, CONFIGS[0], groups[0])
    lost.unlink()
    resumed = run_evaluation(data, CONFIGS, groups, first_run, progress=False)
    assert (resumed.n_computed, resumed.n_cached) == (1, 15)
    assert lost.exists()
    assert len(json.loads((first_run / "run.json").read_text())["runs"]) == 3


def test_a_failing_configuration_is_an_explicit_row(data: EvalData, tmp_path: Path) -> None:
    broken = Configuration("broken", "preset", {"preset": "sentinel", "family": "svm"})
    groups = training_groups(data.domain_names, (1,))
    summary = run_evaluation(data, [broken, CONFIGS[2]], groups, tmp_path, progress=False)
    assert summary.n_failed == 4
    res = load_results(tmp_path)
    failed = res.groups[res.groups["status"] == "failed"]
    assert len(failed) == 4 and set(failed["configuration"]) == {"broken"}
    assert failed["error"].str.startswith("ConfigError: classifier family 'svm' is unknown").all()
    assert failed["aee"].isna().all()
    assert not (res.domains["configuration"] == "broken").any()
    # cached like any result, recomputed only on request
    assert run_evaluation(data, [broken], groups, tmp_path, progress=False).n_computed == 0
    retried = run_evaluation(data, [broken], groups, tmp_path, progress=False, retry_failed=True)
    assert (retried.n_computed, retried.n_failed) == (4, 4)


def test_a_results_folder_belongs_to_one_corpus_and_split(data: EvalData, first_run: Path) -> None:
    other = corpus_eval_data(n_per_domain=40, seed=1)
    with pytest.raises(ConfigError, match="another corpus or split"):
        run_evaluation(other, CONFIGS, [], first_run, progress=False)
    with pytest.raises(ConfigError, match="another corpus or split"):
        run_evaluation(data, CONFIGS, [], first_run, split=Split(seed=1), progress=False)


def test_bad_runs_are_clear_errors(data: EvalData, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"configuration names repeat: \['atc.max_entropy'\]"):
        run_evaluation(data, [CONFIGS[2], CONFIGS[2]], [], tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"groups name domains \['gsm8k'\]"):
        run_evaluation(data, CONFIGS[2:3], [Group.of(["gsm8k"])], tmp_path, progress=False)


def test_a_changed_recipe_is_recomputed_and_old_entries_are_ignored(
    data: EvalData, tmp_path: Path
) -> None:
    groups = training_groups(data.domain_names, (1,))
    run_evaluation(data, CONFIGS[2:3], groups, tmp_path, progress=False)
    entry = json.loads(cache_path(tmp_path, CONFIGS[2], groups[0]).read_text())
    entry["key"] = "something-else"
    cache_path(tmp_path, CONFIGS[2], groups[0]).write_text(json.dumps(entry))
    res = load_results(tmp_path)
    assert res.n_stale == 1 and len(res.groups) == 3
    assert run_evaluation(data, CONFIGS[2:3], groups, tmp_path, progress=False).n_computed == 1


@pytest.mark.slow  # starts worker processes
def test_parallel_runs_give_the_same_numbers(data: EvalData, tmp_path: Path) -> None:
    groups = training_groups(data.domain_names, (1,), max_groups=2, seed=0)
    configs = [SENTINEL_LR, CONFIGS[2]]
    run_evaluation(data, configs, groups, tmp_path / "a", progress=False)
    run_evaluation(data, configs, groups, tmp_path / "b", jobs=2, progress=False)
    a = load_results(tmp_path / "a").domains
    b = load_results(tmp_path / "b").domains
    cols = ["configuration", "group", "domain", "estimate", "true_accuracy", "auroc", *PARTS]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not math.isnan(a["estimate"].iloc[0])


def test_held_out_values_of_another_dimension_are_unseen(data: EvalData, tmp_path: Path) -> None:
    """When the protocol's domains are the values of a dimension other than the one
    the traces call ``domain`` (Phi-3.5 cut by response length, all of it GSM8K), a
    held-out value is unseen: the preset calibrates per value of ``by``, so the held-out
    slices carry the transfer term instead of borrowing the one domain's calibration."""
    from dataclasses import replace

    batch = replace(
        data.batch, slices=tuple({"domain": "one", "part": s["domain"]} for s in data.batch.slices)
    )
    parts = EvalData.from_batch(batch, by="part", name="parts")
    groups = training_groups(parts.domain_names, (1,), max_groups=1, seed=0)
    run_evaluation(parts, [SENTINEL_LR], groups, tmp_path, progress=False)
    rows = load_results(tmp_path).domains
    held = rows[rows["role"] == "heldout"]
    assert len(held) == 3 and (held["unseen_fraction"] == 1).all()
    assert (held["transfer_half_width"] > 0).all()
    assert (rows[rows["role"] == "in"]["unseen_fraction"] == 0).all()
