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
from rich.table import Table

from entropy_sentinel.cli._database import open_storage, require_scorers, when
from entropy_sentinel.cli.app import console
from entropy_sentinel.csv_safety import write_csv

if TYPE_CHECKING:
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
    console.print(_table(result.records, by, level, split=model is not None))
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
    records: Sequence[SliceEstimate], by: str, level: float, *, split: bool = False
) -> Table:
    """Columns for models, references and labels only when some record has them."""
    has_ref = any(r.reference_interval is not None for r in records)
    has_labels = any(r.n_labelled for r in records)
    cols = ["window", *(["model"] if split else []), "slice", "n", "est.", "interval"]
    cols += ["ref.", "change"] if has_ref else []
    cols += ["labels", "corrected"] if has_labels else []
    table = Table(title=f"estimated accuracy by {by}, {level:.0%} intervals (UTC)")
    for col in cols:
        table.add_column(
            col,
            justify="left" if col in ("window", "model", "slice") else "right",
            no_wrap=col == "window",
        )
    for r in records:
        ref = r.reference_interval
        lc = r.label_corrected
        row = [
            _when(r.window_start, r.window_end),
            *([(r.model or "(none)") + (" *" if r.other_model else "")] if split else []),
            escape("all" if r.dimension == "*" else r.value) + f"\n[dim]{_shift_text(r)}[/]",
            str(r.n),
            _f(r.interval.estimate),
            f"{_f(r.interval.lower)}-{_f(r.interval.upper)}",
        ]
        if has_ref:
            row += [
                "" if ref is None else _f(ref.estimate),
                "" if math.isnan(r.change) else f"{r.change:+.3f}",
            ]
        if has_labels:
            row += [
                str(r.n_labelled) if r.n_labelled else "",
                "" if lc is None else f"{_f(lc.estimate)} ({_f(lc.lower)}-{_f(lc.upper)})",
            ]
        table.add_row(*row)
    return table


def _shift_text(r: SliceEstimate) -> str:
    """The slice's shift word (under its name); "shift unknown" where it is not known."""
    return r.shift_word or ("shift unknown" if r.interval.unseen_fraction else "")


def _when(start: float, end: float) -> str:
    from datetime import UTC, datetime

    a = datetime.fromtimestamp(start, UTC)
    b = datetime.fromtimestamp(end, UTC)
    same_day = (b - a).total_seconds() <= 86_400 and a.date() == b.date()
    if same_day or (b - a).total_seconds() == 86_400:
        return a.strftime("%m-%d %H:%M")
    return f"{a:%m-%d %H:%M}..{b:%m-%d %H:%M}"


def _f(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3f}"
