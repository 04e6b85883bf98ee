"""``sentinel evaluate``: the paper's protocol on a labelled corpus; ``sentinel evaluate-report``.

What runs is chosen by `entropy_sentinel.evaluation.select_configurations`: the product's
presets (``--presets``, by default those that fit the traces), a classifier grid
(``--families`` x ``--features`` x ``--calibration`` x ``--balance``; ``--families none``
for no grid), the score baselines (``--baselines`` x ``--scores``) and named
configurations (``--configs``). Results are cached per (configuration, group) in the
results folder, so running again resumes, and running with other configurations or
groups adds to the same report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from entropy_sentinel.cli.app import console, err_console, live_progress
from entropy_sentinel.errors import ConfigError

__all__ = ["evaluate", "evaluate_report"]


def _split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _none(values: list[str]) -> list[str]:
    return [] if values in ([], ["none"]) else values


def _balances(text: str) -> list[bool]:
    mapping = {"yes": True, "true": True, "no": False, "false": False}
    out = []
    for part in _split_list(text):
        if part.lower() not in mapping:
            raise ConfigError(f"--balance value {part!r}: use yes, no or yes,no")
        out.append(mapping[part.lower()])
    return out


Reference = Annotated[str, typer.Option(help="Configuration the report compares the others with.")]
Highlight = Annotated[
    str, typer.Option(help="Configurations drawn in the figures (comma-separated).")
]
Notes = Annotated[
    Path | None,
    typer.Option(help="Markdown file appended to the report.", exists=True, dir_okay=False),
]
Title = Annotated[str | None, typer.Option(help="Title of the report.")]


def _write_report(
    results_dir: Path, reference: str, highlight: str, title: str | None, notes: Path | None
) -> Path:
    """Tables and report.md of a results folder, from its cache."""
    from entropy_sentinel.evaluation import load_results
    from entropy_sentinel.evaluation.report import write_report

    results = load_results(results_dir)
    results.save(results_dir)
    return write_report(
        results,
        results_dir,
        reference=reference,
        highlight=_split_list(highlight) or None,
        title=title,
        notes=notes.read_text() if notes else None,
    )


def _command(corpus: Path, output: Path, **options: object) -> list[str]:
    """The command line that reproduces a run: every option that shapes results, explicit."""
    words = ["sentinel", "evaluate", str(corpus), "-o", str(output)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value == "" or value is False:
            continue
        words += [flag] if value is True else [flag, str(value)]
    return words


def evaluate(
    corpus: Annotated[
        Path,
        typer.Argument(
            help="Labelled traces: .jsonl, .jsonl.gz, .parquet (a corpus of sentinel pack, "
            "or the trace format), or a directory or quoted glob of Parquet files.",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Results folder.")],
    by: Annotated[str, typer.Option(help="Slice dimension whose values are the domains.")] = (
        "domain"
    ),
    k: Annotated[str, typer.Option("--k", help="Training group sizes, e.g. 1-4, 2 or 1,3.")] = (
        "1-4"
    ),
    presets: Annotated[
        str,
        typer.Option(
            help="Presets to run (sentinel,sentinel-entropy,paper), auto (those that fit the "
            "traces) or none."
        ),
    ] = "auto",
    families: Annotated[
        str, typer.Option(help="Classifier families of the grid (lr,rf,mlp,hgb) or none.")
    ] = "none",
    features: Annotated[
        str,
        typer.Option(help="Feature sets of the grid (profile,profile10,sea,profile+baselines)."),
    ] = "profile10",
    calibration: Annotated[
        str, typer.Option(help="Calibrations of the grid (isotonic,sigmoid,none).")
    ] = "isotonic",
    balance: Annotated[
        str, typer.Option(help="Class balancing of the grid: yes, no or yes,no.")
    ] = ("yes"),
    baselines: Annotated[str, typer.Option(help="Score baselines: atc,doc,ac or none.")] = (
        "atc,doc,ac"
    ),
    scores: Annotated[
        str | None,
        typer.Option(help="Scores for the baselines (default: the paper's nine, where defined)."),
    ] = None,
    configs: Annotated[
        str,
        typer.Option(
            help="Named configurations too: presets (paper, ...), grid names "
            "(rf.profile.isotonic.bal), baselines (atc.max_entropy); see docs/evaluation.md."
        ),
    ] = "",
    entropy_mode: Annotated[
        str,
        typer.Option(help="Entropy mode of the grid and baselines (topk, topk_renorm, topk_tail)."),
    ] = "topk",
    max_groups: Annotated[
        int | None, typer.Option(help="At most this many groups per k (seeded sample).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the splits, the group sample, the models.")
    ] = 0,
    train_fraction: Annotated[
        float, typer.Option(help="Fraction of each training domain used for training.")
    ] = 0.8,
    jobs: Annotated[int, typer.Option(help="Parallel processes (-1: all cores).")] = 1,
    retry_failed: Annotated[bool, typer.Option(help="Recompute cached failures.")] = False,
    reference: Reference = "paper",
    highlight: Highlight = "",
    notes: Notes = None,
    title: Title = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Run the paper's protocol: train on groups of k domains, estimate every domain.

    For every training group of k domains (all of them, or --max-groups per k), each
    configuration is trained on 80% of each training domain and estimates the accuracy
    of every domain (the other 20% of training domains, all of the others). Writes
    OUTPUT/groups.{parquet,csv}, OUTPUT/domains.{parquet,csv.gz}, OUTPUT/report.md and
    OUTPUT/figures/; caches every task in OUTPUT/cache/ so an interrupted run resumes.
    """
    from entropy_sentinel.evaluation import (
        EvalData,
        Split,
        named_groups,
        parse_ks,
        run_evaluation,
        select_configurations,
        training_groups,
    )

    ks = parse_ks(k)
    cals: list[str | None] = [None if c.lower() == "none" else c for c in _split_list(calibration)]
    data = EvalData.load(corpus, by=by)
    console.print(
        f"corpus {corpus}: [bold]{len(data)}[/] labelled responses in "
        f"{len(data.domain_names)} domains ({data.n_unlabelled} unlabelled left out, "
        f"{data.n_rejected} records rejected)",
        highlight=False,
    )
    configurations, remarks = select_configurations(
        presets=None if presets == "auto" else _none(_split_list(presets)),
        families=_none(_split_list(families)),
        features=_split_list(features),
        calibrations=cals,
        balances=_balances(balance),
        baselines=_none(_split_list(baselines)),
        scores=_split_list(scores) if scores else None,
        names=_split_list(configs),
        mode=entropy_mode,
        has_logprobs=bool(data.batch.has_logprobs.all()),
    )
    for remark in remarks:
        console.print(remark, highlight=False)
    named = named_groups(data.domain_accuracy())
    groups = training_groups(
        data.domain_names, ks, max_groups=max_groups, seed=seed, always=named.values()
    )
    console.print(
        f"{len(configurations)} configurations x {len(groups)} training groups "
        f"(k = {', '.join(map(str, ks))}"
        + (f", at most {max_groups} per k" if max_groups else ", all")
        + "); named groups: "
        + (", ".join(f"{n} = {g.key}" for n, g in named.items()) or "none"),
        highlight=False,
    )
    summary = run_evaluation(
        data,
        configurations,
        groups,
        output,
        split=Split(train_fraction=train_fraction, seed=seed),
        jobs=jobs,
        retry_failed=retry_failed,
        progress=not quiet and live_progress(err_console),
        command=_command(
            corpus,
            output,
            by=by,
            k=k,
            presets=presets,
            families=families,
            features=features,
            calibration=calibration,
            balance=balance,
            baselines=baselines,
            scores=scores,
            configs=configs,
            entropy_mode=entropy_mode,
            max_groups=max_groups,
            seed=seed,
            train_fraction=train_fraction,
            retry_failed=retry_failed,
        ),
    )
    console.print(
        f"{summary.n_tasks} tasks: {summary.n_computed} computed, {summary.n_cached} from the "
        f"cache, [{'red' if summary.n_failed else 'green'}]{summary.n_failed} failed[/] "
        f"({summary.seconds:.0f} s)",
        highlight=False,
    )
    report = _write_report(output, reference, highlight, title, notes)
    console.print(f"wrote {report} and the tables in {output}", highlight=False)
    if summary.n_failed:
        err_console.print(
            f"{summary.n_failed} task(s) failed; see 'Failed tasks' in {report}",
            highlight=False,
        )


def evaluate_report(
    results_dir: Annotated[
        Path,
        typer.Argument(help="Results folder of sentinel evaluate.", exists=True, file_okay=False),
    ],
    reference: Reference = "paper",
    highlight: Highlight = "",
    notes: Notes = None,
    title: Title = None,
) -> None:
    """Rewrite the tables and report.md of a results folder from its cache (no fitting)."""
    report = _write_report(results_dir, reference, highlight, title, notes)
    console.print(f"wrote {report}", highlight=False)
