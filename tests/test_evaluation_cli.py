"""``sentinel evaluate`` and ``sentinel evaluate-report`` on a small real trace file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from entropy_sentinel.cli import app
from tests.evaluation_data import phi35_eval_data

runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(phi35_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real Phi-3.5 traces with length-quartile domains, as a JSONL trace file."""
    data = phi35_eval_data(phi35_path, n=300)
    path = tmp_path_factory.mktemp("corpus") / "phi35-len.jsonl"
    b = data.batch
    with path.open("w") as fh:
        for i in range(len(b)):
            steps = b.token_entropy[b.offsets[i] : b.offsets[i + 1]]
            record = {
                "id": b.ids[i],
                "slice": dict(b.slices[i]),
                "correct": bool(b.labels[i]),
                "token_entropy": steps.tolist(),
            }
            fh.write(json.dumps(record) + "\n")
        fh.write(
            json.dumps({"id": "unlabelled", "slice": {"domain": "len1"}, "token_entropy": [0.1]})
        )
        fh.write("\n")
    return path


def test_evaluate_runs_the_grid_baselines_and_presets(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    args = [
        "evaluate",
        str(corpus),
        "-o",
        str(out),
        "--k",
        "1-2",
        "--families",
        "lr",
        "--features",
        "sea",
        "--baselines",
        "atc,doc",
        "--max-groups",
        "2",
        "--reference",
        "lr.profile10.isotonic.bal",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "1 unlabelled left out" in text
    assert "need logprobs, which these traces lack" in text  # nll_avg & co.
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
    # running again computes nothing new
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 computed" in " ".join(again.output.split())

    rewritten = runner.invoke(app, ["evaluate-report", str(out), "--title", "Phi-3.5 lengths"])
    assert rewritten.exit_code == 0, rewritten.output
    assert (out / "report.md").read_text().startswith("# Phi-3.5 lengths")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--balance", "maybe", "--balance value 'maybe'"),
        ("--families", "svm", "classifier family 'svm' is unknown"),
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
