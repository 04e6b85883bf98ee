"""``sentinel fit`` and ``sentinel estimate`` end to end on real traces: the committed
SmolLM2 corpus written as trace files of per-token entropies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from entropy_sentinel.estimator import load_estimator
from tests.conftest import SMOLLM2_FIXTURES
from tests.estimator_data import entropy_records, halves

runner = CliRunner()
WIDE = {"COLUMNS": "200"}  # the table in full, whatever the terminal


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The corpus halves as JSONL: the training half labelled, the other half with a third
    of its labels removed and a broken record at the end."""
    folder = tmp_path_factory.mktemp("cli")
    train, test = folder / "train.jsonl", folder / "test.jsonl"
    first, second = halves()
    train.write_text("".join(json.dumps(r) + "\n" for r in entropy_records(first)))
    with test.open("w") as fh:
        for i, record in enumerate(entropy_records(second)):
            if i % 3 == 0:
                del record["correct"]
            fh.write(json.dumps(record) + "\n")
        fh.write('{"id": "broken", "token_entropy": []}\n')  # rejected, and reported
    return train, test


@pytest.fixture(scope="module")
def model(files: tuple[Path, Path]) -> Path:
    train, _ = files
    out = train.parent / "models" / "lr.skops"
    result = runner.invoke(
        app, ["fit", str(train), "-o", str(out), "--family", "lr", "--quiet", "--seed", "1"]
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    # the default preset (auto): these traces carry entropies only, so no nll_avg member
    assert "preset sentinel-entropy (the traces carry precomputed entropies" in text
    n = len(halves()[0])
    assert f"fitted lr blended with atc:max_entropy on {n} labelled traces" in text
    assert "13 domain value(s) calibrated" in text
    return out


def test_fit_writes_artifact_card_and_diagram(model: Path) -> None:
    card = es.read_card(model)
    assert card["params"] == {
        "family": "lr",
        "family_chosen": "lr",
        "calibration": "isotonic",
        "balance": True,
        "cv": 5,
        "blend": ["atc:max_entropy"],
        "random_state": 1,
    }
    assert card["features"]["set"] == "profile"  # the 11-D profile (the paper's: 10-D)
    assert card["features"]["source"] == "precomputed"
    assert len(card["training"]["slices"]) == 13
    assert sum(s["n"] for s in card["training"]["slices"].values()) == len(halves()[0])
    assert set(card["slice_estimator"]["offsets"]) == set(card["training"]["slices"])
    assert card["slice_estimator"]["transfer"]["name"] == "sentinel-entropy"
    text = (model.parent / "lr.card.md").read_text()
    assert f"| AUROC (classifier scores) | {card['metrics']['cv_auroc']:.4f} |" in text
    assert "| gsm8k |" in text and "entropy mode: `topk`" in text
    png = model.parent / "lr.reliability.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_estimate_prints_ranked_slices_and_writes_csv_and_plot(
    model: Path, files: tuple[Path, Path]
) -> None:
    _, test = files
    csv, png = test.parent / "out" / "est.csv", test.parent / "out" / "est.png"
    result = runner.invoke(
        app,
        ["estimate", str(test), "--model", str(model), "-o", str(csv), "--plot", str(png)],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    assert "rejected 1 records" in result.output
    frame = pd.read_csv(csv)
    for column in ("estimate", "lower", "upper", "ppi_estimate", "ppi_lower", "ppi_upper"):
        assert column in frame.columns  # the columns the README promises
    assert frame["estimate"].is_monotonic_increasing  # worst first
    assert frame["n"].sum() == len(halves()[1])
    assert (frame["n_labelled"] < frame["n"]).all()
    assert frame["error"].isna().all()  # partly labelled: no error, but PPI
    assert frame["ppi_estimate"].notna().all()
    assert (frame["shift_word"] == "seen in training").all()  # every domain was in training
    # rows: rank, domain, n, estimate (interval), shift, labels, true, PPI (interval)
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+\d+\s+(\d\.\d{3}) \(", result.output, re.M)
    assert [row[0] for row in rows] == frame["domain"].tolist()  # ranked like the CSV
    assert [float(row[1]) for row in rows] == pytest.approx(frame["estimate"], abs=5e-4)
    assert "PPI (interval)" in result.output
    assert png.stat().st_size > 10_000
    # The numbers are those of the library call.
    batch = es.read_traces(test, errors="collect")
    res = es.estimate_accuracy(batch, load_estimator(model), by="domain")
    assert frame["estimate"].to_numpy() == pytest.approx([r.estimate for r in res])
    assert frame["upper"].to_numpy() == pytest.approx([r.upper for r in res])


def test_estimate_one_slice_and_bad_dimension(model: Path, files: tuple[Path, Path]) -> None:
    _, test = files
    result = runner.invoke(
        app, ["estimate", str(test), "--model", str(model), "--by", "all"], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert any(ln.split()[:2] == ["1", "all"] for ln in result.output.splitlines())
    bad = runner.invoke(app, ["estimate", str(test), "--model", str(model), "--by", "topic"])
    assert bad.exit_code != 0
    assert "--by topic: no trace has the slice dimension 'topic'" in str(bad.exception)


def test_estimate_refuses_traces_of_another_kind(model: Path) -> None:
    """The artifact was fitted on precomputed entropies; SmolLM2 records carry top-20
    logprobs: every trace is refused, and that is the error."""
    result = runner.invoke(
        app, ["estimate", str(SMOLLM2_FIXTURES / "traces.jsonl"), "--model", str(model)]
    )
    assert isinstance(result.exception, es.ArtifactMismatchError)
    message = str(result.exception)
    assert "fitted on traces with precomputed entropies" in message and "carry logprobs" in message


def test_fit_options_are_checked(files: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = files
    result = runner.invoke(app, ["fit", str(train), "-o", str(tmp_path / "m"), "--family", "svm"])
    assert isinstance(result.exception, es.ConfigError)
    assert "classifier family 'svm' is unknown" in str(result.exception)


def test_fit_with_sigmoid_and_profile_without_blend(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = files
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


def test_fit_presets_and_blend_options(files: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = files
    out = tmp_path / "paper.skops"
    # the paper's preset (a random forest by default; lr here to keep the test fast)
    result = runner.invoke(
        app, ["fit", str(train), "-o", str(out), "--preset", "paper", "--family", "lr"]
    )
    assert result.exit_code == 0, result.output
    est = load_estimator(out)
    assert (est.calibrate, est.transfer) == (False, "paper")
    clf = est.classifier_
    assert (clf.family, clf.features, clf.blend) == ("lr", "profile10", ())
    assert "0 domain value(s) calibrated" in " ".join(result.output.split())
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
