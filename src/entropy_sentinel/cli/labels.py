"""``sentinel labels import`` and ``sentinel labels recalibrate``: labels back from annotators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli._database import open_storage, require_scorer
from entropy_sentinel.cli.app import console

__all__ = ["labels_app"]

labels_app = typer.Typer(
    help="Bring labels back and recalibrate the estimator with them.", no_args_is_help=True
)


@labels_app.command("import")
def import_labels(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or JSONL with `id` and `correct` columns.", exists=True, dir_okay=False
        ),
    ],
    db: Annotated[str, typer.Option(help="Database URL.")],
    source: Annotated[
        str, typer.Option(help="Who labelled (when the file has no `source` column).")
    ] = "import",
    strict: Annotated[
        bool, typer.Option(help="Fail (exit 1) on any bad line or unknown id.")
    ] = False,
) -> None:
    """Attach labels to stored traces; then label-corrected estimates appear in
    `sentinel report` and `sentinel labels recalibrate` can use them. Labels of the
    responses a labelling design drew (`sentinel prioritize`) carry their inclusion
    probability (designed); others count as plain labels. A `skipped` column (true)
    records items the annotator skipped."""
    from entropy_sentinel.service.labels import import_labels, read_labels

    parsed = read_labels(file)
    with open_storage(db, write=True) as storage:
        out = import_labels(storage, parsed, source=source)
    unknown = out.unknown
    console.print(
        f"labelled {out.labelled} traces: {out.designed} drawn by a labelling design, "
        f"{out.plain} plain",
        highlight=False,
    )
    console.print(
        f"{out.unchanged} unchanged, {out.skipped} skipped, {out.blank} blank rows, "
        f"{len(unknown)} unknown ids, {len(out.rejections)} bad rows",
        highlight=False,
        soft_wrap=True,
    )
    for problem in parsed.rejections[:20]:
        console.print(f"  - {problem}", highlight=False, soft_wrap=True, markup=False)
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:10])
        console.print(
            f"  unknown ids (not in the database): {shown}" + (" ..." if len(unknown) > 10 else ""),
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if strict and (unknown or parsed.rejections):
        raise typer.Exit(1)


@labels_app.command("recalibrate")
def recalibrate_cmd(
    db: Annotated[str, typer.Option(help="Database URL.")],
    method: Annotated[str, typer.Option(help="isotonic or sigmoid.")] = "isotonic",
    min_labels: Annotated[int, typer.Option(help="Refuse with fewer labels.")] = 50,
    force: Annotated[
        bool, typer.Option(help="Activate even if the held-out Brier score does not improve.")
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Model key; required when several models are served.")
    ] = None,
) -> None:
    """Fit a recalibration of the active estimator on the stored labels; activate it and
    rescore the stored traces if it lowers the cross-validated Brier score (or --force).
    A running service picks it up within seconds."""
    from entropy_sentinel.service.labels import recalibrate

    with open_storage(db, write=True) as storage:
        before = require_scorer(storage, model)
        outcome = recalibrate(
            storage, model=before.model, method=method, min_labels=min_labels, force=force
        )
    fit = outcome.fit
    console.print(
        f"{fit.spec['method']} recalibration on {fit.n_labels} labels ({fit.folds}-fold "
        f"cross-validated): Brier {fit.brier_before:.4f} -> {fit.brier_after:.4f}, "
        f"ECE {fit.ece_before:.4f} -> {fit.ece_after:.4f}",
        highlight=False,
        soft_wrap=True,
    )
    if outcome.activated is None:
        console.print(
            "not activated: it does not lower the held-out Brier score (use --force to "
            f"activate anyway); scorer {before.id} stays active",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(
        f"activated scorer {outcome.activated.id} (was {before.id}); rescored "
        f"{outcome.rescored} traces",
        highlight=False,
        soft_wrap=True,
    )
    console.print(json.dumps(outcome.to_dict()), highlight=False, soft_wrap=True, markup=False)
