"""The human-readable model card: Markdown and a reliability diagram.

Both render the card dict of a fitted estimator (``estimator.card_``, or
`read_card` of an artifact); nothing is recomputed. The reliability bins are
equal-count bins of the cross-calibrated out-of-fold probabilities, so the
diagram shows how the estimator behaves on responses it did not see.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from entropy_sentinel.estimator.plotting import axes_for, finish

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["card_markdown", "plot_reliability"]


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return "—" if value is None else str(value)


def card_markdown(card: dict[str, Any], *, title: str = "Correctness estimator") -> str:
    """The model card as Markdown (parameters, features, training data, metrics, versions)."""
    p, f, t, m, tu = (
        card["params"],
        card["features"],
        card["training"],
        card["metrics"],
        card["tuning"],
    )
    lines = [
        f"# {title}",
        "",
        "Predicts P(correct) of an LLM response from the entropy of its decoding; a slice's",
        "estimated accuracy is the mean P over its responses (entropy-sentinel).",
        "",
        "## Model",
        "",
        "| parameter | value |",
        "|---|---|",
        f"| family | `{p['family']}` |",
        f"| calibration | `{p['calibration']}` |",
        f"| class balancing | {p['balance']} |",
        f"| blended with | {', '.join(f'`{m}`' for m in p.get('blend', ())) or 'nothing'} |",
        f"| cross-validation folds | {tu['n_splits']} (requested {p['cv']}) |",
        f"| best grid setting | `{tu['best_params']}` |",
        f"| fits that did not converge | {tu['fits_not_converged']} |",
        "",
        "## Features",
        "",
        f"* feature set: `{f['set']}` ({f['n_features']} features)",
        f"* names: {', '.join(f'`{n}`' for n in f['names']) if f['names'] else '—'}",
        f"* entropy mode: `{f['entropy_mode']}`; entropies from: {_fmt(f['source'])}"
        + (f", top-{f['k']}" if f.get("source") == "logprobs" else ""),
        "",
        "## Training data",
        "",
        f"* {t['n']} labelled responses, {t['n_correct']} correct (accuracy {t['accuracy']:.4f})",
    ]
    if t.get("n_unlabelled_ignored"):
        lines.append(f"* {t['n_unlabelled_ignored']} unlabelled responses were not used")
    if t.get("slices"):
        lines += [
            "",
            f"| {t['slice_dimension']} | n | accuracy |",
            "|---|---:|---:|",
            *(
                f"| {name} | {s['n']} | {s['accuracy']:.4f} |"
                for name, s in sorted(t["slices"].items())
            ),
        ]
    lines += [
        "",
        "## Cross-validated metrics",
        "",
        "Out-of-fold predictions; each fold calibrated by a map fitted on the other folds.",
        "",
        "| metric | value |",
        "|---|---:|",
        f"| AUROC (classifier scores) | {m['cv_auroc']:.4f} |",
        f"| AUROC (calibrated probabilities) | {m['cv_auroc_calibrated']:.4f} |",
        f"| Brier score | {m['brier']:.4f} |",
        f"| Brier score before calibration | {m['brier_uncalibrated']:.4f} |",
        f"| expected calibration error (10 equal-count bins) | {m['ece']:.4f} |",
        f"| mean P vs accuracy | {m['mean_p']:.4f} vs {t['accuracy']:.4f} |",
        f"| model_sd (estimator error in slice intervals) | {m['model_sd']:.4f} |",
        "",
        "`model_sd` holds for slices drawn like the training data; slices from other",
        "domains can be off by more (see docs/estimator.md).",
        "",
        "## Reliability",
        "",
        "| bin | n | mean P | accuracy |",
        "|---:|---:|---:|---:|",
        *(
            f"| {i + 1} | {b['n']} | {b['mean_p']:.4f} | {b['accuracy']:.4f} |"
            for i, b in enumerate(m["reliability"])
        ),
        "",
        "## Versions",
        "",
        *(f"* {k}: {v}" for k, v in sorted(card["versions"].items())),
        "",
    ]
    return "\n".join(lines)


def plot_reliability(card: dict[str, Any], target: str | os.PathLike[str] | Axes) -> Axes:
    """Reliability diagram (mean P against observed accuracy per bin) into an Axes or a file."""
    ax, fig = axes_for(target, (4.8, 4.8))
    bins = card["metrics"]["reliability"]
    mean_p = [b["mean_p"] for b in bins]
    acc = [b["accuracy"] for b in bins]
    ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    ax.plot(mean_p, acc, "o-", color="tab:blue", label="estimator (out-of-fold)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted P(correct)")
    ax.set_ylabel("observed accuracy")
    metrics = card["metrics"]
    ax.set_title(
        f"AUROC {metrics['cv_auroc']:.3f} · Brier {metrics['brier']:.3f} · "
        f"ECE {metrics['ece']:.3f}",
        fontsize="medium",
    )
    ax.legend(loc="upper left", fontsize="small")
    finish(fig, target)
    return ax
