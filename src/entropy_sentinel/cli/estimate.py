"""``sentinel estimate``: per-slice estimated accuracy with intervals, ranked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from entropy_sentinel.cli._io import read_traces_cli, report_rejections
from entropy_sentinel.cli._table import cli_table, interval_text
from entropy_sentinel.cli.app import console
from entropy_sentinel.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from entropy_sentinel.estimator.slices import SliceAccuracy

__all__ = ["check_plot_format", "estimate", "slice_table"]


def slice_table(result: SliceAccuracy) -> Table:
    """The ranked table of a result (worst slice first), readable at 80 columns.

    With labels it adds the true accuracy and the error; when some slice is only
    partly labelled, the labelled count, the true accuracy of the labelled part
    and the label-corrected (PPI) estimate with its interval instead of the error.
    """
    labelled = result.has_labels
    partial = any(0 < r.n_labelled < r.n for r in result.records)
    columns = [("#", "num"), (" / ".join(result.by) or "slice", "text"), ("n", "num")]
    columns += [("estimate (interval)", "pair")]
    if labelled:
        columns += (
            [("labels", "num"), ("true", "num"), ("PPI (interval)", "pair")]
            if partial
            else [("true", "num"), ("error", "num")]
        )
    rows = []
    for rank, r in enumerate(result.records, start=1):
        row = [
            str(rank),
            r.label,
            str(r.n),
            f"{r.estimate:.3f} ({interval_text(r.lower, r.upper)})",
        ]
        if labelled:
            true = f"{r.true_accuracy:.3f}" if r.n_labelled else "—"
            if partial:
                ppi = (
                    f"{r.ppi_estimate:.3f} ({interval_text(r.ppi_lower, r.ppi_upper)})"
                    if r.n_labelled
                    else "—"
                )
                row += [str(r.n_labelled), true, ppi]
            else:
                error = f"{r.error:+.3f}"
                row += [true, f"[red]{error}[/]" if r.covered is False else error]
        rows.append(row)
    title = (
        f"estimated accuracy by {', '.join(result.by) or 'all'} "
        f"({result.level:.0%} intervals, model_sd {result.model_sd:.4f})"
    )
    return cli_table(title, columns, rows)


def estimate(
    input: Annotated[
        Path, typer.Argument(help="Trace file (.jsonl or .jsonl.gz).", exists=True, dir_okay=False)
    ],
    model: Annotated[
        Path,
        typer.Option(
            help="Estimator artifact written by `sentinel fit`.", exists=True, dir_okay=False
        ),
    ],
    by: Annotated[
        str, typer.Option(help="Slice dimension(s), comma-separated; 'all' for one slice.")
    ] = "domain",
    level: Annotated[float, typer.Option(help="Interval coverage, in (0, 1).")] = 0.95,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the records as CSV.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a plot; the suffix names the format (.png, .svg, .pdf, ...)."),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Estimate accuracy per slice with intervals, ranked worst first.

    Labels in the traces, where present, add the true accuracy, the error and a
    label-corrected (prediction-powered) estimate.
    """
    from entropy_sentinel.estimator.model import CorrectnessEstimator
    from entropy_sentinel.estimator.slices import estimate_accuracy

    dims = [d.strip() for d in by.split(",") if d.strip()]
    if not dims:
        raise ConfigError(f"--by {by!r} names no slice dimension; give e.g. --by domain")
    if output is not None and output.suffix.lower() != ".csv":
        raise ConfigError(f"--output {str(output)!r}: use a .csv file name")
    if plot is not None:
        check_plot_format(plot)
    estimator = CorrectnessEstimator.load(model)
    batch = read_traces_cli(input, quiet=quiet)
    report_rejections(
        batch, input, output.with_name(output.name + ".rejected.jsonl") if output else None
    )
    slices = None if dims == ["all"] else dims
    absent = [d for d in slices or () if d not in batch.slice_dimensions]
    if absent and len(batch):
        present = ", ".join(sorted(batch.slice_dimensions)) or "none"
        raise ConfigError(
            f"--by {by}: no trace has the slice dimension {', '.join(map(repr, absent))}; "
            f"the traces have: {present}. Use one of those, or --by all for one slice"
        )
    result = estimate_accuracy(batch, estimator, by=slices, level=level)
    console.print(slice_table(result))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        result.to_df().to_csv(output, index=False)
        console.print(f"wrote {len(result)} slices to {output}", highlight=False)
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        try:
            result.plot(plot)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"--plot {str(plot)!r}: could not write the plot: {exc}") from exc
        console.print(f"wrote the plot to {plot}", highlight=False)


def check_plot_format(path: Path) -> None:
    """A `ConfigError` listing the formats unless ``path``'s suffix names one matplotlib
    writes (checked before any work is done)."""
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        names = ", ".join(f".{f}" for f in sorted(formats))
        what = f"the format {path.suffix!r}" if suffix else "a file name without a suffix"
        raise ConfigError(f"--plot {str(path)!r}: {what} is not one matplotlib writes; use {names}")
