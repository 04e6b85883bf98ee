"""``sentinel features`` end to end on real files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from tests.conftest import SMOLLM2_FIXTURES

runner = CliRunner()
FIXTURE = SMOLLM2_FIXTURES / "traces.jsonl"


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_features_on_recorded_fixtures(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"features{suffix}"
    result = runner.invoke(app, ["features", str(FIXTURE), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rejected 1 records" in result.output  # the recorded empty completion
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected_cols = ["id", "domain", "shape", "correct", *es.FEATURE_NAMES, *es.SCORES]
    assert list(frame.columns) == expected_cols
    batch = es.read_traces(FIXTURE, errors="collect")
    assert frame["id"].tolist() == list(batch.ids)
    profile = es.entropy_profile(batch)
    assert frame[list(es.FEATURE_NAMES)].to_numpy() == pytest.approx(profile, rel=1e-12)
    rejected = [
        json.loads(line)
        for line in (tmp_path / f"features{suffix}.rejected.jsonl").read_text().splitlines()
    ]
    assert [r["record_id"] for r in rejected] == ["fixture-completion-2"]
    # Stream records carry no label: missing, not False.
    assert frame.loc[frame["shape"] == "chat_stream", "correct"].isna().all()


def test_messages_keep_long_paths_on_one_line_at_any_width(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from entropy_sentinel.cli.app import console

    monkeypatch.setattr(console, "width", 40)  # a narrow terminal, a deep checkout
    deep = tmp_path.joinpath(*[f"folder-{i}" for i in range(8)])
    deep.mkdir(parents=True)
    source = deep / "traces.jsonl"
    source.write_bytes(FIXTURE.read_bytes())
    out = deep / "features.csv"
    result = runner.invoke(app, ["features", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(str(source) in ln and ln.endswith("rejected 1 records") for ln in lines)
    assert any(ln.endswith(f"to {out}") for ln in lines)


def test_strict_mode_fails_on_rejections(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["features", str(FIXTURE), "-o", str(tmp_path / "f.csv"), "--strict", "--quiet"]
    )
    assert result.exit_code == 1
    assert (tmp_path / "f.csv").exists()  # the accepted rows are still written


def test_features_on_phi35(tmp_path: Path, phi35_path: Path) -> None:
    out = tmp_path / "phi.parquet"
    result = runner.invoke(
        app, ["features", str(phi35_path), "-o", str(out), "--mode", "topk_renorm"]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert len(frame) == 1319 and frame["correct"].mean() == pytest.approx(0.8415, abs=1e-4)
    assert frame["nll_avg"].isna().all()


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["features", str(FIXTURE), "-o", str(tmp_path / "f.txt")])
    assert isinstance(result.exception, es.ConfigError)
    assert ".csv or .parquet" in str(result.exception)
    result = runner.invoke(
        app, ["features", str(FIXTURE), "-o", str(tmp_path / "f.csv"), "--mode", "full"]
    )
    assert isinstance(result.exception, es.ConfigError)
    assert "topk_renorm" in str(result.exception)


def test_console_script_reports_errors_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "entropy_sentinel",
            "features",
            str(FIXTURE),
            "-o",
            str(tmp_path / "f.txt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
