"""Small real corpora for the evaluation tests, cut from the committed SmolLM2 corpus.

Four of its domains, far apart in accuracy (about 0.71, 0.56, 0.27 and 0.19), a seeded
sample of each: big enough for every configuration to fit on a group's 80% parts,
small enough to run the protocol in seconds. Nothing here needs ``../shared``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import entropy_sentinel as es
from entropy_sentinel.evaluation import Configuration, EvalData
from tests.estimator_data import corpus, entropy_only, entropy_records

__all__ = [
    "DOMAINS",
    "SENTINEL_LR",
    "corpus_eval_data",
    "write_entropy_jsonl",
]

DOMAINS = ("mmlu_stem", "synth_add_10", "synth_add_1d", "synth_mul_1d")

SENTINEL_LR = Configuration(
    "sentinel-lr",
    "preset",
    {"preset": "sentinel", "family": "lr"},
    "the sentinel preset with logistic regression (fast)",
)
"""The product's preset as the harness builds it, with the fast family."""


def _sample(n_per_domain: int, seed: int) -> es.TraceBatch:
    batch = corpus()
    domains = batch.slice_values("domain")
    rng = np.random.default_rng(seed)
    rows = [rng.choice(np.flatnonzero(domains == d), n_per_domain, replace=False) for d in DOMAINS]
    return batch.subset(np.sort(np.concatenate(rows)))


def corpus_eval_data(n_per_domain: int = 60, seed: int = 0, *, entropies: bool = False) -> EvalData:
    """``n_per_domain`` random traces of each of `DOMAINS`, as `EvalData` (with
    ``entropies``: as records of per-token entropies only, no logprobs)."""
    batch = _sample(n_per_domain, seed)
    if entropies:
        batch = entropy_only(batch)
    name = "smollm2-4" + ("-entropies" if entropies else "")
    return EvalData.from_batch(batch, by="domain", name=name)


def write_entropy_jsonl(path: Path, n_per_domain: int = 60, seed: int = 0) -> Path:
    """The sample of `corpus_eval_data` as a JSONL trace file of per-token entropies,
    plus one unlabelled record (left out by the evaluation, and counted)."""
    records = entropy_records(_sample(n_per_domain, seed))
    records.append({"id": "unlabelled", "slice": {"domain": DOMAINS[0]}, "token_entropy": [0.1]})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path
