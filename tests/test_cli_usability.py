"""The CLI as a new user meets it: its entry point (`entropy_sentinel.cli.main`, what the
``sentinel`` script runs) with its output captured, and as a real process
(``python -m entropy_sentinel``) whose output goes to pipes, as in CI logs or ``| tee``.

Data: the committed SmolLM2 corpus as per-token entropies over six hours (slices
``domain`` and ``customer``), a real estimator fitted on its grades, and a monitoring
database filled through the real ingest pipeline.

Checked: bad options are one clear error line (no traceback) in the CLI's own words;
commands that read a database never create one; the tables stay whole at 80 columns
(no slice name or interval cut); output that is not a terminal is plain lines (no
progress bar, no colour codes, nothing wrapped inside a word); ``scripts/demo.sh --help``
installs nothing; the annotators' file of ``prioritize -o`` (JSONL and CSV) comes back
through ``labels import``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from entropy_sentinel import CorrectnessEstimator, read_traces
from entropy_sentinel.cli import main
from entropy_sentinel.cli.app import console, err_console
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.scoring import Scorer
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from tests.conftest import CORPUS, REPO
from tests.service_fixtures import corpus_traffic

HOUR = 3600
DOMAINS = 13
INTERVAL = re.compile(r"\d\.\d{3}–\d\.\d{3}")


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def sentinel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Run]:
    """``sentinel ARGS`` through its entry point, in this process (not a terminal);
    ``columns=`` sets the width of its consoles, ``cwd=`` the working folder."""

    def run(*args: str, columns: int | None = None, cwd: Path | None = None) -> Run:
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", ["sentinel", *args])
            if columns is not None:
                m.setattr(console, "width", columns)
                m.setattr(err_console, "width", columns)
            if cwd is not None:
                m.chdir(cwd)
            capsys.readouterr()
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run


def _process(*args: str, columns: int | None = None, cwd: Path | None = None) -> Any:
    """Run ``sentinel ARGS`` in a subprocess, stdout and stderr to pipes (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "entropy_sentinel", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """traces.jsonl (partly labelled), model.skops, and a served database."""
    if not CORPUS.exists():
        pytest.skip(f"the SmolLM2 corpus is not at {CORPUS}")
    folder = tmp_path_factory.mktemp("cli")
    records, graded = corpus_traffic(time.time(), span=6 * HOUR, text=True)
    traces = folder / "traces.jsonl"
    traces.write_text("".join(json.dumps(r) + "\n" for r in records))
    fit_on = folder / "graded.jsonl"
    fit_on.write_text("".join(json.dumps(r) + "\n" for r in graded))
    model = CorrectnessEstimator(family="lr", random_state=0).fit_traces(read_traces(fit_on))
    model_path = model.save(folder / "model.skops")
    db = folder / "sentinel.db"
    storage = Storage(open_database(f"sqlite:///{db}"), 60)
    settings = Settings(store_text=True)
    pipeline = IngestPipeline(settings, storage, Scorer.load(model_path, storage), Metrics())
    pipeline.start()
    assert pipeline.ingest_records_sync(records).accepted == len(records)
    pipeline.close()
    storage.db.dispose()
    return {"traces": traces, "model": model_path, "db": db}


def _error_line(result: Any) -> str:
    """The one error line of a failed command (exit 2), with no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


# ------------------------------------------------------------------ bad options
def test_a_plot_in_an_unknown_format_is_one_clear_error(
    traffic: dict[str, Path], tmp_path: Path, sentinel: Callable[..., Run]
) -> None:
    base = ["estimate", str(traffic["traces"]), "--model", str(traffic["model"])]
    line = _error_line(_process(*base, "--plot", str(tmp_path / "out.xyz")))  # a real process
    assert f"--plot '{tmp_path / 'out.xyz'}': the format '.xyz' is not one" in line
    for name, what in (("out.xyz", "the format '.xyz'"), ("out", "a file name without a suffix")):
        line = _error_line(sentinel(*base, "--plot", str(tmp_path / name)))
        assert f"--plot '{tmp_path / name}': {what} is not one matplotlib writes" in line
        assert all(f".{fmt}," in line for fmt in ("pdf", "png", "svg"))
        assert not (tmp_path / name).exists()
    ok = sentinel(*base, "--plot", str(tmp_path / "new" / "slices.svg"))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "new" / "slices.svg").read_text().lstrip().startswith("<?xml")


def test_an_unknown_dimension_is_answered_in_cli_words(
    traffic: dict[str, Path], sentinel: Callable[..., Run]
) -> None:
    base = ["estimate", str(traffic["traces"]), "--model", str(traffic["model"])]
    line = _error_line(sentinel(*base, "--by", "nosuchdim"))
    assert "--by nosuchdim: no trace has the slice dimension 'nosuchdim'" in line
    assert "the traces have: customer, domain" in line and "--by all for one slice" in line
    assert "by=None" not in line
    one = sentinel(*base, "--by", "all")
    assert one.returncode == 0 and re.search(r"^\s*1\s+all\s+1950\s", one.stdout, re.M)


def test_commands_that_read_a_database_never_create_one(
    traffic: dict[str, Path], tmp_path: Path, sentinel: Callable[..., Run]
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,correct\nx,true\n")
    commands = (
        ["report"],
        ["report", "--by", "domain", "--window", "1h"],
        ["prioritize", "--budget", "5"],
        ["labels", "import", str(labels)],
        ["labels", "recalibrate"],
    )
    for command in commands:
        nope = tmp_path / "nope.db"
        line = _error_line(sentinel(*command, "--db", "sqlite:///nope.db", cwd=tmp_path))
        assert f"no monitoring database at '{nope}' (--db sqlite:///nope.db)" in line
        assert "`sentinel serve --db sqlite:///nope.db --model ...` creates it" in line
        assert not nope.exists() and not list(tmp_path.glob("nope.db*")), command
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in commands[:3]:
        line = _error_line(sentinel(*command, "--db", f"sqlite:///{empty}"))
        assert "has never been served: start `sentinel serve --db ...` on it first" in line
    with sqlite3.connect(empty) as conn:  # no schema was written into it
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)
    served = sentinel("report", "--db", f"sqlite:///{traffic['db']}")
    assert served.returncode == 0, served.stderr


# ---------------------------------------------------------------- 80 columns
def _check_readable(text: str, width: int, names: list[str], intervals: int) -> None:
    """The table (its rule and rows) within ``width``; every slice name and interval whole.
    (Lines of prose are not wrapped at all when the output is not a terminal.)"""
    table = [line for line in text.splitlines() if "─" in line or INTERVAL.search(line)]
    assert len(table) > DOMAINS and max(len(line) for line in table) <= width, text
    assert "…" not in text, text
    words = set(re.findall(r"[\w.-]+", text))
    missing = [n for n in names if n not in words]
    assert not missing, f"cut slice names {missing}:\n{text}"
    assert len(INTERVAL.findall(text)) >= intervals, text


def test_tables_stay_whole_at_80_columns(
    traffic: dict[str, Path], sentinel: Callable[..., Run]
) -> None:
    url = f"sqlite:///{traffic['db']}"
    lines = traffic["traces"].read_text().splitlines()
    names = sorted({json.loads(line)["slice"]["domain"] for line in lines})
    assert len(names) == DOMAINS and max(map(len, names)) >= 13  # synth_add_2x1 ...

    result = sentinel("prioritize", "--db", url, "--budget", "50", "--by", "domain", columns=80)
    assert result.returncode == 0, result.stderr
    _check_readable(result.stdout, 80, names, DOMAINS)

    result = sentinel(
        "report", "--db", url, "--by", "domain", "--since", "12h", "--reference", "3h", columns=80
    )
    assert result.returncode == 0, result.stderr
    _check_readable(result.stdout, 80, names, 2 * DOMAINS)  # estimate and label-corrected

    result = sentinel(
        "report", "--db", url, "--by", "domain", "--since", "3h", "--window", "1h", columns=80
    )
    assert result.returncode == 0, result.stderr
    _check_readable(result.stdout, 80, names, 3 * DOMAINS)

    result = sentinel(
        "estimate", str(traffic["traces"]), "--model", str(traffic["model"]), columns=80
    )
    assert result.returncode == 0, result.stderr
    _check_readable(result.stdout, 80, names, 2 * DOMAINS)  # estimate and PPI


# ------------------------------------------------------------ not a terminal
def test_output_that_is_not_a_terminal_is_plain_lines(
    traffic: dict[str, Path], tmp_path: Path
) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "traffic of the day.jsonl"
    deep.parent.mkdir()
    deep.write_bytes(traffic["traces"].read_bytes())
    result = _process("estimate", str(deep), "--model", str(traffic["model"]))
    assert result.returncode == 0, result.stderr
    both = result.stdout + result.stderr
    assert not any(c in both for c in ("\x1b", "━", "…", "\r")), both
    read = [line for line in result.stdout.splitlines() if line.startswith("read ")]
    assert read == [f"read 1950 traces ({_tokens(traffic)} tokens) from {deep}; rejected 0 records"]
    assert result.stderr == ""  # no progress bar drawn into a pipe


def _tokens(traffic: dict[str, Path]) -> str:
    return f"{read_traces(traffic['traces']).n_steps:,}"


def test_demo_help_installs_nothing() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo.sh"), "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: demo.py")
    assert "--no-wait" in result.stdout and "installs first" in result.stdout
    assert "installing" not in result.stdout + result.stderr


# ------------------------------------------------------------ labelling files
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_the_labelling_file_goes_out_and_comes_back(
    traffic: dict[str, Path], tmp_path: Path, sentinel: Callable[..., Run], suffix: str
) -> None:
    """prioritize -o FILE, an annotator fills `correct`, labels import FILE: each label
    lands on its trace. JSONL holds real objects, a real null and the stored prompt and
    answer; CSV flat columns."""
    db = tmp_path / "sentinel.db"
    db.write_bytes(traffic["db"].read_bytes())  # the labels go into a copy
    url = f"sqlite:///{db}"
    graded = (traffic["traces"].parent / "graded.jsonl").read_text().splitlines()
    truth = {r["id"]: r["correct"] for r in map(json.loads, graded)}
    path = tmp_path / f"to_label{suffix}"
    # --new: a design of its own (an earlier test may have left one open in the copy)
    result = sentinel("prioritize", "--db", url, "--budget", "30", "--new", "-o", str(path))
    assert result.returncode == 0, result.stderr
    assert f"wrote {path}: fill in `correct`" in result.stdout
    drawn_text = re.search(r"design \d+: (\d+) responses drawn \(budget 30\)", result.stdout)
    assert drawn_text is not None, result.stdout
    drawn = int(drawn_text.group(1))  # a Poisson draw of expected size 30
    if suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        assert len(records) == drawn and all(r["correct"] is None for r in records)
        assert all(0 < r["inclusion_probability"] <= 1 for r in records)
        first = records[0]
        assert list(first)[:2] == ["id", "correct"]
        assert isinstance(first["slice"], dict) and set(first["slice"]) == {"domain", "customer"}
        assert first["slice"]["domain"] == first["value"] and first["dimension"] == "domain"
        assert isinstance(first["meta"], dict) and isinstance(first["meta"]["answer"], str)
        assert all(r["prompt"][0]["role"] == "user" for r in records)
        # the corpus keeps the question of its synthetic domains only
        asked = next(r for r in records if r["prompt"][0]["content"])
        assert asked["answer"] == asked["meta"]["answer"]  # the stored text, for annotators
        for r in records:
            r["correct"] = truth[r["id"]]
        records[0]["correct"] = None  # not labelled yet
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        frame = pd.read_csv(path, keep_default_na=False)
        assert len(frame) == drawn and set(frame["correct"]) == {""}
        assert json.loads(frame["slice"][0])["domain"] == frame["value"][0]  # flat columns
        frame["correct"] = ["yes" if truth[i] else "no" for i in frame["id"]]
        frame.loc[0, "correct"] = ""
        frame.to_csv(path, index=False)
    result = sentinel("labels", "import", str(path), "--db", url, "--source", "alice")
    assert result.returncode == 0, result.stderr
    n = drawn - 1
    assert f"labelled {n} traces: {n} drawn by a labelling design, 0 plain" in result.stdout
    assert "0 unchanged, 0 skipped, 1 blank rows, 0 unknown ids, 0 bad rows" in result.stdout
    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT trace_id, label FROM traces WHERE label_source='alice'"))
    assert len(stored) == n and all(stored[i] == float(truth[i]) for i in stored)
