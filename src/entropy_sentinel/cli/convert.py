"""``sentinel convert``: traces in any accepted shape into the columnar trace format."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._io import (
    TRACES_HELP,
    check_read,
    rejection_log,
    report_rejections,
    stream_traces_cli,
)
from entropy_sentinel.cli.app import console
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces import ParquetTraceWriter

__all__ = ["convert"]


def convert(
    input: Annotated[Path, typer.Argument(help=TRACES_HELP)],
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write.")],
    strict: Annotated[bool, typer.Option(help="Fail (exit 1) if any record is rejected.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Write traces as Parquet in the trace format (docs/formats.md#parquet).

    Streams: memory does not grow with the input. Every value is kept exactly, except
    logprobs and entropies, rounded to float32 (what a JSON logprob carries). Bad
    records are rejected and listed (all of them in OUTPUT.rejected.jsonl).
    """
    if output.suffix.lower() != ".parquet":
        raise ConfigError(f"--output {str(output)!r}: use a .parquet file name")
    if output.exists() and output.resolve() == Path(input).resolve():
        raise ConfigError("write the converted traces to another file than the input")
    rejected_path = output.with_name(output.name + ".rejected.jsonl")
    n_tokens = 0
    partial = output.with_name(output.name + ".partial")
    with ParquetTraceWriter(partial) as writer, rejection_log(rejected_path) as rejected:
        for batch in stream_traces_cli(input, quiet=quiet):
            rejected.add(batch.rejected)
            n_tokens += batch.n_steps
            writer.write(batch)
            del batch  # not held while the next one is read
    report_rejections((writer.n_traces, n_tokens, rejected), input, rejected_path)
    try:
        check_read(writer.n_traces, len(rejected), input)
    except ConfigError:
        partial.unlink()
        raise
    partial.replace(output)
    console.print(
        f"wrote {writer.n_traces} traces to {output} ({output.stat().st_size / 1e6:.2f} MB)",
        highlight=False,
    )
    if strict and rejected:
        raise typer.Exit(1)
