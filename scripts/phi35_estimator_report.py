"""Measure the correctness estimator on the real Phi-3.5 GSM8K traces and print a report.

Data: ../shared/data/phi35-gsm8k/traces.jsonl.gz (1,319 responses of Phi-3.5-mini on the
GSM8K test set, full-vocabulary entropies per token, accuracy 0.842). One domain, so
slices are random subsets (the in-domain check the estimator issue asks for).

Sections (all seeded, so a rerun prints the same numbers up to BLAS rounding):

1. AUROC of single entropy features, no fitting (higher entropy = more likely wrong).
2. Nested cross-validation of estimator configurations: outer stratified 5-fold (repeated),
   each outer training part tuned and calibrated by the estimator's own inner CV; AUROC,
   Brier and expected calibration error of the held-out P(correct); fit time.
3. Slice intervals: the default estimator (random forest, isotonic, balanced, 11-D) fitted
   on a random half, random slices of the other half at several sizes; coverage of the 95%
   intervals with and without the model_sd term, errors |estimate - truth|, widths; the
   label-corrected (PPI) estimate with 10% of each slice labelled; ATC (max and mean
   entropy) and DoC (raw classifier P) on the same slices.
4. Whole held-out half: estimation error of the estimator and of the baselines, and the
   held-out Brier score with and without calibration.

Usage:
    .venv/bin/python scripts/phi35_estimator_report.py [--halves 40] [--repeats 2]
        [--slices 25] [--jobs 1] [--configs 7] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

import entropy_sentinel as es
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.estimator.calibration import brier_score, expected_calibration_error

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "phi35-gsm8k" / "traces.jsonl.gz"
FloatArray = npt.NDArray[np.float64]

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("rf · isotonic · balanced · profile (11-D, default)", {"family": "rf"}),
    ("rf · isotonic · balanced · profile10 (paper)", {"family": "rf", "features": "profile10"}),
    ("rf · isotonic · balanced · sea", {"family": "rf", "features": "sea"}),
    ("lr · isotonic · balanced · profile", {"family": "lr"}),
    ("hgb · isotonic · balanced · profile", {"family": "hgb"}),
    ("mlp · isotonic · balanced · profile", {"family": "mlp"}),
    ("rf · none · unbalanced · profile", {"family": "rf", "calibration": None, "balance": False}),
]
SIZES = (10, 25, 50, 100, 200, 400)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halves", type=int, default=40, help="random train/test halves")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the outer 5-fold CV")
    parser.add_argument("--slices", type=int, default=25, help="random slices per size and half")
    parser.add_argument("--jobs", type=int, default=1, help="n_jobs of each estimator fit")
    parser.add_argument(
        "--configs", type=int, default=len(CONFIGS), help="run the first N configurations of 2."
    )
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA} not found (../shared/data is not checked out)")
    started = time.perf_counter()
    batch = es.read_traces(DATA)
    X = es.CorrectnessEstimator().featurize(batch)  # 11-D profile; feature subsets below
    y = batch.labels
    print("# Correctness estimator on Phi-3.5-mini / GSM8K\n")
    print(f"{len(batch)} responses, accuracy {y.mean():.4f}, {batch.n_steps:,} tokens.\n")
    results: dict[str, Any] = {"n": len(batch), "accuracy": float(y.mean())}
    results["single_features"] = single_feature_auroc(X, y)
    results["nested_cv"] = nested_cv(batch, y, args.repeats, args.jobs, CONFIGS[: args.configs])
    results["slices"] = slice_study(batch, X, y, args.halves, args.slices, args.jobs)
    minutes = (time.perf_counter() - started) / 60
    print(f"\nTotal time {minutes:.1f} min.")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


# ------------------------------------------------------------------------- 1
def single_feature_auroc(X: FloatArray, y: FloatArray) -> dict[str, float]:
    print("## 1. Single features, no fitting\n")
    print("AUROC for predicting a correct answer from minus the feature (higher entropy =")
    print("more likely wrong); below 0.5 means the feature points the other way.\n")
    print("| feature | AUROC |\n|---|---:|")
    out = {}
    for j, name in enumerate(es.FEATURE_NAMES):
        out[name] = float(roc_auc_score(y, -X[:, j]))
        print(f"| `{name}` | {out[name]:.4f} |")
    print()
    return out


# ------------------------------------------------------------------------- 2
def nested_cv(
    batch: es.TraceBatch,
    y: FloatArray,
    repeats: int,
    jobs: int,
    configs: list[tuple[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    print(f"## 2. Nested cross-validation (outer stratified 5-fold x {repeats})\n")
    print("Each outer training part is tuned (grid, inner 5-fold CV on ROC-AUC) and calibrated")
    print("by the estimator itself; the numbers are on the outer held-out folds.\n")
    print("| configuration | AUROC | Brier | ECE | mean P - accuracy | fit s |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for label, params in configs:
        aucs, briers, eces, gaps, seconds = [], [], [], [], []
        for rep in range(repeats):
            outer = StratifiedKFold(5, shuffle=True, random_state=100 + rep)
            p = np.empty_like(y)
            for k, (train, test) in enumerate(outer.split(y, y)):
                est = es.CorrectnessEstimator(**params, n_jobs=jobs, random_state=10 * rep + k)
                t0 = time.perf_counter()
                est.fit_traces(batch.subset(train))
                seconds.append(time.perf_counter() - t0)
                p[test] = est.predict_traces(batch.subset(test))
            aucs.append(roc_auc_score(y, p))
            briers.append(brier_score(y, p))
            eces.append(expected_calibration_error(y, p))
            gaps.append(float(p.mean() - y.mean()))
        row = {
            "configuration": label,
            "auroc": float(np.mean(aucs)),
            "brier": float(np.mean(briers)),
            "ece": float(np.mean(eces)),
            "mean_p_minus_accuracy": float(np.mean(gaps)),
            "fit_seconds": float(np.mean(seconds)),
        }
        rows.append(row)
        print(
            f"| {label} | {row['auroc']:.4f} | {row['brier']:.4f} | {row['ece']:.4f} | "
            f"{row['mean_p_minus_accuracy']:+.4f} | {row['fit_seconds']:.1f} |",
            flush=True,
        )
    print(f"\nFits on {int(len(y) * 0.8)} rows, n_jobs={jobs}, on a shared 2-core machine.\n")
    return rows


# ------------------------------------------------------------------------- 3, 4
@dataclass
class Tally:
    """Per slice size: coverage flags, signed errors and widths of one method."""

    covered: dict[int, list[bool]] = field(default_factory=dict)
    errors: dict[int, list[float]] = field(default_factory=dict)
    widths: dict[int, list[float]] = field(default_factory=dict)

    def add(
        self, size: int, error: float, covered: bool | None = None, width: float = math.nan
    ) -> None:
        self.errors.setdefault(size, []).append(error)
        if covered is not None:
            self.covered.setdefault(size, []).append(covered)
            self.widths.setdefault(size, []).append(width)

    def coverage(self, size: int) -> float:
        return float(np.mean(self.covered[size]))

    def mae(self, size: int) -> float:
        return float(np.mean(np.abs(self.errors[size])))


def slice_study(
    batch: es.TraceBatch, X: FloatArray, y: FloatArray, halves: int, per_size: int, jobs: int
) -> dict[str, Any]:
    print(f"## 3. Slice intervals ({halves} random halves)\n")
    print("The default estimator (random forest, isotonic, balanced, 11-D profile) is fitted on")
    print(f"a random half (660 responses); {per_size} random slices per size are drawn from the")
    print("other half (659), plus the whole half. Nominal coverage 0.95.\n")
    rng = np.random.default_rng(2026)
    scores = es.baseline_scores(batch, ("max_entropy", "mean_entropy"))
    conf = {name: es.confidence_of(name, v) for name, v in scores.items()}
    tallies = {
        name: Tally()
        for name in (
            "estimator",
            "sampling only",
            "PPI (10% labelled)",
            "ATC max entropy",
            "ATC mean entropy",
            "DoC raw P",
        )
    }
    whole = 659
    sizes = (*SIZES, whole)
    model_sds, brier_cal, brier_raw, fit_s = [], [], [], []
    for half in range(halves):
        perm = rng.permutation(len(y))
        train, test = perm[:660], perm[660:]
        est = es.CorrectnessEstimator(n_jobs=jobs, random_state=half)
        t0 = time.perf_counter()
        est.fit_traces(batch.subset(train))
        fit_s.append(time.perf_counter() - t0)
        model_sds.append(est.model_sd_)
        p = est.predict_traces(batch.subset(test))
        raw = est.model_.predict_proba(X[test])[:, 1]
        brier_cal.append(brier_score(y[test], p))
        brier_raw.append(brier_score(y[test], raw))
        atc = {name: es.ATC().fit(c[train], y[train]) for name, c in conf.items()}
        doc = es.DoC().fit(est.oof_scores_, y[train])  # source: honest out-of-fold raw P
        yt = y[test]
        for size in sizes:
            for _ in range(per_size if size < whole else 1):
                idx = (
                    rng.choice(len(test), size, replace=False) if size < whole else np.arange(whole)
                )
                truth = float(yt[idx].mean())
                stats = SliceStats.from_arrays(p[idx], yt[idx])
                for name, sd in (("estimator", est.model_sd_), ("sampling only", 0.0)):
                    iv = stats.interval(0.95, sd)
                    tallies[name].add(
                        size, iv.estimate - truth, iv.contains(truth), iv.upper - iv.lower
                    )
                labels = np.full(size, np.nan)
                m = max(2, size // 10)
                labels[:m] = yt[idx[:m]]
                ppi = es.label_corrected_accuracy(p[idx], labels)
                tallies["PPI (10% labelled)"].add(
                    size, ppi.estimate - truth, ppi.contains(truth), ppi.upper - ppi.lower
                )
                for name, c in conf.items():
                    iv = atc[name].interval(c[test][idx])
                    key = "ATC max entropy" if name == "max_entropy" else "ATC mean entropy"
                    tallies[key].add(
                        size, iv.estimate - truth, iv.contains(truth), iv.upper - iv.lower
                    )
                iv = doc.interval(raw[idx])
                tallies["DoC raw P"].add(
                    size, iv.estimate - truth, iv.contains(truth), iv.upper - iv.lower
                )
        if (half + 1) % 10 == 0:
            print(f"<!-- {half + 1}/{halves} halves done -->", flush=True)
    print(
        f"model_sd: mean {np.mean(model_sds):.4f} "
        f"(range {min(model_sds):.4f}-{max(model_sds):.4f});"
    )
    print(
        f"fit time of the default estimator on 660 rows: {np.mean(fit_s):.1f} s (n_jobs={jobs}).\n"
    )
    header = " | ".join(f"n={s}" if s < whole else f"all {whole}" for s in sizes)
    print("Coverage of the 95% intervals:\n")
    print(f"| method | {header} |\n|---|" + "---:|" * len(sizes))
    for name, t in tallies.items():
        print(f"| {name} | " + " | ".join(f"{t.coverage(s):.3f}" for s in sizes) + " |")
    print("\nMean absolute error |estimate - true accuracy|:\n")
    print(f"| method | {header} |\n|---|" + "---:|" * len(sizes))
    for name, t in tallies.items():
        if name == "sampling only":
            continue
        print(f"| {name} | " + " | ".join(f"{t.mae(s):.4f}" for s in sizes) + " |")
    print("\nMean interval width (estimator, 95%):\n")
    print(f"| | {header} |\n|---|" + "---:|" * len(sizes))
    est_t = tallies["estimator"]
    print("| width | " + " | ".join(f"{np.mean(est_t.widths[s]):.4f}" for s in sizes) + " |")
    errs = np.array(est_t.errors[whole])
    print(f"\n## 4. Whole held-out half ({halves} halves)\n")
    print(
        f"Estimator: mean |error| {np.mean(np.abs(errs)):.4f}, "
        f"median {np.median(np.abs(errs)):.4f}, "
        f"max {np.max(np.abs(errs)):.4f}, mean signed {np.mean(errs):+.4f}."
    )
    for name in ("ATC max entropy", "ATC mean entropy", "DoC raw P"):
        e = np.array(tallies[name].errors[whole])
        print(f"{name}: mean |error| {np.mean(np.abs(e)):.4f}, max {np.max(np.abs(e)):.4f}.")
    bc, br = np.array(brier_cal), np.array(brier_raw)
    print(
        f"\nHeld-out Brier score: calibrated {bc.mean():.4f}, the same forest's raw (class-"
        f"weighted) probabilities {br.mean():.4f}; calibration worse in {int((bc > br).sum())} "
        f"of {halves} halves."
    )
    return {
        "model_sd_mean": float(np.mean(model_sds)),
        "fit_seconds": float(np.mean(fit_s)),
        "coverage": {n: {str(s): t.coverage(s) for s in sizes} for n, t in tallies.items()},
        "mae": {n: {str(s): t.mae(s) for s in sizes} for n, t in tallies.items()},
        "brier_calibrated": float(bc.mean()),
        "brier_raw": float(br.mean()),
    }


if __name__ == "__main__":
    main()
