"""Reading traces in CLI commands: a progress bar and an honest rejection summary."""

from __future__ import annotations

import collections
from pathlib import Path

import msgspec
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from entropy_sentinel.cli.app import console, err_console
from entropy_sentinel.traces import Rejection, TraceBatch, read_traces

__all__ = ["read_traces_cli", "report_rejections"]

_SHOW_REJECTIONS = 10


def read_traces_cli(path: Path, *, quiet: bool = False) -> TraceBatch:
    """Read a JSONL trace file in bulk mode (bad records collected) with a progress bar."""
    total = None if path.suffix == ".gz" else path.stat().st_size
    with Progress(
        TextColumn("[bold]reading[/] {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet,
    ) as progress:
        task = progress.add_task(path.name, total=total)
        return read_traces(path, errors="collect", on_progress=lambda n: progress.advance(task, n))


def report_rejections(batch: TraceBatch, source: Path, rejected_path: Path | None) -> None:
    """Print how many records were read and rejected, why, and where the full list is."""
    n_rej = len(batch.rejected)
    console.print(
        f"read [bold]{len(batch)}[/] traces ({batch.n_steps:,} tokens) from {source}; "
        f"rejected [bold {'red' if n_rej else 'green'}]{n_rej}[/] records",
        highlight=False,
        soft_wrap=True,
    )
    if not n_rej:
        return
    reasons = collections.Counter(_reason_kind(r) for r in batch.rejected)
    for reason, count in reasons.most_common():
        console.print(f"  {count:>6} x {reason}", highlight=False, soft_wrap=True)
    for rej in batch.rejected[:_SHOW_REJECTIONS]:
        console.print(f"  - {rej}", highlight=False, soft_wrap=True, markup=False)
    if n_rej > _SHOW_REJECTIONS:
        console.print(f"  ... and {n_rej - _SHOW_REJECTIONS} more", highlight=False, soft_wrap=True)
    if rejected_path is not None:
        rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with rejected_path.open("wb") as fh:
            for rej in batch.rejected:
                fh.write(msgspec.json.encode(rej) + b"\n")
        console.print(
            f"  every rejected record is listed in {rejected_path}", highlight=False, soft_wrap=True
        )


def _reason_kind(rej: Rejection) -> str:
    """A short grouping key: the reason up to its first colon, without numbers."""
    head = rej.reason.split(":")[0]
    return "".join("#" if c.isdigit() else c for c in head)[:80]
