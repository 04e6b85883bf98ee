"""``sentinel evaluate`` and ``sentinel evaluate-report`` on a small real trace file (four
domains of the committed corpus, per-token entropies only)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from entropy_sentinel.cli import app
from tests.evaluation_data import write_entropy_jsonl

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_entropy_jsonl(tmp_path_factory.mktemp("corpus") / "smollm2-4.jsonl")


@pytest.mark.slow
def test_evaluate_runs_the_grid_and_the_baselines(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = [
        "evaluate",
        str(corpus),
        "-o",
        str(out),
        "--k",
        "1-2",
        "--presets",
        "none",  # the presets' forests take minutes; test_evaluation_runner runs one
        "--families",
        "lr",
        "--features",
        "sea",
        "--baselines",
        "atc,doc",
        "--max-groups",
        "2",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "240 labelled responses in 4 domains (1 unlabelled left out" in text
    assert "need logprobs, which these traces lack" in text  # nll_avg & co.
    assert "DoC runs on probability scores only" in text
    groups = pd.read_csv(out / "groups.csv")
    # the grid configuration + ATC on the 3 entropy scores (DoC needs lntp/mtp: none here);
    # k=1: 2 sampled; k=2: 2 sampled plus the 2 named groups (if not sampled).
    assert set(groups["configuration"]) == {
        "lr.sea.isotonic.bal",
        "atc.mean_entropy",
        "atc.max_entropy",
        "atc.sea",
    }
    per_k = groups.groupby("k")["group"].nunique().to_dict()
    assert per_k[1] == 2 and 2 <= per_k[2] <= 4
    assert (groups["status"] == "ok").all()
    report = (out / "report.md").read_text()
    assert "sentinel evaluate" in report and "--max-groups 2" in report
    # the default reference, paper, did not run: the first configuration stands in
    assert "against `lr.sea.isotonic.bal`" in report
    # running again computes nothing new
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 computed" in " ".join(again.output.split())

    rewritten = runner.invoke(
        app,
        [
            "evaluate-report",
            str(out),
            "--title",
            "SmolLM2, four domains",
            "--reference",
            "atc.max_entropy",
        ],
    )
    assert rewritten.exit_code == 0, rewritten.output
    text = (out / "report.md").read_text()
    assert text.startswith("# SmolLM2, four domains") and "against `atc.max_entropy`" in text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--balance", "maybe", "--balance value 'maybe'"),
        ("--families", "svm", "classifier family 'svm' is unknown"),
        ("--presets", "best", "preset 'best' is unknown"),
        ("--k", "0", "k"),
        ("--configs", "nonsense", "configuration 'nonsense' is unknown"),
        ("--by", "customer", "no trace has slice dimension 'customer'"),
    ],
)
def test_bad_options_are_clear_errors(
    corpus: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    result = runner.invoke(app, ["evaluate", str(corpus), "-o", str(tmp_path), option, value])
    assert result.exit_code != 0
    assert message in str(result.exception) or message in " ".join(result.output.split())
