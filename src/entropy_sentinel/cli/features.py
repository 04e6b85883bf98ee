"""``sentinel features``: the entropy profile and baseline scores of every trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._io import (
    TRACES_HELP,
    check_engine,
    check_read,
    rejection_log,
    report_rejections,
    stream_traces_cli,
)
from entropy_sentinel.cli.app import console
from entropy_sentinel.steps import ENTROPY_MODES, check_mode

__all__ = ["features"]


def features(
    input: Annotated[Path, typer.Argument(help=TRACES_HELP)],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Output table: .csv or .parquet (a directory with Spark)."
        ),
    ],
    mode: Annotated[str, typer.Option(help=f"Entropy mode: {', '.join(ENTROPY_MODES)}.")] = "topk",
    precision: Annotated[str, typer.Option(help="float32 (fast) or float64.")] = "float32",
    strict: Annotated[bool, typer.Option(help="Fail (exit 1) if any record is rejected.")] = False,
    engine: Annotated[
        str, typer.Option(help="local (this process, streaming) or spark (needs [spark]).")
    ] = "local",
    master: Annotated[
        str | None, typer.Option(help="Spark master URL, e.g. local[2] (engine spark).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Write one row per trace: id, slices, label, the 11 features and the baseline scores.

    Reads the input batch by batch (memory does not grow with its size). Bad records
    are rejected, counted and listed (all of them in OUTPUT.rejected.jsonl); --strict
    turns any rejection into a failure.
    """
    from entropy_sentinel.table import FeatureTableWriter, feature_frame  # pandas: lazily

    check_mode(mode)
    rejected_path = output.with_name(output.name + ".rejected.jsonl")
    if engine == "spark":
        from entropy_sentinel.spark.cli import spark_features

        n_rejected = spark_features(
            input, output, mode=mode, precision=precision, master=master, rejected=rejected_path
        )
        if strict and n_rejected:
            raise typer.Exit(1)
        return
    check_engine(engine)
    n_traces = n_tokens = 0
    with FeatureTableWriter(output) as writer:
        with rejection_log(rejected_path) as rejected:
            for batch in stream_traces_cli(input, quiet=quiet):
                rejected.add(batch.rejected)
                n_traces += len(batch)
                n_tokens += batch.n_steps
                if len(batch):
                    writer.write(feature_frame(batch, mode, precision=precision))
                del batch  # not held while the next one is read
        report_rejections((n_traces, n_tokens, rejected), input, rejected_path)
        check_read(n_traces, len(rejected), input)
    console.print(
        f"wrote {writer.n_rows} rows x {writer.n_columns} columns to {output}",
        highlight=False,
        soft_wrap=True,
    )
    if strict and rejected:
        raise typer.Exit(1)
