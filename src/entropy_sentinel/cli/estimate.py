"""``sentinel estimate``: per-slice estimated accuracy with intervals, ranked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from entropy_sentinel.cli._io import (
    TRACES_HELP,
    check_engine,
    check_read,
    rejection_log,
    report_rejections,
    stream_traces_cli,
)
from entropy_sentinel.cli._table import cli_table, interval_text
from entropy_sentinel.cli.app import console
from entropy_sentinel.csv_safety import write_csv
from entropy_sentinel.errors import ConfigError, SliceDimensionError
from entropy_sentinel.model_names import fitted_model, models_named

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from rich.table import Table

    from entropy_sentinel.estimator.slices import SliceAccuracy
    from entropy_sentinel.traces.batch import TraceBatch

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
    columns += [("estimate (interval)", "pair"), ("shift", "text")]
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
            r.shift_word,
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
    title = f"estimated accuracy by {', '.join(result.by) or 'all'} ({result.level:.0%} intervals)"
    return cli_table(title, columns, rows)


def estimate(
    input: Annotated[Path, typer.Argument(help=TRACES_HELP)],
    model: Annotated[
        Path,
        typer.Option(
            help="Estimator artifact written by `sentinel fit`.", exists=True, dir_okay=False
        ),
    ],
    by: Annotated[
        str, typer.Option(help="Slice dimension(s), comma-separated; 'all' for one slice.")
    ] = "domain",
    window: Annotated[
        str | None,
        typer.Option(help="Also split by time window of this length (e.g. 1h, 1d)."),
    ] = None,
    level: Annotated[float, typer.Option(help="Interval coverage, in (0, 1).")] = 0.95,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the records as CSV.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a plot; the suffix names the format (.png, .svg, .pdf, ...)."),
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local (this process, streaming) or spark (needs [spark]).")
    ] = "local",
    master: Annotated[
        str | None, typer.Option(help="Spark master URL, e.g. local[2] (engine spark).")
    ] = None,
    allow_other_model: Annotated[
        bool,
        typer.Option(
            help="Estimate traces that name another model than the one the estimator was "
            "fitted for (refused by default: entropy scales differ between models)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Estimate accuracy per slice with intervals, ranked worst first.

    Reads the input batch by batch (memory does not grow with its size). Labels in
    the traces, where present, add the true accuracy, the error and a label-corrected
    (prediction-powered) estimate. Traces the estimator cannot score (another top-k,
    precomputed entropies) are rejected and listed, like unreadable records. Traces that
    name another model than the one the estimator was fitted for (the `model` of their
    records) are refused unless --allow-other-model (engine local).
    """
    from entropy_sentinel.estimator.artifact import load_estimator
    from entropy_sentinel.streaming import estimate_stream
    from entropy_sentinel.timeutil import parse_duration

    dims = [d.strip() for d in by.split(",") if d.strip()]
    if not dims:
        raise ConfigError(f"--by {by!r} names no slice dimension; give e.g. --by domain")
    if output is not None and output.suffix.lower() != ".csv":
        raise ConfigError(f"--output {str(output)!r}: use a .csv file name")
    check_engine(engine)
    if plot is not None:
        check_plot_format(plot)
    seconds = None if window is None else parse_duration(window, what="--window")
    estimator = load_estimator(model)
    rejected_path = output.with_name(output.name + ".rejected.jsonl") if output else None
    slices = None if dims == ["all"] else dims
    try:
        with rejection_log(rejected_path) as rejected:  # every rejection to the file
            if engine == "spark":
                from entropy_sentinel.spark.cli import spark_estimate

                if fitted_model(estimator.card_) is not None and not allow_other_model:
                    console.print(
                        "note: the spark engine does not check the traces' model against the "
                        f"estimator's ({fitted_model(estimator.card_)!r}); the local engine does",
                        highlight=False,
                    )
                result, summary = spark_estimate(
                    input,
                    estimator,
                    by=slices,
                    window=seconds,
                    level=level,
                    master=master,
                    rejections=rejected,
                )
            else:
                batches = stream_traces_cli(input, quiet=quiet)
                fitted = fitted_model(estimator.card_)
                result, summary = estimate_stream(
                    _same_model(batches, fitted, allow_other_model),
                    estimator,
                    slices,
                    level,
                    window=seconds,
                    rejections=rejected,
                )
    except SliceDimensionError as exc:  # in the CLI's words
        raise ConfigError(
            f"--by {by}: no trace has the slice dimension "
            f"{', '.join(map(repr, exc.absent))}; the traces have: "
            f"{', '.join(exc.present) or 'none'}. Use one of those, or --by all for one slice"
        ) from exc
    report_rejections((summary.n_traces, summary.n_tokens, summary.rejected), input, rejected_path)
    check_read(summary.n_traces, len(summary.rejected), input)
    console.print(slice_table(result))
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        write_csv(result.to_df(), output)
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


def _same_model(
    batches: Iterable[TraceBatch], fitted: str | None, allow: bool
) -> Iterator[TraceBatch]:
    """The batches, refused at the first trace naming another model than ``fitted`` (the
    estimator's) unless ``allow`` (then a warning at the end names them)."""
    others: dict[str, int] = {}
    for batch in batches:
        if fitted is not None:
            for m in models_named(batch.models):
                if m != fitted:
                    others[m] = others.get(m, 0) + sum(1 for x in batch.models if x == m)
            if others and not allow:
                raise ConfigError(
                    _other_models(others, fitted, len(batch))
                    + (
                        ". Use an estimator fitted on that model's traces (sentinel fit "
                        "--model-name), or pass --allow-other-model to estimate anyway"
                    )
                )
        yield batch
    if others:
        console.print(
            f"[yellow]warning:[/] {_other_models(others, fitted, None)} (--allow-other-model)",
            highlight=False,
            soft_wrap=True,
        )


def _other_models(others: dict[str, int], fitted: str | None, of: int | None) -> str:
    n = sum(others.values())
    names = sorted(others)
    shown = ", ".join(repr(m) for m in names[:5]) + (" ..." if len(names) > 5 else "")
    among = f" of {of}" if of is not None else ""
    return (
        f"{n}{among} traces name the model {shown}, but the estimator was fitted on the "
        f"traces of {fitted!r}: entropy scales differ between models, so its estimates for "
        "them would be wrong"
    )
