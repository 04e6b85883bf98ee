"""``sentinel prioritize``: which slices, and which responses, to label next."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._database import open_storage, require_scorer, when
from entropy_sentinel.cli._table import cli_table, interval_text, slice_cell
from entropy_sentinel.cli.app import console
from entropy_sentinel.csv_safety import write_csv

__all__ = ["prioritize"]


def prioritize(
    db: Annotated[
        str, typer.Option(help="Database URL (sqlite:///... or postgresql+psycopg://...).")
    ],
    budget: Annotated[int, typer.Option(help="How many responses to label.")],
    by: Annotated[str, typer.Option(help="Slice dimension to rank.")] = "domain",
    since: Annotated[str, typer.Option(help="Start: RFC 3339, epoch seconds, or 7d (ago).")] = "7d",
    until: Annotated[str | None, typer.Option(help="End (exclusive); default: now.")] = None,
    target: Annotated[
        float | None, typer.Option(help="Target accuracy; default: the all-traffic estimate.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of a new design's draw.")] = 0,
    new: Annotated[
        bool, typer.Option(help="Close the open labelling design and draw a new one.")
    ] = False,
    level: Annotated[float, typer.Option(help="Interval level.")] = 0.95,
    model: Annotated[
        str | None, typer.Option(help="Model key; required when several models are served.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Export for annotators: .csv or .jsonl, with an "
            "empty `correct` column to fill in and bring back with `sentinel labels "
            "import`.",
        ),
    ] = None,
) -> None:
    """Which responses to label next: the open labelling design of the model and slice
    dimension, drawn now when there is none with pending items (or with --new).

    The budget is shared over the slices by their label-free interval widths, and each
    slice's responses are drawn with known inclusion probabilities (active Poisson
    sampling), which their labels carry, so label-corrected estimates stay unbiased
    (docs/service.md). While a design has pending items it is shown as stored.
    """
    from entropy_sentinel.errors import ConfigError
    from entropy_sentinel.service.label_export import with_texts, write_labels_jsonl
    from entropy_sentinel.service.prioritize import prioritize as rank

    end = when(until, "until") or time.time()
    start = when(since, "since")
    assert start is not None
    if output is not None and output.suffix not in (".csv", ".jsonl"):
        raise ConfigError(f"--output {str(output)!r}: use a .csv or .jsonl file")
    with open_storage(db) as storage:
        scorer = require_scorer(storage, model)
        result = rank(
            storage.db,
            scorer,
            by=by,
            budget=budget,
            since=start,
            until=end,
            target=target,
            level=level,
            seed=seed,
            new=new,
        )
        if output is not None and output.suffix == ".jsonl":
            result = with_texts(storage, result)  # prompt and answer, where stored
    rows = [
        [
            str(s.rank),
            slice_cell(
                "all traffic" if s.value == "*" else s.value, s.shift_word or "shift unknown"
            ),
            str(s.n),
            str(s.n_labelled),
            f"{s.estimate:.3f} ({interval_text(s.lower, s.upper)})",
            f"{s.drawn} ({s.allocated})",
        ]
        for s in result.slices
    ]
    columns = [("#", "num"), ("slice", "text"), ("n", "num"), ("labels", "num")]
    columns += [("estimate (interval)", "pair"), ("drawn (expected)", "pair")]
    of_model = f" of model {scorer.model}" if scorer.model else ""
    title = f"labelling priorities{of_model} by {by} (target {result.target:.3f})"
    console.print(cli_table(title, columns, rows))
    d = result.design
    if d is None:
        console.print(
            "nothing to draw: no unlabelled traces in the range", highlight=False, soft_wrap=True
        )
    else:
        console.print(
            f"design {d.id}: {d.size} responses drawn (budget {result.budget}); "
            f"{d.labelled} labelled, {d.skipped} skipped, {d.pending} pending",
            highlight=False,
            soft_wrap=True,
        )
    if output is not None:
        if output.suffix == ".csv":
            write_csv(result.requests_frame(), output)
        else:
            write_labels_jsonl(result, output)
        console.print(
            f"wrote {output}: fill in `correct`, then `sentinel labels import {output} --db ...`",
            highlight=False,
            soft_wrap=True,
        )
