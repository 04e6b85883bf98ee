"""``sentinel report``, ``sentinel prioritize`` and ``sentinel labels``: the annotator round
trip on a database filled with real corpus traces through the real pipeline."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from entropy_sentinel.cli import app
from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.service.labels import read_labels
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.scoring import Scorer
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from tests.service_fixtures import corpus_model, corpus_records

__all__ = ["corpus_model", "corpus_records"]

runner = CliRunner()
HOUR = 3600


@pytest.fixture(scope="module")
def filled(
    corpus_model: Path,
    corpus_records: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, bool], float]:
    """A database with 600 real traces over 3 hours in 3 domains; returns url, truth, t0."""
    path = tmp_path_factory.mktemp("cli") / "s.db"
    url = f"sqlite:///{path}"
    storage = Storage(open_database(url), 60)
    pipeline = IngestPipeline(Settings(), storage, Scorer.load(corpus_model, storage), Metrics())
    pipeline.start()
    t0 = math.floor(time.time() / HOUR) * HOUR - 3 * HOUR
    domains = ["algebra", "geometry", "arithmetic"]
    records = [
        {
            "id": r["id"],
            "token_entropy": r["token_entropy"],
            "slice": {"domain": domains[i % 3]},
            "timestamp": t0 + ((i // 3) % 3) * HOUR + i,
        }
        for i, r in enumerate(corpus_records[:600])
    ]
    assert pipeline.ingest_records_sync(records).accepted == 600
    pipeline.close()
    storage.db.dispose()
    return url, {r["id"]: bool(r["correct"]) for r in corpus_records[:600]}, t0


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=True)


def test_report_table_csv_json_and_consistency_check(
    filled: tuple[str, dict[str, bool], float], tmp_path: Path
) -> None:
    url, _, t0 = filled
    out = tmp_path / "report.csv"
    result = _run(
        "report",
        "--db",
        url,
        "--by",
        "domain",
        "--window",
        "1h",
        "--since",
        str(t0),
        "--reference",
        "1h",
        "--check",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "algebra" in result.output and "aggregates consistent" in result.output
    frame = pd.read_csv(out)
    assert len(frame) == 9 and frame["n"].sum() == 600
    assert set(frame["value"]) == {"algebra", "geometry", "arithmetic"}
    later = frame[frame["window_start"] > frame["window_start"].min()]
    assert later["reference_n"].between(66, 67).all()  # 600 traces in 9 (domain, hour) cells
    as_json = tmp_path / "report.json"
    assert _run("report", "--db", url, "--since", "1d", "-o", str(as_json)).exit_code == 0
    body = json.loads(as_json.read_text())
    assert body["records"][0]["n"] == 600 and body["by"] == "*"


def test_prioritize_then_import_labels_then_recalibrate(
    filled: tuple[str, dict[str, bool], float], tmp_path: Path
) -> None:
    url, truth, t0 = filled
    export = tmp_path / "to_label.csv"
    result = _run(
        "prioritize",
        "--db",
        url,
        "--budget",
        "90",
        "--by",
        "domain",
        "--since",
        str(t0),
        "-o",
        str(export),
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(export, keep_default_na=False)
    drawn = len(frame)  # a Poisson draw of expected size 90
    assert f"{drawn} responses drawn (budget 90)" in result.output and abs(drawn - 90) < 35
    assert set(frame["correct"]) == {""} and set(frame["status"]) == {"pending"}
    assert frame["id"].is_unique and set(frame["value"]) <= {"algebra", "geometry", "arithmetic"}
    assert ((frame["inclusion_probability"] > 0) & (frame["inclusion_probability"] <= 1)).all()

    frame["correct"] = ["yes" if truth[i] else "no" for i in frame["id"]]
    frame.loc[0, "correct"] = ""  # not labelled yet: passed over, counted
    frame.to_csv(export, index=False)
    result = _run("labels", "import", str(export), "--db", url, "--source", "alice")
    assert result.exit_code == 0, result.output
    assert f"labelled {drawn - 1} traces: {drawn - 1} drawn by a labelling" in result.output
    assert "1 blank" in result.output

    result = _run("report", "--db", url, "--by", "domain", "--since", str(t0))
    assert result.exit_code == 0 and "corrected" in result.output

    result = _run(
        "labels", "recalibrate", "--db", url, "--method", "sigmoid", "--min-labels", "50", "--force"
    )
    assert result.exit_code == 0, result.output
    assert "activated scorer" in result.output and "rescored 600 traces" in result.output
    result = _run("labels", "recalibrate", "--db", url, "--min-labels", "5000")
    assert isinstance(result.exception, Exception) and "too few" in str(result.exception)


def test_bad_label_files_are_reported_by_line(
    filled: tuple[str, dict[str, bool], float], tmp_path: Path
) -> None:
    url, truth, _ = filled
    known, other_id = list(truth)[1:3]
    path = tmp_path / "labels.jsonl"
    path.write_text(
        f'{{"id": "{known}", "correct": true}}\n'
        f'{{"id": "{other_id}", "correct": "maybe"}}\n'
        "not json\n"
        '{"correct": false}\n'
        '{"id": "nowhere", "correct": 0}\n'
    )
    parsed = read_labels(path)
    assert [lab[0] for lab in parsed.labels] == [known, "nowhere"]
    assert [p.split(":")[0] for p in parsed.rejections] == [
        f"line 2 (id {other_id!r})",
        "line 3",
        "line 4",
    ]
    result = _run("labels", "import", str(path), "--db", url, "--strict")
    assert result.exit_code == 1
    assert "1 unknown ids" in result.output and "'nowhere'" in result.output
    other = tmp_path / "labels.txt"
    other.write_text("")
    with pytest.raises(ConfigError, match=r"\.csv or \.jsonl"):
        read_labels(other)


def test_commands_refuse_databases_they_cannot_use(tmp_path: Path) -> None:
    result = _run("report", "--db", f"sqlite:///{tmp_path}/no/such/dir.db")
    assert isinstance(result.exception, StorageError)
    assert "no monitoring database at" in str(result.exception)
    (tmp_path / "empty.db").touch()
    result = _run("prioritize", "--db", f"sqlite:///{tmp_path}/empty.db", "--budget", "5")
    assert isinstance(result.exception, StorageError) and "never been served" in str(
        result.exception
    )
