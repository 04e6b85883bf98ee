"""Shared, read-only test data for the estimator tests, from the committed SmolLM2 corpus.

Everything here is computed once per test session (`functools.cache`) and shared by
the test modules: callers must not modify what they get (clone or copy first).

* `corpus`: the committed corpus (1,950 graded SmolLM2-135M answers, 13 domains of 150,
  top-20 logprobs);
* `halves`: a seeded random half of it for training, the other half to estimate (every
  domain on both sides);
* `sentinel_lr`: ``preset("sentinel", family="lr")`` fitted on the training half (every
  domain seen in training);
* `two_domain_sentinel`: the same preset fitted on two domains only (the others unseen);
* `entropy_records` / `entropy_only`: the same traces as records that carry only their
  per-token entropies (``token_entropy``, nats), as full-vocabulary traces would;
* `RELATION`: a transfer relation with finite half-widths (the shipped ones are the
  honest worst case, 1, until measured), to see the transfer term at work.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

import entropy_sentinel as es
from entropy_sentinel.estimator import SentinelEstimator, preset
from entropy_sentinel.estimator.transfer import TransferModel
from tests.conftest import load_corpus_batch

__all__ = [
    "RELATION",
    "TWO_DOMAINS",
    "corpus",
    "entropy_only",
    "entropy_records",
    "halves",
    "sentinel_lr",
    "two_domain_sentinel",
]

TWO_DOMAINS = ("gsm8k", "synth_mul_1d")
"""The training domains of `two_domain_sentinel`: the hardest and the easiest (accuracy
0.02 and 0.71), as far apart as two domains of the corpus get."""


RELATION = TransferModel(
    name="test",
    edges=(0.6, 0.8, 0.95),
    levels=(0.5, 0.9, 0.95),
    half_widths=((0.02, 0.05, 0.1), (0.04, 0.1, 0.2), (0.05, 0.12, 0.3)),
    n_points=30,
    n_domains=10,
    source="hand-made for the tests",
)


def corpus() -> es.TraceBatch:
    batch = load_corpus_batch()
    assert isinstance(batch, es.TraceBatch)
    return batch


@cache
def halves(seed: int = 0) -> tuple[es.TraceBatch, es.TraceBatch]:
    """A seeded random half of the corpus (training) and the other half."""
    batch = corpus()
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(len(batch), len(batch) // 2, replace=False))
    rest = np.setdiff1d(np.arange(len(batch)), train)
    return batch.subset(train), batch.subset(rest)


@cache
def sentinel_lr() -> SentinelEstimator:
    """The ``sentinel`` preset with logistic regression, fitted on the training half."""
    return preset("sentinel", family="lr", random_state=0).fit_traces(halves()[0])


@cache
def two_domain_sentinel() -> SentinelEstimator:
    """The ``sentinel`` preset (lr) fitted on the training half of `TWO_DOMAINS` only."""
    train = halves()[0]
    mask = np.isin(train.slice_values("domain"), TWO_DOMAINS)
    return preset("sentinel", family="lr", random_state=0).fit_traces(train.subset(mask))


def entropy_records(batch: es.TraceBatch) -> list[dict[str, Any]]:
    """``batch`` as trace records carrying only their per-token entropies (top-k, nats),
    with their id, slice and label."""
    entropy = es.StepStats(batch).entropy
    records = []
    for i in range(len(batch)):
        record: dict[str, Any] = {
            "id": batch.ids[i],
            "slice": dict(batch.slices[i]),
            "token_entropy": entropy[batch.offsets[i] : batch.offsets[i + 1]].tolist(),
        }
        if not np.isnan(batch.labels[i]):
            record["correct"] = bool(batch.labels[i] == 1.0)
        records.append(record)
    return records


def entropy_only(batch: es.TraceBatch) -> es.TraceBatch:
    """``batch`` read back from `entropy_records`: precomputed entropies, no logprobs."""
    return es.read_traces(entropy_records(batch))
