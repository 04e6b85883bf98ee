"""What the harness compares: configurations by name, their recipes, and the selection
``sentinel evaluate`` makes (`select_configurations`)."""

from __future__ import annotations

import pytest

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator import (
    PRESETS,
    CorrectnessEstimator,
    ScoreBaseline,
    SentinelEstimator,
)
from entropy_sentinel.evaluation import (
    Configuration,
    grid,
    preset_configurations,
    resolve,
    score_baselines,
    select_configurations,
)
from entropy_sentinel.scores import PAPER_SCORES, SCORES

ENTROPY_SCORES = [s for s in PAPER_SCORES if not SCORES[s].needs_logprobs]


def _names(configs: list[Configuration]) -> list[str]:
    return [c.name for c in configs]


def test_default_selection_runs_every_preset_that_fits_the_traces() -> None:
    with_logprobs, notes = select_configurations()
    assert _names(with_logprobs) == list(PRESETS) and notes == []
    entropies, notes = select_configurations(has_logprobs=False)
    assert _names(entropies) == [n for n in PRESETS if n != "sentinel"]
    assert notes == ["preset sentinel needs logprobs (its nll_avg member): left out"]
    chosen, _ = select_configurations(presets=["paper"])
    assert _names(chosen) == ["paper"]
    with pytest.raises(ConfigError, match="preset 'best' is unknown"):
        select_configurations(presets=["best"])


def test_selection_order_grid_baselines_and_names() -> None:
    configs, notes = select_configurations(
        presets=[],
        families=["lr", "rf"],
        features=["sea"],
        calibrations=["isotonic", None],
        balances=[True],
        baselines=["atc", "doc"],
        names=["paper", "atc.max_entropy", "lr.sea.isotonic.bal"],  # the last two: again
    )
    assert _names(configs) == [
        "lr.sea.isotonic.bal",
        "lr.sea.uncal.bal",
        "rf.sea.isotonic.bal",
        "rf.sea.uncal.bal",
        *(f"atc.{s}" for s in PAPER_SCORES),
        "doc.lntp",
        "doc.mtp",
        "paper",
    ]
    assert notes == ["DoC runs on probability scores only (lntp, mtp)"]
    kinds = {c.name: c.kind for c in configs}
    assert (kinds["paper"], kinds["rf.sea.uncal.bal"], kinds["doc.mtp"]) == (
        "preset",
        "classifier",
        "baseline",
    )


def test_scores_that_need_logprobs() -> None:
    configs, notes = select_configurations(presets=[], baselines=["atc"], has_logprobs=False)
    assert _names(configs) == [f"atc.{s}" for s in ENTROPY_SCORES]
    left = sorted(set(PAPER_SCORES) - set(ENTROPY_SCORES))
    assert f"scores {left} need logprobs, which these traces lack: left out" in notes
    with pytest.raises(ConfigError, match=r"scores \['nll_avg'\] need logprobs"):
        select_configurations(
            presets=[], baselines=["atc"], scores=["max_entropy", "nll_avg"], has_logprobs=False
        )
    chosen, _ = select_configurations(presets=[], baselines=["ac"], scores=["sea"])
    assert _names(chosen) == ["ac.sea"]


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no configuration to run"):
        select_configurations(presets=[])


def test_resolve_names_of_every_kind() -> None:
    configs = resolve(["sentinel", "rf.profile@topk_renorm.sigmoid.unbal", "ac.nll_avg"])
    assert [(c.name, c.kind) for c in configs] == [
        ("sentinel", "preset"),
        ("rf.profile@topk_renorm.sigmoid.unbal", "classifier"),
        ("ac.nll_avg", "baseline"),
    ]
    assert configs[1].params == {
        "family": "rf",
        "features": "profile",
        "calibration": "sigmoid",
        "balance": False,
        "mode": "topk_renorm",
    }
    for bad in ("nonsense", "svm.sea.isotonic.bal", "lr.sea.isotonic.maybe", "doc.max_entropy"):
        with pytest.raises(ConfigError, match=f"configuration {bad!r} is unknown"):
            resolve([bad])
    assert score_baselines(["doc"], ["max_entropy"]) == []  # DoC takes probabilities only
    with pytest.raises(ConfigError, match="baseline 'median' is unknown"):
        score_baselines(["median"], ["sea"])
    with pytest.raises(ConfigError, match="score 'h_max' is unknown"):
        score_baselines(["atc"], ["h_max"])
    assert _names(grid(["lr"], ["sea", "profile10"], [None], [True, False])) == [
        "lr.sea.uncal.bal",
        "lr.sea.uncal.unbal",
        "lr.profile10.uncal.bal",
        "lr.profile10.uncal.unbal",
    ]


def test_configurations_build_fresh_estimators() -> None:
    sentinel, paper = preset_configurations(["sentinel", "paper"])
    built = sentinel.build(seed=3)
    assert isinstance(built, SentinelEstimator) and built.classifier is not None
    assert built.classifier.random_state == 3 and built.classifier.family == "auto"
    assert sentinel.build(seed=3) is not built
    assert isinstance(paper.build(0), SentinelEstimator) and paper.method == "paper"
    override = Configuration("fast", "preset", {"preset": "sentinel", "family": "lr"})
    fast = override.build(0)
    assert isinstance(fast, SentinelEstimator) and fast.classifier is not None
    assert fast.classifier.family == "lr"
    (classifier,) = resolve(["hgb.sea@topk_tail.isotonic.bal"])
    clf = classifier.build(5)
    assert isinstance(clf, CorrectnessEstimator)
    assert (clf.family, clf.features, clf.entropy_mode, clf.random_state) == (
        "hgb",
        "sea",
        "topk_tail",
        5,
    )
    assert classifier.method == "classifier" and classifier.classifier_params["family"] == "hgb"
    (baseline,) = resolve(["atc.max_entropy"])
    atc = baseline.build(0)
    assert isinstance(atc, ScoreBaseline) and (atc.method, atc.score) == ("atc", "max_entropy")
    assert baseline.method == "atc" and baseline.classifier_params == {}
    assert sentinel.classifier_params == PRESETS["sentinel"]["classifier"]


def test_recipes_and_their_hashes() -> None:
    (paper,) = preset_configurations(["paper"])
    spec = paper.spec()
    assert spec["kind"] == "preset" and spec["definition"]["classifier"]["family"] == "rf"
    assert spec["method_version"]
    renamed = Configuration("my-paper", "preset", {"preset": "paper"})
    assert renamed.spec_hash() == paper.spec_hash()  # the name is not part of the recipe
    other = Configuration("paper", "preset", {"preset": "paper", "family": "lr"})
    assert other.spec_hash() != paper.spec_hash()
    assert len(paper.spec_hash()) == 16
    for name in ("", "a/b", "a b", "c:d"):
        with pytest.raises(ConfigError, match="must be non-empty and file-name safe"):
            Configuration(name, "baseline")
    with pytest.raises(ConfigError, match="configuration kind 'model' is unknown"):
        Configuration("x", "model")  # type: ignore[arg-type]
