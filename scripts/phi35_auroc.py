"""Does the default estimator rank responses at least as well as the best single statistic?

On the Phi-3.5 GSM8K traces (../shared/data/phi35-gsm8k: 1,319 responses, per-token
entropies only), over seeded random halves: the ``sentinel-entropy`` preset (the default
of ``sentinel fit`` for entropy-only traces) is fitted on one half and scores the other;
its AUROC is compared with that of each entropy-profile feature alone (higher entropy =
more likely wrong) on the same scored half, and with the paper's configuration.

    python scripts/phi35_auroc.py [--halves 10] [--json out.json]

Prints the mean AUROC (and its standard error over halves) of each, the best single
feature, and the families the preset chose.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import entropy_sentinel as es
from entropy_sentinel.estimator import preset

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "phi35-gsm8k" / "traces.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halves", type=int, default=10)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    batch = es.read_traces(args.data)
    profile = es.entropy_profile(batch)
    y = batch.labels
    rows: dict[str, list[float]] = {name: [] for name in es.FEATURE_NAMES}
    rows["sentinel-entropy"], rows["paper"] = [], []
    families: Counter[str] = Counter()
    for half in range(args.halves):
        rng = np.random.default_rng(half)
        fit = np.zeros(len(batch), dtype=bool)
        fit[rng.choice(len(batch), len(batch) // 2, replace=False)] = True
        scored = ~fit
        for j, name in enumerate(es.FEATURE_NAMES):
            rows[name].append(float(roc_auc_score(y[scored], -profile[scored, j])))
        for name in ("sentinel-entropy", "paper"):
            est = preset(name, random_state=half).fit_traces(batch.subset(fit))
            p = est.predict_traces(batch.subset(scored))
            rows[name].append(float(roc_auc_score(y[scored], p)))
            if name == "sentinel-entropy":
                families[est.classifier_.family_] += 1
        print(f"half {half}: sentinel-entropy {rows['sentinel-entropy'][-1]:.3f}, "
              f"paper {rows['paper'][-1]:.3f}", flush=True)  # fmt: skip
    mean = {k: float(np.mean(v)) for k, v in rows.items()}
    se = {k: float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
          for k, v in rows.items()}  # fmt: skip
    best = max(es.FEATURE_NAMES, key=lambda k: mean[k])
    print(f"\nmean AUROC over {args.halves} random halves (standard error):")
    for k in sorted(mean, key=lambda k: -mean[k]):
        print(f"  {k:18s} {mean[k]:.4f} ({se[k]:.4f})")
    margin = mean["sentinel-entropy"] - mean[best]
    print(
        f"\nbest single feature: {best} {mean[best]:.4f}; sentinel-entropy - best = {margin:+.4f}"
    )
    print(f"families chosen by the preset: {dict(families)}")
    if args.json:
        args.json.write_text(json.dumps(
            {"halves": args.halves, "mean": mean, "se": se, "best_single": best,
             "margin": margin, "families": dict(families)}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
