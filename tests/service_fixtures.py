"""Fixtures shared by the monitoring-service tests (imported by tests/test_service_*.py).

* ``db_url``: a fresh database per test, on SQLite and (marked ``postgres``) on the
  PostgreSQL server of ``SENTINEL_TEST_POSTGRES_URL`` (scripts/test.sh starts one with
  scripts/postgres.sh); the PostgreSQL run skips with the reason when it is unset.
* ``corpus_records``: the committed SmolLM2 corpus (1,950 graded answers, 13 domains) as
  JSON-ready ``token_entropy`` records: per-token top-20 entropies (nats), ``correct``,
  ``slice`` {domain, benchmark}; small, so ingest-heavy tests stay fast.
* ``corpus_model``: a real `CorrectnessEstimator` (L1-logistic) fitted on those
  records (precomputed entropies), saved as an artifact.
* ``smollm2_model``: one fitted on the recorded SmolLM2 responses (top-20 logprobs).
* ``smollm2_records``: those responses as JSON-ready dicts.
* ``scored_traces``: a `ScoredTraces` with chosen probabilities, to write directly.
* ``corpus_traffic``: the committed SmolLM2 corpus as traffic over a chosen time span.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from entropy_sentinel import CorrectnessEstimator, StepStats, read_traces
from entropy_sentinel.service.records import ScoredTraces, ScorerInfo
from entropy_sentinel.testing.service import postgres_database
from tests.conftest import SMOLLM2_FIXTURES, load_corpus_batch

POSTGRES_ENV = "SENTINEL_TEST_POSTGRES_URL"
HOUR = 3600
T0 = 1_700_000_040.0  # a bucket boundary (divisible by 60)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL (see the module docstring)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sentinel.db'}"
        return
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(
            f"{POSTGRES_ENV} is not set: start a server with "
            f'`eval "$(bash scripts/postgres.sh env)"` (scripts/test.sh does)'
        )
    with postgres_database(server) as url:
        yield url


@pytest.fixture(scope="session")
def corpus_records() -> list[dict[str, Any]]:
    batch: Any = load_corpus_batch()
    entropy = StepStats(batch, "topk").entropy
    return [
        {
            "id": batch.ids[i],
            "slice": dict(batch.slices[i]),
            "token_entropy": entropy[batch.offsets[i] : batch.offsets[i + 1]].tolist(),
            "correct": bool(batch.labels[i] == 1.0),
        }
        for i in range(len(batch))
    ]


@pytest.fixture(scope="session")
def corpus_model(
    corpus_records: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    batch = read_traces(corpus_records)
    est = CorrectnessEstimator(family="lr", random_state=0).fit_traces(batch, slice_dim=None)
    return est.save(tmp_path_factory.mktemp("models") / "corpus-lr.skops")


@pytest.fixture(scope="session")
def smollm2_records() -> list[dict[str, Any]]:
    lines = (SMOLLM2_FIXTURES / "traces.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="session")
def smollm2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    batch = read_traces(SMOLLM2_FIXTURES / "traces.jsonl", errors="collect")
    est = CorrectnessEstimator(family="lr", random_state=0).fit_traces(batch)
    return est.save(tmp_path_factory.mktemp("models") / "smollm2-lr.skops")


def scored_traces(
    scorer: ScorerInfo,
    ids: list[str],
    *,
    ts: list[float] | None = None,
    slices: list[dict[str, str]] | None = None,
    p: list[float] | None = None,
    labels: list[float] | None = None,
) -> ScoredTraces:
    """Stored-trace inputs with given probabilities (storage and alert tests)."""
    n = len(ids)
    rng = np.random.default_rng(len(ids))
    p_arr = np.asarray(p if p is not None else rng.uniform(0.05, 0.95, n), dtype=np.float64)
    return ScoredTraces(
        trace_ids=ids,
        ts=np.asarray(ts if ts is not None else [T0] * n, dtype=np.float64),
        received_at=T0,
        slices=slices if slices is not None else [{"domain": "algebra"}] * n,
        n_tokens=np.full(n, 7, dtype=np.int64),
        k=np.zeros(n, dtype=np.int64),
        entropy_mode="topk",
        features=rng.uniform(0, 2, (n, 11)),
        extra_features=[None] * n,
        p_raw=p_arr,
        p=p_arr,
        scorer_id=scorer.id,
        labels=np.asarray(labels if labels is not None else [np.nan] * n, dtype=np.float64),
        meta=[{"i": i} for i in range(n)],
        raw=[None] * n,
    )


EASY = ("synth_mul_1d", "synth_add_1d", "synth_add_10", "mmlu_stem")
HARD = ("gsm8k", "svamp", "synth_add_2x1", "asdiv")


def corpus_traffic(
    now: float, span: float = 12 * HOUR, *, text: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(records to ingest, graded records to fit on): the committed SmolLM2 corpus as
    per-token entropies (mode ``topk``), timestamps spread evenly over the ``span``
    seconds before ``now``, slices ``domain`` and ``customer`` (its mix shifts towards
    hard domains in the second half), the grade of one record in eight sent as its label,
    the response text in ``meta.answer``; with ``text``, the question as the ``prompt``
    (one chat message) and the response as the ``answer`` too."""
    batch: Any = load_corpus_batch()
    entropy = StepStats(batch, "topk").entropy
    off = batch.offsets
    rng = np.random.default_rng(0)
    ingest: list[dict[str, Any]] = []
    graded: list[dict[str, Any]] = []
    for rank, i in enumerate(rng.permutation(len(batch)).tolist()):
        domain = batch.slices[i]["domain"]
        ts = now - span + (rank + 0.5) * span / len(batch)
        recent = ts > now - span / 2
        shifted = (not recent and domain in EASY) or (recent and domain in HARD)
        if shifted and rng.random() < 0.7:
            customer = "globex"
        else:
            customer = str(
                rng.choice(["acme", "initech"] if shifted else ["acme", "globex", "initech"])
            )
        h = entropy[off[i] : off[i + 1]].astype(float).tolist()
        label = bool(batch.labels[i])
        record: dict[str, Any] = {
            "id": batch.ids[i],
            "slice": {"domain": domain, "customer": customer},
            "token_entropy": h,
            "timestamp": ts,
            "meta": {"answer": batch.meta[i].get("response_text")},
        }
        if text:
            record["prompt"] = [{"role": "user", "content": batch.meta[i].get("question")}]
            record["answer"] = batch.meta[i].get("response_text")
        if rng.random() < 0.125:
            record["correct"] = label
        ingest.append(record)
        graded.append(
            {"id": batch.ids[i], "slice": {"domain": domain}, "token_entropy": h, "correct": label}
        )
    return ingest, graded
