"""Reading traces in CLI commands: any trace input, a progress bar, an honest rejection
summary, and a clear error when nothing could be read."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from entropy_sentinel.cli.app import console, err_console, live_progress
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces import Rejection, TraceBatch, TraceInput, open_traces

__all__ = [
    "TRACES_HELP",
    "check_engine",
    "check_read",
    "read_traces_cli",
    "report_rejections",
    "stream_traces_cli",
]

TRACES_HELP = "Traces: .jsonl, .jsonl.gz, .parquet, or a directory or quoted glob of Parquet files."
_SHOW_REJECTIONS = 10


def read_traces_cli(path: Path, *, quiet: bool = False) -> TraceBatch:
    """Read traces in bulk mode (bad records collected) with a progress bar; an input
    with no trace at all is a `ConfigError` saying so."""
    batches = list(stream_traces_cli(path, quiet=quiet, batch_size=None))
    batch = batches[0] if len(batches) == 1 else TraceBatch.concat(batches)
    check_read(len(batch), len(batch.rejected), path)
    return batch


def stream_traces_cli(
    path: Path, *, quiet: bool = False, batch_size: int | None = 2048
) -> Iterator[TraceBatch]:
    """Batches of at most ``batch_size`` traces (None: one), with a progress bar on a
    terminal."""
    source = open_traces(path)
    with _progress(source, quiet) as (progress, task):
        yield from source.batches(
            batch_size=batch_size, on_progress=lambda n: progress.advance(task, n)
        )


def check_read(n_traces: int, n_rejected: int, path: Path) -> None:
    """`ConfigError` when nothing could be read from ``path`` (never an empty success)."""
    if n_traces:
        return
    if n_rejected:
        raise ConfigError(
            f"none of the {n_rejected} records of {str(path)!r} could be read (see the "
            "rejections above)"
        )
    raise ConfigError(f"{str(path)!r} holds no traces (it is empty)")


def check_engine(engine: str) -> None:
    """`ConfigError` unless ``engine`` is ``local`` or ``spark``."""
    if engine not in ("local", "spark"):
        raise ConfigError(f"--engine {engine!r} is unknown; use local or spark")


@contextlib.contextmanager
def _progress(source: TraceInput, quiet: bool) -> Iterator[tuple[Progress, TaskID]]:
    columns = (
        [DownloadColumn(), TransferSpeedColumn()]
        if source.unit == "bytes"
        else [MofNCompleteColumn(), TextColumn("traces")]
    )
    with Progress(
        TextColumn("[bold]reading[/] {task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not live_progress(err_console),
    ) as progress:
        yield progress, progress.add_task(Path(source.name).name, total=source.total)


def report_rejections(
    batch: TraceBatch | tuple[int, int, Sequence[Rejection]],
    source: Path,
    rejected_path: Path | None,
) -> None:
    """Print how many records were read and rejected, why, and where the full list is.

    ``batch``: the traces read, or (traces, tokens, rejections) of a streamed read."""
    rejected: Sequence[Rejection]
    if isinstance(batch, TraceBatch):
        n, tokens, rejected = len(batch), batch.n_steps, batch.rejected
    else:
        n, tokens, rejected = batch
    n_rej = len(rejected)
    console.print(
        f"read [bold]{n}[/] traces ({tokens:,} tokens) from {source}; "
        f"rejected [bold {'red' if n_rej else 'green'}]{n_rej}[/] records",
        highlight=False,
        soft_wrap=True,
    )
    if not n_rej:
        return
    reasons = collections.Counter(_reason_kind(r) for r in rejected)
    for reason, count in reasons.most_common():
        console.print(f"  {count:>6} x {reason}", highlight=False, soft_wrap=True)
    for rej in rejected[:_SHOW_REJECTIONS]:
        console.print(f"  - {rej}", highlight=False, soft_wrap=True, markup=False)
    if n_rej > _SHOW_REJECTIONS:
        console.print(f"  ... and {n_rej - _SHOW_REJECTIONS} more", highlight=False, soft_wrap=True)
    if rejected_path is not None:
        rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with rejected_path.open("wb") as fh:
            for rej in rejected:
                fh.write(msgspec.json.encode(rej) + b"\n")
        console.print(
            f"  every rejected record is listed in {rejected_path}", highlight=False, soft_wrap=True
        )


def _reason_kind(rej: Rejection) -> str:
    """A short grouping key: the reason up to its first colon, without numbers."""
    head = rej.reason.split(":")[0]
    return "".join("#" if c.isdigit() else c for c in head)[:80]
