"""Summary tables and the report, on real results and on hand-made tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from entropy_sentinel.evaluation import (
    Configuration,
    EvalData,
    load_results,
    named_groups,
    resolve,
    run_evaluation,
    score_baselines,
    training_groups,
)
from entropy_sentinel.evaluation.report import markdown_table, write_report
from entropy_sentinel.evaluation.summary import (
    common_groups,
    extreme_groups,
    side_by_side,
    summary_by_k,
)
from tests.evaluation_data import corpus_eval_data


def _groups() -> pd.DataFrame:
    rows = []
    aee = {"ref": [0.2, 0.3, 0.4, 0.5], "new": [0.1, 0.3, 0.35, 0.6], "bad": [0.9] * 4}
    for name, values in aee.items():
        for i, v in enumerate(values):
            status = "failed" if (name == "bad" and i == 3) else "ok"
            rows.append(
                {
                    "configuration": name,
                    "k": 2,
                    "group": f"g{i}",
                    "status": status,
                    "aee": v if status == "ok" else math.nan,
                    "aee_heldout": v,
                    "spearman": 0.5,
                    "pearson": 0.5,
                    "mean_auroc": 0.7,
                    "mean_brier": 0.2,
                }
            )
    return pd.DataFrame(rows)


def test_side_by_side_uses_only_common_groups_and_pairs_them() -> None:
    g = _groups()
    assert common_groups(g, ["ref", "new", "bad"], 2) == ["g0", "g1", "g2"]
    sbs = side_by_side(g, ["new", "bad"], reference="ref", k=2).set_index("configuration")
    assert (sbs["n_groups"] == 3).all()
    assert sbs.loc["new", "aee"] == pytest.approx(0.3)
    # new vs ref on g0, g1, g2: lower, tie, lower -> (1 + 0.5 + 1) / 3
    assert sbs.loc["new", "win_rate"] == pytest.approx(2.5 / 3)
    assert sbs.loc["new", "median_diff"] == pytest.approx(-0.05)
    assert sbs.loc["ref", "win_rate"] == pytest.approx(0.5)
    assert list(sbs.index) == ["new", "ref", "bad"]  # best AEE first


def test_summary_by_k_counts_failures_and_takes_medians_of_the_rest() -> None:
    s = summary_by_k(_groups()).set_index("configuration")
    assert s.loc["bad", "n_groups"] == 4 and s.loc["bad", "n_failed"] == 1
    assert s.loc["ref", "aee"] == pytest.approx(0.35)
    assert s.loc["ref", "aee_q25"] == pytest.approx(0.275)


def test_extreme_groups_lists_best_then_worst() -> None:
    e = extreme_groups(_groups(), "ref", n=1)
    assert list(e["rank"]) == ["best", "worst"]
    assert list(e["group"]) == ["g0", "g3"]


def test_markdown_table_escapes_and_formats() -> None:
    text = markdown_table(pd.DataFrame({"a": ["x|y", None], "b": [math.nan, 1.23456]}))
    assert text.splitlines()[2] == "| x\\|y | – |"
    assert text.splitlines()[3] == "| – | 1.235 |"


PAPER_LR = Configuration(
    "paper", "preset", {"preset": "paper", "family": "lr"}, "the paper's preset, lr (fast)"
)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, EvalData]:
    """Results on four corpus domains as precomputed entropies, so that ATC on nll_avg
    (which needs logprobs) fails and the report must say so."""
    data = corpus_eval_data(entropies=True)
    out = tmp_path_factory.mktemp("report")
    configs = [  # the paper's not first: the report finds it as its default reference
        *resolve(["lr.profile10.isotonic.bal", "lr.sea.isotonic.bal"]),
        PAPER_LR,
        *score_baselines(["atc"], ["max_entropy", "mean_entropy", "nll_avg"]),
    ]
    named = named_groups(data.domain_accuracy()).values()
    groups = training_groups(data.domain_names, (1, 2), max_groups=2, seed=0, always=named)
    run_evaluation(data, configs, groups, out, progress=False)
    return out, data


@pytest.mark.slow  # fits and draws every configuration
def test_report_on_real_results(real: tuple[Path, EvalData]) -> None:
    out, data = real
    results = load_results(out)
    written = results.save(out)
    assert {p.name for p in written} == {
        "groups.parquet",
        "groups.csv",
        "domains.parquet",
        "domains.csv.gz",
    }
    report = write_report(results, out, notes="## Notes\n\nhand-written")  # default: paper
    text = report.read_text()
    for heading in (
        "## Corpus and protocol",
        "## Median and IQR per k",
        "## Side by side on the same groups",
        "## Classifier families and feature sets",
        "## Named groups and the paper's published medians",
        "## Best and worst training groups",
        "## Failed tasks",
        "## Notes",
    ):
        assert heading in text, heading
    assert "against `paper`" in text and "### `paper`" in text
    # these traces carry no logprobs: ATC on nll_avg failed, and the report says so
    assert "atc.nll_avg" in text.split("## Failed tasks")[1]
    extremes = named_groups(data.domain_accuracy())["Extremes"]
    assert f"* **Extremes**: {' + '.join(extremes.domains)}" in text
    named = text.split("## Named groups and the paper's published medians")[1]
    paper_row = next(ln for ln in named.splitlines() if "| Extremes |" in ln and "| paper |" in ln)
    assert "| 0.081 | 0.952 |" in paper_row  # the paper's numbers beside its configuration
    for fig in (
        "aee_rho_by_k.png",
        "side_by_side_k1.png",
        "side_by_side_k2.png",
        "by_family.png",
        "by_features.png",
        "scatter_extremes.png",
        "scatter_intermediate.png",
    ):
        path = out / "figures" / fig
        assert path.stat().st_size > 5000, fig
        assert f"figures/{fig}" in text
    groups = pd.read_csv(out / "groups.csv")
    n_groups = groups["group"].nunique()
    assert 4 <= n_groups <= 6  # 2 per k, and the named groups if not sampled
    assert groups.shape[0] == 6 * n_groups
    assert set(groups.loc[groups["configuration"] == "paper", "family"]) == {"lr"}


def test_a_reference_that_did_not_run_falls_back_to_the_first(
    real: tuple[Path, EvalData], tmp_path: Path
) -> None:
    results = load_results(real[0])
    text = write_report(results, tmp_path, reference="sentinel").read_text()
    assert "against `lr.profile10.isotonic.bal`" in text and "`sentinel`" not in text
