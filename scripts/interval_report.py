"""Do the intervals hold? Coverage and width of label-free and label-corrected intervals.

From an evaluation results folder (``sentinel evaluate``, which keeps each preset's
per-trace scores), without refitting anything:

1. **Label-free intervals**, each domain judged with a transfer relation fitted without
   it (leave-one-domain-out: the relation never saw the domain, as it never saw a user's),
   on held-out domains and on training domains' held-back parts: coverage (over
   (group, domain) pairs, and per domain), mean width, and the width against the
   sampling-only width (the interval from the estimator's own P alone).
2. **The label loop**: for m expected labels per domain, labels alone (exact
   finite-population interval), plain PPI and ours (active design, power-tuned PPI,
   combined with the label-free estimate): coverage, median AEE over groups, mean width;
   and the floor no design-based estimate can beat, ``sqrt((1 - m/N) min_lambda
   Var(y - lambda P) / m)`` per domain.

    python scripts/interval_report.py CORPUS RESULTS [--phi35 SLICES DIR ...] -o OUT

Writes OUT/README.md and OUT/*.csv.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from entropy_sentinel.estimator.transfer import TransferModel, fit_transfer
from entropy_sentinel.evaluation.assess import (
    ScoredTask,
    label_curve,
    label_free,
    load_scored,
    transfer_points,
)
from entropy_sentinel.evaluation.data import EvalData


def lodo_relations(points: pd.DataFrame, preset: str) -> Callable[[str], TransferModel]:
    """For each domain name of the main corpus, the relation fitted without its points."""
    cache: dict[str, TransferModel] = {}

    def relation_for(name: str) -> TransferModel:
        key = f"smollm2:{name}"
        if key not in cache:
            keep = points["domain"] != key
            cache[key] = fit_transfer(
                points["shift"][keep], points["magnitude"][keep], points["domain"][keep],
                name=f"{preset} without {name}",
            )  # fmt: skip
        return cache[key]

    return relation_for


def floor_sd(tasks: list[ScoredTask], data: EvalData, m: int) -> float:
    """Median over groups of the mean over domains of the floor's expected absolute error
    (normal: sqrt(2/pi) sd) of a design-based estimate with m labels."""
    per_group = []
    for task in tasks:
        values = []
        for name in data.domain_names:
            mask = task.part(data.domains, name)
            n = int(mask.sum())
            if m >= n:
                continue
            y = data.labels[task.rows][mask]
            p = task.p[mask]
            var_p = float(p.var())
            lam = float(np.cov(y, p, bias=True)[0, 1] / var_p) if var_p > 1e-12 else 0.0
            resid = float(np.var(y - lam * p))
            values.append(math.sqrt(2 / math.pi) * math.sqrt((1 - m / n) * resid / m))
        if values:
            per_group.append(float(np.mean(values)))
    return float(np.median(per_group)) if per_group else math.nan


def md_table(frame: pd.DataFrame, digits: int = 3) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--phi35", nargs="+", default=[], help="SLICES.jsonl then result folders")
    parser.add_argument("--preset", default="sentinel")
    parser.add_argument("--k", type=int, default=2, help="training group size assessed")
    parser.add_argument("--repetitions", type=int, default=10)
    parser.add_argument(
        "--relation-from",
        nargs=2,
        type=Path,
        metavar=("CORPUS", "RESULTS"),
        help="judge every held-out domain with one relation learnt on another run only "
        "(another model's corpus: a test of the relation across models)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    by = json.loads((args.results / "run.json").read_text())["data"]["by"]
    data = EvalData.load(args.corpus, by=by)
    name = args.corpus.name.split(".")[0]
    tasks = [t for t in load_scored(args.results, args.preset) if len(t.group) == args.k]
    all_tasks = load_scored(args.results, args.preset)
    frames = [transfer_points(all_tasks, data, prefix="smollm2:")]
    if args.relation_from:
        other, other_results = args.relation_from
        other_by = json.loads((other_results / "run.json").read_text())["data"]["by"]
        frames = [
            transfer_points(
                load_scored(other_results, args.preset),
                EvalData.load(other, by=other_by),
                prefix=f"{other.name.split('.')[0]}:",
            )
        ]
    if args.phi35:
        slices, *dirs = (Path(x) for x in args.phi35)
        for folder in dirs:
            manifest = json.loads((folder / "run.json").read_text())
            if args.preset in manifest.get("configurations", {}):
                dim = manifest["data"]["by"]
                phi = EvalData.load(slices, by=dim)
                frames.append(
                    transfer_points(load_scored(folder, args.preset), phi, f"phi35-{dim}:")
                )
    points = pd.concat(frames, ignore_index=True)
    sources = ", ".join(sorted({d.split(":")[0] for d in points["domain"]}))
    if args.relation_from:
        one = fit_transfer(points["shift"], points["magnitude"], points["domain"], name=args.preset)
        relation_for: Callable[[str], TransferModel] = lambda _: one  # noqa: E731
        how = (
            f"judged with one transfer relation learnt on {points['domain'].nunique()} "
            f"domains of {sources} only"
        )
    else:
        relation_for = lodo_relations(points, args.preset)
        how = (
            "judged with a transfer relation fitted without it (leave-one-domain-out over "
            f"{points['domain'].nunique()} domains of {sources})"
        )
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.preset}_k{args.k}" if by == "domain" else f"{args.preset}_k{args.k}_{by}"

    lf = label_free(tasks, data, relation_for)
    lf.to_csv(out / f"label_free_{stem}.csv", index=False)
    roles = (
        lf.groupby("role")
        .agg(pairs=("covered", "size"), coverage=("covered", "mean"), width=("width", "mean"),
             sampling_width=("sampling_width", "mean"), mean_abs_error=("abs_error", "mean"))
        .reset_index()
    )  # fmt: skip
    roles["width_ratio"] = roles["width"] / roles["sampling_width"]
    per_domain = (
        lf.groupby(["domain", "role"])
        .agg(pairs=("covered", "size"), coverage=("covered", "mean"), width=("width", "mean"))
        .reset_index()
        .pivot(index="domain", columns="role", values=["coverage", "width"])
    )
    per_domain.columns = [f"{a} ({b})" for a, b in per_domain.columns.to_list()]  # type: ignore[str-unpack]
    per_domain = per_domain.reset_index()
    group_aee = lf.groupby("group")["abs_error"].mean()

    curve = label_curve(tasks, data, relation_for, repetitions=args.repetitions)
    curve.to_csv(out / f"label_curve_{stem}.csv.gz", index=False)
    aee = (
        curve.groupby(["method", "m", "rep", "group"])["abs_error"].mean()
        .groupby(["method", "m", "rep"]).median()
        .groupby(["method", "m"]).mean().rename("median_aee")
    )  # fmt: skip
    summary = (
        curve.groupby(["method", "m"])
        .agg(coverage=("covered", "mean"), width=("width", "mean"))
        .join(aee)
        .reset_index()
    )
    for role in ("heldout", "in"):
        sub = curve[curve["role"] == role].groupby(["method", "m"])
        summary = summary.merge(
            sub["covered"].mean().rename(f"coverage_{role}").reset_index(), on=["method", "m"]
        )
    alone = summary[summary["method"] == "labels"]
    labels_alone = dict(zip(alone["m"].tolist(), alone["median_aee"].tolist(), strict=True))
    summary["vs_labels_alone"] = [
        a / labels_alone[m] - 1.0
        for m, a in zip(summary["m"].tolist(), summary["median_aee"].tolist(), strict=True)
    ]
    floors = pd.DataFrame(
        {"m": sorted(summary["m"].unique()),
         "floor_median_aee": [floor_sd(tasks, data, int(m)) for m in sorted(summary["m"].unique())]}
    )  # fmt: skip
    summary = summary.merge(floors, on="m")
    summary.to_csv(out / f"label_loop_{stem}.csv", index=False)

    text = [
        f"# Intervals of the `{args.preset}` preset, k = {args.k} ({name}, by {by})",
        "",
        f"Made by `python scripts/interval_report.py` from {args.results}: {len(tasks)} "
        f"training groups of {args.k} domains, every domain estimated; each held-out domain "
        f"{how}.",
        "",
        "## Without labels",
        "",
        md_table(roles),
        "",
        f"Median AEE over groups (label-free): {group_aee.median():.3f}.",
        "",
        "Per domain (coverage over training groups):",
        "",
        md_table(per_domain),
        "",
        "## With labels (m expected labels per domain)",
        "",
        md_table(summary),
        "",
        "`vs_labels_alone`: median AEE relative to labels alone; `floor_median_aee`: what a "
        "design-based estimate with the best lambda could reach at best.",
    ]
    (out / f"{stem}.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
