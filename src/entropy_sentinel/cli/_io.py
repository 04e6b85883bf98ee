"""Reading traces in CLI commands: any trace input, a progress bar, an honest rejection
summary, and a clear error when nothing could be read."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

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
from entropy_sentinel.traces import TraceBatch, TraceInput, open_traces
from entropy_sentinel.traces.rejections import RejectionFile, RejectionLog

__all__ = [
    "TRACES_HELP",
    "check_engine",
    "check_read",
    "read_traces_cli",
    "rejection_log",
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


@contextlib.contextmanager
def rejection_log(rejected_path: Path | None) -> Iterator[RejectionLog]:
    """A `RejectionLog` for a streamed read whose sink writes every rejection to
    ``rejected_path`` as it comes (None: counted and sampled only); the file is closed
    when the block ends."""
    if rejected_path is None:
        yield RejectionLog()
        return
    with RejectionFile(rejected_path) as sink:
        yield RejectionLog(sink=sink)


def report_rejections(
    batch: TraceBatch | tuple[int, int, RejectionLog],
    source: Path,
    rejected_path: Path | None,
) -> None:
    """Print how many records were read and rejected, why, and where the full list is.

    ``batch``: the traces read (their rejections are written to ``rejected_path``), or
    (traces, tokens, rejections) of a streamed read, whose log's sink wrote them
    there (`rejection_log`)."""
    if isinstance(batch, TraceBatch):
        n, tokens = len(batch), batch.n_steps
        log = RejectionLog(keep=_SHOW_REJECTIONS)
        if batch.rejected and rejected_path is not None:
            with RejectionFile(rejected_path) as sink:
                log.sink = sink
                log.add(batch.rejected)
        else:
            log.add(batch.rejected)
    else:
        n, tokens, log = batch
    n_rej = log.n
    console.print(
        f"read [bold]{n}[/] traces ({tokens:,} tokens) from {source}; "
        f"rejected [bold {'red' if n_rej else 'green'}]{n_rej}[/] records",
        highlight=False,
        soft_wrap=True,
    )
    if not n_rej:
        return
    for reason, count in log.kinds.most_common():
        console.print(f"  {count:>6} x {reason}", highlight=False, soft_wrap=True)
    for rej in log.sample[:_SHOW_REJECTIONS]:
        console.print(f"  - {rej}", highlight=False, soft_wrap=True, markup=False)
    if n_rej > _SHOW_REJECTIONS:
        console.print(f"  ... and {n_rej - _SHOW_REJECTIONS} more", highlight=False, soft_wrap=True)
    if rejected_path is not None:
        console.print(
            f"  every rejected record is listed in {rejected_path}", highlight=False, soft_wrap=True
        )
