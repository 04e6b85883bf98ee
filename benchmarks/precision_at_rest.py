"""How much float32 at rest (the Parquet trace format) changes logprobs, features and P.

For each JSONL trace file given (default: the recorded SmolLM2 fixtures and, when
present, ../shared/data/phi35-gsm8k), reads the traces as JSON gives them (float64),
rounds every logprob and entropy to float32 as `sentinel convert` stores them, and
reports: how many values float32 holds exactly, the largest relative change of a
logprob, and the largest change of the 11 features and the baseline scores computed
in float64 from each. Run:

    .venv/bin/python benchmarks/precision_at_rest.py [FILE.jsonl ...]
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

import entropy_sentinel as es
from entropy_sentinel.table import feature_frame

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = [
    REPO / "tests" / "fixtures" / "smollm2" / "traces.jsonl",
    REPO.parent / "shared" / "data" / "phi35-gsm8k" / "traces.jsonl.gz",
]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(a), a.astype(np.float32).astype(np.float64), a)


def report(path: Path) -> None:
    batch = es.read_traces(path, errors="collect")
    stored = dataclasses.replace(
        batch,
        sampled_logprob=_f32(batch.sampled_logprob),
        topk_logprobs=_f32(batch.topk_logprobs),
        token_entropy=_f32(batch.token_entropy),
    )
    finite_topk = batch.topk_logprobs[np.isfinite(batch.topk_logprobs)]
    values = np.concatenate([batch.sampled_logprob, finite_topk, batch.token_entropy])
    values = values[np.isfinite(values)]
    rounded = _f32(values)
    exact = float(np.mean(rounded == values))
    nonzero = values != 0
    rel = np.abs(rounded[nonzero] - values[nonzero]) / np.abs(values[nonzero])
    a = feature_frame(batch, precision="float64")
    b = feature_frame(stored, precision="float64")
    numeric = [c for c in a.columns if a[c].dtype.kind == "f" and a[c].notna().any()]
    diff = np.nanmax(np.abs(a[numeric].to_numpy() - b[numeric].to_numpy()), axis=0)
    scale = np.nanmax(np.abs(a[numeric].to_numpy()), axis=0)
    worst = int(np.nanargmax(diff / np.where(scale > 0, scale, 1)))
    print(f"{path}: {len(batch)} traces, {values.size:,} logprob/entropy values")
    print(f"  float32 holds {exact:.2%} of them exactly; largest relative change {rel.max():.2e}")
    print(
        f"  features and scores (float64): largest change {diff.max():.2e} "
        f"(relative to the column's scale: {diff[worst] / max(scale[worst], 1e-300):.2e}, "
        f"{numeric[worst]})"
    )


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [p for p in DEFAULTS if p.exists()]
    for path in paths:
        report(path)


if __name__ == "__main__":
    main()
