"""``report.md`` and its PNG figures for a results folder.

`write_report` reads `EvaluationResults` and writes, next to the tables:

* ``report.md``: the corpus (model, counts, domain accuracies), the protocol and
  the commands that made the results, then per k the median and IQR of AEE and
  rho for every configuration; the side-by-side comparison of all configurations
  on the groups they share (against a reference, by default the paper's
  configuration); per classifier family and per feature set; the named groups
  ("Extremes", "Intermediate") next to the paper's published medians; the best
  and worst training groups per k; every failed task with its error.
* ``figures/aee_rho_by_k.png``: median and IQR of AEE and rho per k;
  ``figures/side_by_side_k{k}.png``: AEE of every configuration on common groups;
  ``figures/by_family.png``, ``figures/by_features.png``: classifier configurations
  grouped; ``figures/scatter_<group>.png``: estimated versus true accuracy per
  domain for each named group.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from entropy_sentinel.evaluation.protocol import Group, named_groups
from entropy_sentinel.evaluation.results import EvaluationResults
from entropy_sentinel.evaluation.summary import (
    common_groups,
    extreme_groups,
    marginal,
    side_by_side,
    succeeded,
    summary_by_k,
)

__all__ = ["PAPER_REFERENCE", "markdown_table", "write_report"]

PAPER_REFERENCE: dict[str, dict[str, float]] = {
    "Extremes": {"aee": 0.081, "spearman": 0.952},
    "Intermediate": {"aee": 0.129, "spearman": 0.891},
    "ATC on max entropy": {"aee": 0.077, "spearman": math.nan},
}
"""The paper's published medians (docs/definitions.md): over nine LLMs, random
forest, calibrated, balanced; and the ATC baseline on max entropy."""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (floats to ``digits`` places).

    >>> print(markdown_table(pd.DataFrame({"a": ["x"], "b": [0.12345]})))
    | a | b |
    |---|---|
    | x | 0.123 |
    """
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v, digits) for v in row) + " |")
    return "\n".join(lines)


def _iqr(median: float, q25: float, q75: float) -> str:
    if math.isnan(median):
        return "–"
    return f"{median:.3f} [{q25:.3f}, {q75:.3f}]"


def _pick_highlights(
    results: EvaluationResults, reference: str, highlight: Sequence[str] | None
) -> list[str]:
    names = results.configurations()
    if highlight:
        return [h for h in highlight if h in names]
    picked = [n for n in (reference, "atc.max_entropy") if n in names]
    ok = results.ok()
    k2 = ok[(ok["k"] == 2) & ~ok["configuration"].isin(picked)]
    if len(k2):
        best = k2.groupby("configuration")["aee"].median().sort_values()
        picked += list(best.index[:2])
    return picked


def write_report(
    results: EvaluationResults,
    output: str | os.PathLike[str],
    *,
    reference: str = "paper",
    highlight: Sequence[str] | None = None,
    title: str | None = None,
    notes: str | None = None,
) -> Path:
    """Write ``report.md`` and ``figures/*.png`` into ``output``; returns the report path.

    Args:
        results: the folder's tables.
        output: where to write (usually the results folder itself).
        reference: the configuration others are compared with (the first one run if
            absent).
        highlight: configurations drawn in the per-k and scatter figures (default:
            the reference, ATC on max entropy and the two best others at k = 2).
        title: the report's title.
        notes: Markdown appended as a last section (e.g. discussion written by hand).
    """
    out = Path(output)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    groups = results.groups
    names = results.configurations()
    if reference not in names and names:
        reference = names[0]
    highlights = _pick_highlights(results, reference, highlight)
    data: dict[str, Any] = results.manifest.get("data", {})
    domain_acc = {d: v["accuracy"] for d, v in data.get("domains", {}).items()}
    named = named_groups(domain_acc)
    lines: list[str] = [f"# {title or 'Evaluation: ' + str(data.get('name', ''))}", ""]
    lines += _corpus_section(results, named)
    if not len(groups):
        lines += ["No results yet."]
        path = out / "report.md"
        path.write_text("\n".join(lines) + "\n")
        return path
    ks = sorted(int(k) for k in groups["k"].unique())

    # ---- per k
    lines += ["## Median and IQR per k", ""]
    lines += [
        "AEE: mean absolute error of the estimated accuracy over all evaluated domains "
        "(the training domains' 20% parts and every held-out domain); held-out: over "
        "the domains outside the training group only; rho: Spearman correlation of "
        "estimated and true accuracies over all domains. Median [25th, 75th "
        "percentile] over the training groups each configuration ran on.",
        "",
    ]
    by_k = summary_by_k(groups, names)
    table = pd.DataFrame(
        {
            "configuration": by_k["configuration"],
            "k": by_k["k"],
            "groups": by_k["n_groups"],
            "failed": by_k["n_failed"],
            "AEE [IQR]": [
                _iqr(m, a, b)
                for m, a, b in zip(by_k["aee"], by_k["aee_q25"], by_k["aee_q75"], strict=True)
            ],
            "AEE held-out": by_k["aee_heldout"],
            "rho [IQR]": [
                _iqr(m, a, b)
                for m, a, b in zip(
                    by_k["spearman"], by_k["spearman_q25"], by_k["spearman_q75"], strict=True
                )
            ],
            "Pearson r": by_k["pearson"],
            "AUROC": by_k["auroc"],
            "Brier": by_k["brier"],
        }
    )
    lines += [markdown_table(table), ""]
    _plot_by_k(by_k, highlights, figures / "aee_rho_by_k.png")
    lines += ["![AEE and rho per k](figures/aee_rho_by_k.png)", ""]

    # ---- side by side
    lines += ["## Side by side on the same groups", ""]
    lines += [
        f"Every configuration on the training groups where all of them succeeded, against "
        f"`{reference}`. win rate: share of groups with a lower AEE than `{reference}` "
        "(ties count half); median diff: median over groups of (AEE - reference AEE). "
        "Wilcoxon p treats groups as independent although they share domains: a rough "
        "guide only.",
        "",
    ]
    for k in ks:
        # Configurations run on every group of this k are compared on all of them; those
        # run on a sample of groups (ablations) in a second table on their own groups.
        ran = groups[groups["k"] == k].groupby("configuration")["group"].nunique()
        most = int(ran.max()) if len(ran) else 0
        tiers = (
            ("", [n for n in names if ran.get(n, 0) == most], f"side_by_side_k{k}.png"),
            (
                ", configurations run on a sample of groups",
                [n for n in names if 0 < ran.get(n, 0) < most],
                f"side_by_side_k{k}_sample.png",
            ),
        )
        for suffix, tier, fig_name in tiers:
            if not tier:
                continue
            sbs = side_by_side(groups, tier, reference=reference, k=k)
            if sbs.empty or sbs["n_groups"].iloc[0] == 0:
                lines += [f"k = {k}: no group where every configuration ran and succeeded.", ""]
                continue
            n_common = int(sbs["n_groups"].iloc[0])
            lines += [f"### k = {k} ({n_common} common groups{suffix})", ""]
            at_k = set(groups.loc[groups["k"] == k, "configuration"]) & set(tier)
            never = sorted(at_k - succeeded(groups, k))
            if never:
                lines += [f"Failed on every group of this k, left out: {', '.join(never)}.", ""]
            lines += [markdown_table(sbs), ""]
            fig = figures / fig_name
            _plot_side_by_side(groups, list(sbs["configuration"]), reference, k, fig)
            lines += [f"![side by side, k = {k}](figures/{fig.name})", ""]

    # ---- per family and feature set
    classifiers = [
        n for n in names if groups.loc[groups["configuration"] == n, "kind"].iloc[0] == "classifier"
    ]
    if len(classifiers) > 1:
        lines += ["## Classifier families and feature sets", ""]
        lines += [
            "All classifier configurations (kind `classifier`) pooled over their common "
            "groups and every k; each row pools the configurations with that value.",
            "",
        ]
        for attribute, fig_name in (("family", "by_family.png"), ("features", "by_features.png")):
            table = marginal(groups, attribute, classifiers)
            lines += [f"### Per {attribute}", "", markdown_table(table), ""]
            _plot_marginal(groups, attribute, classifiers, figures / fig_name)
            lines += [f"![per {attribute}](figures/{fig_name})", ""]
        for attribute in ("calibration", "balance"):
            lines += [f"### Per {attribute}", ""]
            lines += [markdown_table(marginal(groups, attribute, classifiers)), ""]

    # ---- named groups and the paper
    lines += _named_section(results, named, highlights, reference, figures)

    # ---- best and worst
    lines += ["## Best and worst training groups", ""]
    for name in [reference, *[h for h in highlights if h != reference]][:2]:
        lines += [f"### `{name}`", "", markdown_table(extreme_groups(groups, name)), ""]

    # ---- failures
    failed = groups[groups["status"] != "ok"]
    lines += ["## Failed tasks", ""]
    if failed.empty:
        lines += ["None: every (configuration, group) task succeeded.", ""]
    else:
        lines += [
            f"{len(failed)} of {len(groups)} tasks failed; they are rows with status "
            "`failed` in groups.csv, never dropped. By configuration and error:",
            "",
        ]
        counts = (
            failed.assign(error=failed["error"].str.slice(0, 160))
            .groupby(["configuration", "error"])
            .agg(tasks=("group", "size"), example=("group", "first"))
            .reset_index()
        )
        lines += [markdown_table(counts), ""]
    if notes:
        lines += [notes.strip(), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _corpus_section(results: EvaluationResults, named: dict[str, Group]) -> list[str]:
    m = results.manifest
    data: dict[str, Any] = m.get("data", {})
    split = m.get("split", {})
    meta = data.get("metadata") or {}
    models = ", ".join(data.get("models") or []) or "(not recorded in the traces)"
    lines = ["## Corpus and protocol", ""]
    lines += [
        f"* corpus: `{data.get('name')}` (fingerprint `{data.get('fingerprint')}`), domains "
        f"by slice `{data.get('by')}`",
        f"* model: {models}"
        + (
            f" (`{meta['model_file']}`, sha256 `{meta.get('model_sha256', '?')[:12]}…`)"
            if "model_file" in meta
            else ""
        ),
        f"* {data.get('n')} labelled responses, {data.get('n_tokens'):,} generated tokens; "
        f"{data.get('n_unlabelled', 0)} unlabelled left out, {data.get('n_rejected', 0)} "
        f"records rejected; overall accuracy {data.get('accuracy', math.nan):.3f}",
        f"* entropies from: {data.get('source')}"
        + (f" (top-{data.get('k')} logprobs)" if data.get("source") == "logprobs" else ""),
    ]
    extra = {k: v for k, v in meta.items() if k not in ("format", "model_file", "model_sha256")}
    if extra:
        lines.append("* corpus run: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
    lines += [
        f"* split: {split.get('train_fraction', 0.8):.0%} of each training domain for training "
        f"(seed {split.get('seed')}, one fixed split per domain shared by every group and "
        "configuration); the rest of each training domain and every other domain in full "
        "are estimated",
        "",
    ]
    doms = pd.DataFrame(
        [
            {"domain": d, "n": v["n"], "accuracy": v["accuracy"]}
            for d, v in sorted(data.get("domains", {}).items(), key=lambda kv: -kv[1]["accuracy"])
        ]
    )
    if len(doms):
        lines += [markdown_table(doms), ""]
    if named:
        lines += ["Named groups (rule in docs/evaluation.md):", ""]
        for name, group in named.items():
            accs = ", ".join(f"{d} {data['domains'][d]['accuracy']:.3f}" for d in group.domains)
            lines.append(f"* **{name}**: {' + '.join(group.domains)} ({accs})")
        lines.append("")
    groups = results.groups
    counts = groups.groupby(["configuration", "k"]).size().unstack(fill_value=0)
    counts.columns = [f"k={c}" for c in counts.columns]
    counts = counts.reindex(results.configurations()).reset_index()
    descriptions = {
        name: info.get("description", "") for name, info in m.get("configurations", {}).items()
    }
    counts.insert(1, "description", [descriptions.get(n, "") for n in counts["configuration"]])
    lines += ["Configurations and the number of training groups each ran on:", ""]
    lines += [markdown_table(counts), ""]
    lines += ["Commands that produced these results (in order):", "", "```"]
    for run in m.get("runs", []):
        lines.append(shlex.join(run.get("command", [])))
    lines += ["```", ""]
    if results.n_stale:
        lines += [
            f"({results.n_stale} cached results of earlier recipes were ignored.)",
            "",
        ]
    return lines


def _named_section(
    results: EvaluationResults,
    named: dict[str, Group],
    highlights: Sequence[str],
    reference: str,
    figures: Path,
) -> list[str]:
    groups = results.groups
    lines = ["## Named groups and the paper's published medians", ""]
    if not named:
        return [*lines, "The corpus has fewer than two domains: no named groups.", ""]
    rows = []
    drawn: list[str] = []
    for name, group in named.items():
        key = group.key
        for conf in highlights:
            hit = groups[(groups["configuration"] == conf) & (groups["group"] == key)]
            if hit.empty:
                continue
            r = hit.iloc[0]
            paper = PAPER_REFERENCE.get(name, {})
            rows.append(
                {
                    "group": name,
                    "domains": key,
                    "configuration": conf,
                    "status": r["status"],
                    "AEE": r["aee"],
                    "AEE held-out": r["aee_heldout"],
                    "rho": r["spearman"],
                    "paper AEE": paper.get("aee", math.nan) if conf == reference else math.nan,
                    "paper rho": paper.get("spearman", math.nan) if conf == reference else math.nan,
                }
            )
        fig = figures / f"scatter_{name.lower()}.png"
        if _plot_scatter(results.domains, key, highlights, name, fig):
            drawn.append(f"![{name}: estimated versus true accuracy](figures/{fig.name})")
        else:
            drawn.append(f"({name}: no successful configuration to draw.)")
    if rows:
        lines += [markdown_table(pd.DataFrame(rows)), ""]
    for line in drawn:
        lines += [line, ""]
    atc = groups[(groups["configuration"] == "atc.max_entropy") & (groups["status"] == "ok")]
    if len(atc):
        lines += [
            f"ATC on max entropy here: median AEE {atc['aee'].median():.3f} over all "
            f"{len(atc)} groups it ran on (paper: 0.077).",
            "",
        ]
    lines += [
        "The paper's numbers are medians over nine LLMs of the random forest "
        "(calibrated, balanced) on its named groups of real benchmarks; ours are single "
        "groups of one model's corpus. See the notes below for what differs.",
        "",
    ]
    return lines


# ----------------------------------------------------------------- figures
def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _plot_by_k(by_k: pd.DataFrame, names: Sequence[str], path: Path) -> None:
    fig = _figure(10, 4)
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        part = by_k[by_k["configuration"] == name]
        if part.empty:
            continue
        x = part["k"].to_numpy() + (i - (len(names) - 1) / 2) * width
        for ax, col in zip(axes, ("aee", "spearman"), strict=True):
            med = part[col].to_numpy()
            lo = med - part[f"{col}_q25"].to_numpy()
            hi = part[f"{col}_q75"].to_numpy() - med
            ax.errorbar(x, med, yerr=[lo, hi], fmt="o-", capsize=3, label=name)
    axes[0].set_ylabel("AEE (median, IQR)")
    axes[1].set_ylabel("Spearman rho (median, IQR)")
    for ax in axes:
        ax.set_xlabel("k (training domains)")
        ax.set_xticks(sorted(by_k["k"].unique()))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.savefig(path, dpi=120)


def _plot_side_by_side(
    groups: pd.DataFrame, names: Sequence[str], reference: str, k: int, path: Path
) -> None:
    common = common_groups(groups, names, k)
    part = groups[(groups["k"] == k) & groups["group"].isin(common)]
    data = [part.loc[part["configuration"] == n, "aee"].to_numpy() for n in names]
    fig = _figure(8, max(3.0, 0.28 * len(names) + 1.2))
    ax = fig.add_subplot()
    box = ax.boxplot(
        data, orientation="horizontal", tick_labels=list(names), showfliers=True, patch_artist=True
    )
    for patch, name in zip(box["boxes"], names, strict=True):
        patch.set_facecolor("tab:orange" if name == reference else "tab:blue")
        patch.set_alpha(0.5)
    ax.invert_yaxis()
    ax.set_xlabel(f"AEE over {len(common)} common groups (k = {k})")
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=120)


def _plot_marginal(
    groups: pd.DataFrame, attribute: str, configurations: Sequence[str], path: Path
) -> None:
    common = common_groups(groups, configurations, None)
    part = groups[groups["configuration"].isin(configurations) & groups["group"].isin(common)]
    values = sorted(part[attribute].dropna().astype(str).unique())
    data = [part.loc[part[attribute].astype(str) == v, "aee"].to_numpy() for v in values]
    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    if data:
        ax.boxplot(data, tick_labels=values)
    ax.set_ylabel("AEE")
    ax.set_xlabel(attribute)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120)


def _plot_scatter(
    domains: pd.DataFrame, group: str, names: Sequence[str], title: str, path: Path
) -> bool:
    part = domains[(domains["group"] == group) & domains["configuration"].isin(names)]
    if part.empty:
        return False
    fig = _figure(5.5, 5.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    markers = "osD^vP*X"
    for i, name in enumerate(names):
        sub = part[part["configuration"] == name]
        if sub.empty:
            continue
        heldout = sub["role"] == "heldout"
        m = markers[i % len(markers)]
        dots = ax.scatter(
            sub.loc[heldout, "true_accuracy"], sub.loc[heldout, "estimate"], marker=m, label=name
        )
        ax.scatter(
            sub.loc[~heldout, "true_accuracy"],
            sub.loc[~heldout, "estimate"],
            marker=m,
            facecolors="none",
            edgecolors=dots.get_facecolor()[:1],
            linewidths=1.5,
        )
    first = part[
        part["configuration"] == next(n for n in names if (part["configuration"] == n).any())
    ]
    for _, row in first.iterrows():
        ax.annotate(row["domain"], (row["true_accuracy"], row["estimate"]), fontsize=6, alpha=0.7)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("true accuracy")
    ax.set_ylabel("estimated accuracy")
    ax.set_title(
        f"{title}: trained on {group.replace('+', ' + ')}\n"
        "(hollow: the training domains' held-out 20%)",
        fontsize=9,
    )
    ax.legend(fontsize="small", loc="upper left")
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=120)
    return True
