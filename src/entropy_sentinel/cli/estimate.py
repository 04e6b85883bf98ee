"""``sentinel estimate``: per-slice estimated accuracy with intervals, ranked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from entropy_sentinel.cli._io import read_traces_cli, report_rejections
from entropy_sentinel.cli.app import console
from entropy_sentinel.csv_safety import write_csv
from entropy_sentinel.errors import ConfigError

if TYPE_CHECKING:
    from entropy_sentinel.estimator.sentinel import SentinelEstimator
    from entropy_sentinel.estimator.slices import SliceAccuracy
    from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["estimate", "slice_table"]


def slice_table(result: SliceAccuracy) -> Table:
    """The ranked Rich table of a result (worst slice first).

    With labels it adds the true accuracy and the error; when some slice is only
    partly labelled, the labelled count, the true accuracy of the labelled part
    and the label-corrected (PPI) estimate with its interval instead of the error.
    """
    labelled = result.has_labels
    partial = any(0 < r.n_labelled < r.n for r in result.records)
    table = Table(
        title=f"estimated accuracy by {', '.join(result.by) or 'all'} "
        f"({result.level:.0%} intervals)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column(" / ".join(result.by) or "slice", no_wrap=True)
    names = ["n", "estimate", "interval", "shift"]
    if labelled:
        names += ["labels", "true", "PPI", "PPI interval"] if partial else ["true", "error"]
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for rank, r in enumerate(result.records, start=1):
        row = [
            str(rank),
            r.label,
            str(r.n),
            f"{r.estimate:.3f}",
            f"{r.lower:.3f}–{r.upper:.3f}",
            r.shift_word,
        ]
        if labelled:
            true = f"{r.true_accuracy:.3f}" if r.n_labelled else "—"
            if partial:
                ppi = f"{r.ppi_estimate:.3f}" if r.n_labelled else "—"
                ppi_iv = f"{r.ppi_lower:.3f}–{r.ppi_upper:.3f}" if r.n_labelled else "—"
                row += [str(r.n_labelled), true, ppi, ppi_iv]
            else:
                error = f"{r.error:+.3f}"
                row += [true, f"[red]{error}[/]" if r.covered is False else error]
        table.add_row(*row)
    return table


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
    plot: Annotated[Path | None, typer.Option(help="Write a plot (PNG, SVG, PDF).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Estimate accuracy per slice with intervals, ranked worst first.

    Labels in the traces, where present, add the true accuracy, the error and a
    label-corrected (prediction-powered) estimate.
    """
    from entropy_sentinel.estimator.artifact import load_estimator

    dims = [d.strip() for d in by.split(",") if d.strip()]
    if not dims:
        raise ConfigError(f"--by {by!r} names no slice dimension; give e.g. --by domain")
    if output is not None and output.suffix.lower() != ".csv":
        raise ConfigError(f"--output {str(output)!r}: use a .csv file name")
    estimator = load_estimator(model)
    batch = read_traces_cli(input, quiet=quiet)
    report_rejections(
        batch, input, output.with_name(output.name + ".rejected.jsonl") if output else None
    )
    batch = _scorable(batch, estimator)
    result = estimator.estimate(batch, by=None if dims == ["all"] else dims, level=level)
    console.print(slice_table(result))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_csv(result.to_df(), output)
        console.print(f"wrote {len(result)} slices to {output}", highlight=False)
    if plot is not None:
        result.plot(plot)
        console.print(f"wrote the plot to {plot}", highlight=False)


def _scorable(batch: TraceBatch, estimator: SentinelEstimator) -> TraceBatch:
    """The traces the estimator can score; the others (another entropy source, fewer
    alternatives than its top-k) are counted and named, each refused for itself."""
    signature = estimator.classifier_.signature_
    if signature is None or len(batch) == 0:
        return batch
    refused = signature.refused(batch)
    if not refused.any():
        return batch
    console.print(
        f"[yellow]skipped {int(refused.sum())} of {len(batch)} traces:[/] "
        + escape(signature.why(batch, refused)),
        highlight=False,
        soft_wrap=True,
    )
    if refused.all():
        raise ConfigError("no trace can be scored by this estimator (see above)")
    return batch.subset(~refused)
