"""The collector's progress display, also where no terminal can show a bar."""

from __future__ import annotations

import io

from rich.console import Console

from entropy_sentinel.collect.collector import RecordInfo
from entropy_sentinel.collect.progress import CollectProgress


def test_plain_status_lines_without_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    with CollectProgress(console=console, log_every=0.0) as bar:
        bar.start(4, 1)
        bar.update(RecordInfo("a", "d", ok=True, correct=True, completion_tokens=10))
        bar.update(RecordInfo("b", "d", ok=True, correct=False, truncated=True))
        bar.update(RecordInfo("c", "d", ok=False, error="HTTP 503"))
    lines = [line for line in buffer.getvalue().splitlines() if line.startswith("collect ")]
    assert lines[0].startswith("collect 2/4") and "acc 1.00" in lines[0]
    assert lines[2].startswith("collect 4/4")
    assert "acc 0.50" in lines[2] and "cut 1" in lines[2] and "failed 1" in lines[2]


def test_disabled_prints_nothing() -> None:
    buffer = io.StringIO()
    with CollectProgress(console=Console(file=buffer), disable=True, log_every=0.0) as bar:
        bar.start(1, 0)
        bar.update(RecordInfo("a", "d", ok=True, correct=True))
    assert buffer.getvalue() == ""
