"""Generated traces for tests and benchmarks of the data-lake paths: many traces of
realistic shape (top-k logprobs per step, slices, labels, timestamps) built as
arrays, fast enough for hundreds of thousands of traces.

Each trace draws a difficulty; its steps' top-k distributions are sharper when it is
easy, and its label is drawn with P(correct) falling with its mean entropy, so an
estimator fitted on some of them has something to find in the others.
"""

from __future__ import annotations

import numpy as np

from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["synthetic_traces"]


def synthetic_traces(
    n: int,
    *,
    tokens: int = 200,
    k: int = 20,
    seed: int = 0,
    domains: tuple[str, ...] = ("alpha", "beta", "gamma", "delta"),
    start: float = 1_767_225_600.0,
    span: float = 86_400.0,
    prefix: str = "t",
) -> TraceBatch:
    """``n`` labelled traces of ``tokens`` +- 50% steps with top-``k`` logprobs (nats),
    a ``domain`` slice, a ``k`` stated as asked, and timestamps spread over ``span``
    seconds from ``start`` (epoch seconds)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, tokens // 2), max(2, tokens * 3 // 2), n)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    steps = int(offsets[-1])
    difficulty = rng.beta(2.0, 3.0, n)
    domain_of = rng.integers(0, len(domains), n)
    shift = np.linspace(-0.15, 0.15, len(domains))[domain_of]
    hardness = np.clip(difficulty + shift, 0.01, 0.99)
    per_step = np.repeat(hardness, lengths)
    # logits: a leading token whose lead shrinks with hardness, then a decaying tail
    logits = rng.standard_normal((steps, k)).astype(np.float64) * 1.2
    logits[:, 0] += 9.0 * (1.0 - per_step) * rng.uniform(0.3, 1.0, steps)
    logits -= np.arange(k) * 0.15
    top = -np.sort(-logits, axis=1)
    logprobs = top - np.log(np.exp(top).sum(axis=1, keepdims=True) + 5.0)  # mass outside
    sampled_col = np.minimum(rng.geometric(0.75, steps) - 1, k - 1)
    sampled = logprobs[np.arange(steps), sampled_col]
    p_correct = np.clip(0.95 - 0.9 * hardness, 0.02, 0.98)
    labels = (rng.uniform(size=n) < p_correct).astype(np.float64)
    return TraceBatch(
        ids=tuple(f"{prefix}{i}" for i in range(n)),
        offsets=offsets,
        sampled_logprob=sampled,
        sampled_in_topk=np.ones(steps, dtype=bool),
        topk_logprobs=np.round(logprobs.astype(np.float32), 6).astype(np.float64),
        token_entropy=np.full(steps, np.nan),
        slices=tuple({"domain": domains[d]} for d in domain_of),
        labels=labels,
        meta=tuple({} for _ in range(n)),
        requested_k=np.full(n, k, dtype=np.int64),
        timestamps=start + np.sort(rng.uniform(0.0, span, n)),
    )
