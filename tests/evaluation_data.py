"""Small real corpora for the evaluation tests, built from the shared Phi-3.5 GSM8K traces.

The Phi-3.5 file is one domain; the tests give its traces pseudo-domains by
response length (quartiles of the number of generated tokens), which shifts
accuracy from about 0.9 (shortest) to 0.75 (longest): a real, label-free shift
like the in-domain protocol of docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

import entropy_sentinel as es
from entropy_sentinel.evaluation import EvalData

__all__ = ["length_domains", "phi35_eval_data"]


def length_domains(batch: es.TraceBatch, n_bins: int = 4) -> es.TraceBatch:
    """``batch`` with a ``domain`` slice: the quartile of each trace's length (``len1``...)."""
    order = np.lexsort((np.arange(len(batch)), batch.lengths))
    bins = np.empty(len(batch), dtype=np.int64)
    bins[order] = np.arange(len(batch)) * n_bins // len(batch)
    slices = tuple({"domain": f"len{int(b) + 1}"} for b in bins)
    return dataclasses.replace(batch, slices=slices)


def phi35_eval_data(path: Path, n: int = 480, seed: int = 0) -> EvalData:
    """``n`` random Phi-3.5 traces with length-quartile domains, as `EvalData`."""
    batch = es.read_traces(path)
    rows = np.sort(np.random.default_rng(seed).choice(len(batch), size=n, replace=False))
    return EvalData.from_batch(length_domains(batch.subset(rows)), by="domain", name="phi35-len")
