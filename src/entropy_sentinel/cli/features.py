"""``sentinel features``: the entropy profile and baseline scores of every trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._io import read_traces_cli, report_rejections
from entropy_sentinel.cli.app import console
from entropy_sentinel.steps import ENTROPY_MODES, check_mode
from entropy_sentinel.table import feature_frame, write_table

__all__ = ["features"]


def features(
    input: Annotated[
        Path, typer.Argument(help="Trace file (.jsonl or .jsonl.gz).", exists=True, dir_okay=False)
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output table: .csv or .parquet.")],
    mode: Annotated[str, typer.Option(help=f"Entropy mode: {', '.join(ENTROPY_MODES)}.")] = "topk",
    precision: Annotated[str, typer.Option(help="float32 (fast) or float64.")] = "float32",
    strict: Annotated[bool, typer.Option(help="Fail (exit 1) if any record is rejected.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Write one row per trace: id, slices, label, the 11 features and the baseline scores.

    Bad records are rejected, counted and listed (all of them in
    OUTPUT.rejected.jsonl); --strict turns any rejection into a failure.
    """
    check_mode(mode)
    batch = read_traces_cli(input, quiet=quiet)
    report_rejections(batch, input, output.with_name(output.name + ".rejected.jsonl"))
    frame = feature_frame(batch, mode, precision=precision)
    write_table(frame, output)
    console.print(
        f"wrote {len(frame)} rows x {frame.shape[1]} columns to {output}",
        highlight=False,
        soft_wrap=True,
    )
    if strict and batch.rejected:
        raise typer.Exit(1)
