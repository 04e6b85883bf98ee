"""The collector's progress display, also where no terminal can show a bar."""

from __future__ import annotations

import io

from rich.console import Console

from entropy_sentinel.collect.collector import RecordInfo
from entropy_sentinel.collect.progress import CollectProgress


def test_plain_status_lines_without_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=60)
    with CollectProgress(console=console, log_every=0.0) as bar:
        bar.start(4, 1)
        bar.update(RecordInfo("a", "d", ok=True, correct=True, completion_tokens=10))
        bar.update(RecordInfo("b", "d", ok=True, correct=False, truncated=True))
        bar.update(RecordInfo("c", "d", ok=False, error="HTTP 503"))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "collect 1/4 items  resumed 1"
    assert lines[1].startswith("collect 2/4 items") and "acc 1.00" in lines[1]
    assert lines[3].startswith("collect 4/4 items")
    assert "acc 0.50" in lines[3] and "cut 1" in lines[3] and "failed 1" in lines[3]
    assert lines[4].startswith("collected 4/4 items") and len(lines) == 5
    # whole lines, longer than the console's 60 columns; no bar, no ellipsis
    assert len(lines[3]) > 60
    assert not any(c in buffer.getvalue() for c in "━…\x1b")


def test_disabled_prints_nothing() -> None:
    buffer = io.StringIO()
    with CollectProgress(console=Console(file=buffer), disable=True, log_every=0.0) as bar:
        bar.start(1, 0)
        bar.update(RecordInfo("a", "d", ok=True, correct=True))
    assert buffer.getvalue() == ""
