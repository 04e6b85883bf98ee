"""Three estimators fitted on disjoint domains of the committed SmolLM2 corpus, each
recorded for its own model name, and corpus traces as ingestable trace records.

The estimators stand for three generating models whose traces differ: ``smol-a`` is
fitted on one-digit arithmetic, ``smol-b`` on word problems, ``smol-c`` on long
arithmetic. Each gives a different P(correct) for the same trace, so a trace scored by
the wrong estimator shows. Records re-express corpus traces in the OpenAI chat
``logprobs.content`` shape (token strings stand in for the corpus' token identities:
the sampled token is the alternative it equals, or one of its own), which parses back
to exactly the corpus' arrays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_sentinel import CorrectnessEstimator, TraceBatch
from entropy_sentinel.model_names import record_model
from tests.conftest import load_corpus_batch

__all__ = ["DOMAINS", "corpus", "corpus_models", "records_of", "traffic_indices"]

DOMAINS: dict[str, tuple[str, ...]] = {
    "smol-a": ("synth_add_1d", "synth_sub_1d", "synth_mul_1d", "synth_add_2x1"),
    "smol-b": ("aqua", "mmlu_stem", "svamp", "gsm8k", "asdiv"),
    "smol-c": ("synth_add_2d", "synth_mul_2x1", "synth_add_10", "synth_mul_10"),
}


def corpus() -> TraceBatch:
    batch = load_corpus_batch()
    assert isinstance(batch, TraceBatch)
    return batch


@pytest.fixture(scope="session")
def corpus_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model name -> artifact fitted on that model's domains, recording the name."""
    batch = corpus()
    domain = np.array([s["domain"] for s in batch.slices])
    folder = tmp_path_factory.mktemp("corpus-models")
    out = {}
    for name, domains in DOMAINS.items():
        est = CorrectnessEstimator(family="lr", random_state=0)
        est.fit_traces(batch.subset(np.isin(domain, domains)))
        record_model(est.card_, name)  # what `sentinel fit --model-name` does
        out[name] = est.save(folder / f"{name}.skops")
    return out


def traffic_indices(n: int, seed: int = 0) -> np.ndarray:
    """``n`` corpus traces from every domain (a fixed random draw)."""
    return np.sort(np.random.default_rng(seed).choice(len(corpus()), n, replace=False))


def records_of(
    indices: np.ndarray, model: str | None, *, prefix: str = "t", labelled: bool = False
) -> list[dict[str, Any]]:
    """Trace records of the corpus traces at ``indices``, naming ``model``."""
    batch = corpus()
    out = []
    for i in indices.tolist():
        steps = []
        for j in range(int(batch.offsets[i]), int(batch.offsets[i + 1])):
            alts = batch.topk_logprobs[j]
            alts = alts[np.isfinite(alts)]
            sampled = float(batch.sampled_logprob[j])
            token = "<sampled>"
            if batch.sampled_in_topk[j]:
                match = np.flatnonzero(alts == sampled)
                assert match.size, "a sampled token in the top-k equals one alternative"
                token = f"<{int(match[0])}>"
            top = [{"token": f"<{a}>", "logprob": float(v)} for a, v in enumerate(alts)]
            steps.append({"token": token, "logprob": sampled, "top_logprobs": top})
        record: dict[str, Any] = {
            "id": f"{prefix}-{batch.ids[i]}",
            "slice": {"domain": batch.slices[i]["domain"]},
            "logprobs": {"content": steps},
        }
        if model is not None:
            record["model"] = model
        if labelled:
            record["correct"] = bool(batch.labels[i])
        out.append(record)
    return out
