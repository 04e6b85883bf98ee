"""Feature pipeline speed on array input, side by side with the per-trace reference.

    .venv/bin/python benchmarks/bench_features.py [--traces 10000] [--repeats 5]

Builds a realistic batch (default 10,000 traces of 200-1,000 tokens, 20
alternatives per step: ~6 million tokens), then times in the same run:

* ``entropy_profile(batch)`` (float32 per-step probabilities, the default),
* ``entropy_profile(batch, precision="float64")``,
* ``entropy_profile`` + ``baseline_scores`` sharing one `StepStats`,
* the per-trace reference of ``tests/reference.py`` (plain numpy/scipy, one trace at
  a time), on a sample of traces, extrapolated per token,

and prints tokens per second of CPU time (median of ``--repeats`` runs) and the ratios.
numpy runs single-threaded here (BLAS limited to one thread), so this is one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import reference as ref

import entropy_sentinel as es


def make_batch(n_traces: int, k: int = 20, seed: int = 0) -> es.TraceBatch:
    """Traces of 200-1,000 tokens with top-k logprobs shaped like real ones: a softmax
    over k logits with a random temperature, the top-k carrying 50-100% of the mass,
    the sampled token usually the first alternative and sometimes outside the set."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(200, 1001, size=n_traces)
    total = int(lengths.sum())
    topk = np.empty((total, k))
    sampled = np.empty(total)
    in_topk = np.empty(total, dtype=bool)
    chunk = 500_000
    for start in range(0, total, chunk):
        stop = min(start + chunk, total)
        m = stop - start
        logits = rng.normal(size=(m, k)) * rng.uniform(0.3, 8.0, size=(m, 1))
        logits.sort(axis=1)
        logits = logits[:, ::-1]
        mass = rng.uniform(0.5, 1.0, size=(m, 1))
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)) + np.log(mass)
        topk[start:stop] = logp
        outside = rng.random(m) < 0.02
        sampled[start:stop] = np.where(outside, np.log(rng.uniform(1e-4, 1e-2, m)), logp[:, 0])
        in_topk[start:stop] = ~outside
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return es.TraceBatch.from_arrays(
        offsets, sampled_logprob=sampled, topk_logprobs=topk, sampled_in_topk=in_topk
    )


def reference_features(batch: es.TraceBatch, indices: np.ndarray) -> np.ndarray:
    out = []
    for i in indices:
        a, b = batch.offsets[i], batch.offsets[i + 1]
        h = ref.step_entropies(
            batch.sampled_logprob[a:b],
            batch.sampled_in_topk[a:b],
            batch.topk_logprobs[a:b],
            "topk",
        )
        out.append(ref.profile(h))
    return np.array(out)


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median CPU seconds of this process over ``repeats`` calls (single-threaded work:
    CPU time is what the code costs, less disturbed by other jobs than wall time)."""
    runs = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        runs.append(time.process_time() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--reference-traces",
        type=int,
        default=1_000,
        help="traces timed with the slow reference (extrapolated per token)",
    )
    args = parser.parse_args()

    batch = make_batch(args.traces)
    n_tokens = batch.n_steps
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, python {platform.python_version()}"
    )
    print(f"batch: {len(batch):,} traces, {n_tokens:,} tokens, k={batch.k}")

    fast32 = timed(lambda: es.entropy_profile(batch), args.repeats)
    fast64 = timed(lambda: es.entropy_profile(batch, precision="float64"), args.repeats)

    def both() -> None:
        stats = es.StepStats(batch).share_passes()  # one pass over the top-k matrix
        es.entropy_profile(stats)
        es.baseline_scores(stats)

    fast_all = timed(both, args.repeats)

    sample = np.random.default_rng(1).choice(len(batch), args.reference_traces, replace=False)
    sample_tokens = int(batch.lengths[sample].sum())
    ref_time = timed(lambda: reference_features(batch, sample), max(1, args.repeats // 2))
    ref_rate = sample_tokens / ref_time

    check = es.entropy_profile(batch.subset(sample), precision="float64")
    np.testing.assert_allclose(check, reference_features(batch, sample), rtol=1e-9, atol=1e-8)

    rows = [
        ("entropy_profile, float32 (default)", n_tokens / fast32),
        ("entropy_profile, float64", n_tokens / fast64),
        ("profile + 12 baseline scores, float32", n_tokens / fast_all),
        (f"per-trace reference ({args.reference_traces:,} traces)", ref_rate),
    ]
    print(f"\n{'pipeline':<44}{'tokens/s':>14}{'x reference':>14}")
    for name, rate in rows:
        print(f"{name:<44}{rate:>14,.0f}{rate / ref_rate:>14.1f}")
    print(
        f"\n(medians of {args.repeats} runs; reference: median of "
        f"{max(1, args.repeats // 2)}; results checked equal to 1e-9)"
    )


if __name__ == "__main__":
    main()
