"""``sentinel fit`` and ``sentinel estimate`` end to end on real traces."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from tests.conftest import SMOLLM2_FIXTURES

runner = CliRunner()


@pytest.fixture(scope="module")
def sliced(phi35_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Phi-3.5 traces with a 'domain' slice (answer length band), split in two files:
    the first 700 labelled (training), the rest with a third of their labels removed."""
    folder = tmp_path_factory.mktemp("cli")
    train, test = folder / "train.jsonl", folder / "test.jsonl"
    with gzip.open(phi35_path, "rt") as src, train.open("w") as ftr, test.open("w") as fte:
        for i, line in enumerate(src):
            rec = json.loads(line)
            n = rec["n_tokens"]
            band = "short" if n < 150 else "medium" if n < 250 else "long"
            out = {
                "id": rec["id"],
                "slice": {"domain": band},
                "token_entropy": rec["token_entropy"],
            }
            if i < 700:
                ftr.write(json.dumps({**out, "correct": rec["correct"]}) + "\n")
            else:
                if i % 3:
                    out["correct"] = rec["correct"]
                fte.write(json.dumps(out) + "\n")
        fte.write('{"id": "broken", "token_entropy": []}\n')  # rejected, and reported
    return train, test


@pytest.fixture(scope="module")
def model(sliced: tuple[Path, Path]) -> Path:
    train, _ = sliced
    out = train.parent / "models" / "lr.skops"
    result = runner.invoke(
        app, ["fit", str(train), "-o", str(out), "--family", "lr", "--quiet", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    # the default preset (auto): these traces carry entropies only, so no nll_avg member
    assert "preset sentinel-entropy (the traces carry precomputed entropies" in result.output
    assert "fitted lr blended with atc:max_entropy on 700 labelled traces" in result.output
    return out


def test_fit_writes_artifact_card_and_diagram(model: Path) -> None:
    card = es.read_card(model)
    assert card["params"] == {
        "family": "lr",
        "calibration": "isotonic",
        "balance": True,
        "cv": 5,
        "blend": ["atc:max_entropy"],
        "random_state": 1,
    }
    assert card["features"]["set"] == "profile10"  # the paper's 10-D profile
    assert set(card["training"]["slices"]) == {"short", "medium", "long"}
    assert sum(s["n"] for s in card["training"]["slices"].values()) == 700
    text = (model.parent / "lr.card.md").read_text()
    assert f"| AUROC (classifier scores) | {card['metrics']['cv_auroc']:.4f} |" in text
    assert "| long |" in text and "entropy mode: `topk`" in text
    png = model.parent / "lr.reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_estimate_prints_ranked_slices_and_writes_csv_and_plot(
    model: Path, sliced: tuple[Path, Path]
) -> None:
    _, test = sliced
    csv, png = test.parent / "out" / "est.csv", test.parent / "out" / "est.png"
    result = runner.invoke(
        app,
        ["estimate", str(test), "--model", str(model), "-o", str(csv), "--plot", str(png)],
    )
    assert result.exit_code == 0, result.output
    assert "rejected 1 records" in result.output
    frame = pd.read_csv(csv)
    assert frame["domain"].tolist()[0] == "long"  # worst first
    assert frame["estimate"].is_monotonic_increasing
    assert frame["n"].sum() == 619
    assert (frame["n_labelled"] < frame["n"]).all()
    assert frame["error"].isna().all()  # partly labelled: no error, but PPI
    assert frame["ppi_estimate"].notna().all()
    # rows: rank, domain, n, estimate (interval), shift, labels, true, PPI (interval)
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+\d+\s+(\d\.\d{3}) \(", result.output, re.M)
    assert [row[0] for row in rows] == frame["domain"].tolist()  # ranked like the CSV
    assert [float(row[1]) for row in rows] == pytest.approx(frame["estimate"], abs=5e-4)
    assert "PPI (interval)" in result.output
    assert png.stat().st_size > 10_000
    # The numbers are those of the library call.
    batch = es.read_traces(test, errors="collect")
    res = es.estimate_accuracy(batch, es.CorrectnessEstimator.load(model), by="domain")
    assert frame["estimate"].to_numpy() == pytest.approx([r.estimate for r in res])


def test_estimate_one_slice_and_bad_dimension(model: Path, sliced: tuple[Path, Path]) -> None:
    _, test = sliced
    result = runner.invoke(app, ["estimate", str(test), "--model", str(model), "--by", "all"])
    assert result.exit_code == 0, result.output
    assert any(ln.split()[:2] == ["1", "all"] for ln in result.output.splitlines())
    bad = runner.invoke(app, ["estimate", str(test), "--model", str(model), "--by", "topic"])
    assert bad.exit_code != 0
    assert "--by topic: no trace has the slice dimension 'topic'" in str(bad.exception)


def test_estimate_refuses_traces_of_another_kind(model: Path) -> None:
    """The artifact was fitted on full-vocabulary entropies; SmolLM2 traces carry top-20."""
    result = runner.invoke(
        app, ["estimate", str(SMOLLM2_FIXTURES / "traces.jsonl"), "--model", str(model)]
    )
    assert isinstance(result.exception, es.ArtifactMismatchError)
    assert "fitted on traces with precomputed entropies" in str(result.exception)


def test_fit_options_are_checked(sliced: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = sliced
    result = runner.invoke(app, ["fit", str(train), "-o", str(tmp_path / "m"), "--family", "svm"])
    assert isinstance(result.exception, es.ConfigError)
    assert "classifier family 'svm' is unknown" in str(result.exception)


def test_fit_with_sigmoid_and_profile_without_blend(
    sliced: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = sliced
    out = tmp_path / "m10.skops"
    args = ["fit", str(train), "-o", str(out), "--family", "lr", "--calibration", "sigmoid"]
    args += ["--features", "profile", "--no-balance", "--blend", "none", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    est = es.CorrectnessEstimator.load(out)
    assert (est.features, est.calibration, est.balance) == ("profile", "sigmoid", False)
    assert est.blend == ()
    batch = es.read_traces(test, errors="collect")
    assert est.featurize(batch).shape == (len(batch), 11)
    assert np.all((est.predict_traces(batch) > 0) & (est.predict_traces(batch) < 1))


def test_fit_presets_and_blend_options(sliced: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = sliced
    out = tmp_path / "paper.skops"
    result = runner.invoke(app, ["fit", str(train), "-o", str(out), "--preset", "paper"])
    assert result.exit_code == 0, result.output
    est = es.CorrectnessEstimator.load(out)
    assert (est.family, est.features, est.blend) == ("rf", "profile10", ())
    # the sentinel preset needs logprobs for its nll_avg member: a clear error here
    result = runner.invoke(app, ["fit", str(train), "-o", str(out), "--preset", "sentinel"])
    assert isinstance(result.exception, es.ConfigError)
    assert "--preset sentinel-entropy" in str(result.exception)
    for args, message in (
        (["--preset", "best"], "--preset 'best' is unknown"),
        (["--blend", "atc:nope"], "blend member 'atc:nope'"),
    ):
        result = runner.invoke(app, ["fit", str(train), "-o", str(out), *args])
        assert isinstance(result.exception, es.ConfigError), result.output
        assert message in str(result.exception)
