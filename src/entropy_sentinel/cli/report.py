"""``sentinel report``: per-slice, per-window estimated accuracy from the monitoring database."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from entropy_sentinel.cli._database import open_storage, require_scorers, when
from entropy_sentinel.cli._table import cli_table, interval_text, slice_cell
from entropy_sentinel.cli.app import console
from entropy_sentinel.csv_safety import write_csv

if TYPE_CHECKING:
    from rich.table import Table

    from entropy_sentinel.service.estimates import SliceEstimate

__all__ = ["report"]


def report(
    db: Annotated[
        str, typer.Option(help="Database URL (sqlite:///... or postgresql+psycopg://...).")
    ],
    by: Annotated[str, typer.Option(help="Slice dimension, or '*' for all traffic.")] = "*",
    window: Annotated[
        str | None, typer.Option(help="Window length (e.g. 1h); default: one window.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Start: RFC 3339, epoch seconds, or 24h (ago).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End (exclusive); default: now.")] = None,
    reference: Annotated[
        str, typer.Option(help="Reference before each window (e.g. 24h), or none.")
    ] = "24h",
    level: Annotated[float, typer.Option(help="Interval level.")] = 0.95,
    min_count: Annotated[int, typer.Option(help="Hide windows with fewer traces.")] = 1,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Also write .csv or .json.")
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Also verify the aggregates against a recount of the traces.")
    ] = False,
    model: Annotated[
        list[str] | None,
        typer.Option(
            help="Model key (repeatable: one set of rows per model, on the same slices); "
            "default: all models together, each trace scored by its own estimator."
        ),
    ] = None,
) -> None:
    """Estimated accuracy per slice and time window, from the monitoring database.

    Intervals, counts, and the change against the reference window; worst first
    within each window. Label-corrected estimates where labels were imported.
    """
    from entropy_sentinel.service.estimates import EstimateQuery, estimate
    from entropy_sentinel.service.storage.consistency import check_aggregates
    from entropy_sentinel.timeutil import parse_duration

    ref = None if reference.strip().lower() in ("none", "0", "") else parse_duration(reference)
    query = EstimateQuery(
        by=by,
        window=None if window is None else parse_duration(window, what="window"),
        since=when(since, "since"),
        until=when(until, "until"),
        reference=ref,
        level=level,
        min_count=min_count,
    )
    with open_storage(db) as storage:
        scorers = require_scorers(storage, model)
        result = estimate(
            storage.db, scorers, storage.bucket, query, now=time.time(), split=model is not None
        )
        consistency = check_aggregates(storage.db) if check else None
    console.print(_table(result.records, by, level, query.window, split=model is not None))
    for s in scorers:
        notes = [f"scorer {s.id}"]
        notes += ["recalibrated"] if s.calibration else []
        notes += [] if s.finisher else ["its transfer relation is not known: the worst case"]
        notes += [f"fitted on the traces of {s.fitted_on!r}"] if s.other_model else []
        console.print(f"model {s.model!r}: {', '.join(notes)}", highlight=False, soft_wrap=True)
    console.print(f"{len(result.records)} records", highlight=False, soft_wrap=True)
    if output is not None:
        if output.suffix == ".json":
            output.write_text(json.dumps(result.to_dict(), indent=2))
        else:
            write_csv(result.to_frame(), output)
        console.print(f"wrote {output}", highlight=False, soft_wrap=True)
    if consistency is not None:
        if consistency.ok:
            console.print(
                f"aggregates consistent: {consistency.rows} rows match a recount of "
                f"{consistency.traces} traces",
                highlight=False,
                soft_wrap=True,
            )
        else:
            for problem in consistency.problems[:20]:
                console.print(f"  [red]{problem}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1)


def _table(
    records: Sequence[SliceEstimate],
    by: str,
    level: float,
    window: int | None,
    *,
    split: bool = False,
) -> Table:
    """Columns for models, references and labels only when some record has them; a
    window column only with ``--window`` (else the one window's range is in the title),
    and then no reference estimate (the change says how it compares; the CSV has both):
    the table stays within 80 columns. A model marked * was scored by an estimator fitted
    on another model's traces."""
    from entropy_sentinel.timeutil import format_duration

    has_ref = any(r.reference_interval is not None for r in records)
    has_labels = any(r.n_labelled for r in records)
    columns = [("window", "key")] if window else []
    columns += [("model", "text")] if split else []
    columns += [("slice", "text"), ("n", "num"), ("estimate (interval)", "pair")]
    columns += ([] if window else [("ref.", "num")]) + [("change", "num")] if has_ref else []
    columns += [("labels", "num"), ("corrected (interval)", "pair")] if has_labels else []
    rows = []
    for r in records:
        ref = r.reference_interval
        lc = r.label_corrected
        row = [_when(r.window_start)] if window else []
        row += [escape(r.model or "(none)") + (" *" if r.other_model else "")] if split else []
        row += [
            slice_cell("all" if r.dimension == "*" else r.value, _shift_text(r)),
            str(r.n),
            f"{_f(r.interval.estimate)} ({_iv(r.interval.lower, r.interval.upper)})",
        ]
        if has_ref:
            row += [] if window else ["" if ref is None else _f(ref.estimate)]
            row += ["" if math.isnan(r.change) else f"{r.change:+.3f}"]
        if has_labels:
            row += [
                str(r.n_labelled) if r.n_labelled else "",
                "" if lc is None else f"{_f(lc.estimate)} ({_iv(lc.lower, lc.upper)})",
            ]
        rows.append(row)
    span = f"{format_duration(window)} windows" if window else _range(records)
    what = "all traffic" if by == "*" else by
    title = f"estimated accuracy by {what}, {level:.0%} intervals, {span} (UTC)"
    return cli_table(title, columns, rows)


def _shift_text(r: SliceEstimate) -> str:
    """The slice's shift word (under its name); "shift unknown" where it is not known."""
    return r.shift_word or ("shift unknown" if r.interval.unseen_fraction else "")


def _when(start: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(start, UTC).strftime("%m-%d %H:%M")


def _range(records: Sequence[SliceEstimate]) -> str:
    if not records:
        return "no traces"
    from datetime import UTC, datetime

    a = datetime.fromtimestamp(records[0].window_start, UTC)
    b = datetime.fromtimestamp(records[0].window_end, UTC)
    return (
        f"{a:%Y-%m-%d %H:%M} to {b:%H:%M}"
        if a.date() == b.date()
        else f"{a:%Y-%m-%d %H:%M} to {b:%Y-%m-%d %H:%M}"
    )


def _iv(lower: float, upper: float) -> str:
    return "-" if math.isnan(lower) or math.isnan(upper) else interval_text(lower, upper)


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"
