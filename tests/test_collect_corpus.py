"""The compact corpus: exact round trip through Parquet, filters, errors, the committed corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import entropy_sentinel as es
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces.corpus import (
    SCALAR_COLUMNS,
    corpus_frame,
    corpus_metadata,
    domain_summary,
    read_corpus,
    write_corpus,
)
from tests.conftest import REPO, SMOLLM2_FIXTURES

CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"


def _records() -> list[dict[str, Any]]:
    """The recorded SmolLM2 chat responses as collector records (two domains, one unlabelled)."""
    responses = json.loads((SMOLLM2_FIXTURES / "chat.json").read_text())
    out = []
    for i, response in enumerate(responses):
        choice = response["choices"][0]
        domain = "add" if i < 3 else "mul"
        record: dict[str, Any] = {
            "id": f"{domain}-{i}",
            "slice": {"domain": domain, "benchmark": domain},
            "logprobs": choice["logprobs"],
            "meta": {
                "benchmark": domain,
                "item_id": f"{domain}-{i}",
                "answer_type": "number",
                "grade": {"extracted": str(i)},
                "grader": "number-v1",
                "finish_reason": choice["finish_reason"],
                "prompt_template": "number-v1",
                "model": response["model"],
                "request": {"seed": i},
                "timing": {
                    "completion_tokens": response["usage"]["completion_tokens"],
                    "latency_s": 0.5 + i,
                },
                "response_text": choice["message"]["content"],
            },
        }
        if i != 4:
            record["correct"] = i % 2 == 0
        out.append(record)
    return out


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    return path


def _assert_same(a: es.TraceBatch, b: es.TraceBatch) -> None:
    assert a.ids == b.ids and a.slices == b.slices
    for name in ("offsets", "sampled_logprob", "sampled_in_topk", "topk_logprobs", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_round_trip_is_exact(jsonl: Path, tmp_path: Path) -> None:
    out = write_corpus(jsonl, tmp_path / "c.parquet", metadata={"model_sha256": "abc"})
    original = es.read_traces(jsonl)
    packed = read_corpus(out)
    _assert_same(original, packed)
    np.testing.assert_array_equal(es.entropy_profile(original), es.entropy_profile(packed))
    assert np.isnan(packed.labels[4])  # unlabelled stays unlabelled
    assert packed.meta[0]["grader"] == "number-v1" and packed.meta[3]["seed"] == 3
    assert corpus_metadata(out) == {"format": "entropy-sentinel corpus v1", "model_sha256": "abc"}
    assert out.stat().st_size < jsonl.stat().st_size / 5
    schema = pq.read_schema(out)
    assert str(schema.field("topk_logprobs").type) == "list<element: list<element: float>>"
    assert list(corpus_frame(out).columns) == list(SCALAR_COLUMNS)


def test_float64_kept_when_float32_is_not_exact(tmp_path: Path) -> None:
    records = _records()[:1]
    records[0]["logprobs"]["content"][0]["top_logprobs"][1]["logprob"] = -0.1  # not a float32
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(records[0]) + "\n")
    out = write_corpus(path, tmp_path / "c.parquet")
    _assert_same(es.read_traces(path), read_corpus(out))
    assert "double" in str(pq.read_schema(out).field("topk_logprobs").type)


def test_domain_filter(jsonl: Path, tmp_path: Path) -> None:
    out = write_corpus(jsonl, tmp_path / "c.parquet")
    mul = read_corpus(out, domains=["mul"])
    _assert_same(es.read_traces(jsonl).subset([3, 4, 5]), mul)
    with pytest.raises(ConfigError, match=r"domains \['div'\] are not in"):
        read_corpus(out, domains=["div"])


def test_records_without_collector_meta_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    record = _records()[0]
    del record["meta"]["item_id"]
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ConfigError, match="lacks the collector's meta"):
        write_corpus(path, tmp_path / "c.parquet")
    path.write_text(json.dumps({"id": "e", "token_entropy": [0.1]}) + "\n")
    with pytest.raises(ConfigError, match="has no logprobs"):
        write_corpus(path, tmp_path / "c.parquet")
    with pytest.raises(ConfigError, match="does not exist"):
        read_corpus(tmp_path / "missing.parquet")


@pytest.mark.skipif(not CORPUS.exists(), reason="the committed corpus is not there yet")
def test_committed_corpus_reads_as_a_labelled_multi_domain_batch() -> None:
    batch = read_corpus(CORPUS)
    frame = corpus_frame(CORPUS)
    assert len(batch) == len(frame) and batch.has_label.all()
    assert batch.k >= 20 and (batch.lengths == frame["completion_tokens"].to_numpy()).all()
    counts = frame.groupby("domain").size()
    assert len(counts) >= 10
    assert counts.max() - counts.min() <= 1  # domains interleaved: balanced at any point
    synthetic = frame["domain"].str.startswith("synth_")
    assert frame["question"].notna().equals(synthetic)  # only our own questions are stored
    assert np.isfinite(es.entropy_profile(batch)).all()
    meta = corpus_metadata(CORPUS)
    assert (
        meta["model_sha256"] == "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    )


@pytest.mark.skipif(not CORPUS.exists(), reason="the committed corpus is not there yet")
def test_committed_corpus_is_complete() -> None:
    if corpus_metadata(CORPUS).get("status", "").startswith("partial"):
        pytest.skip("the committed corpus is partial (its run is in progress)")
    frame = corpus_frame(CORPUS)
    assert frame.groupby("domain").size().min() >= 100
    accuracy = frame.groupby("domain")["correct"].mean()
    assert (accuracy > 0).all() and accuracy.max() - accuracy.min() > 0.3


def test_domain_summary(jsonl: Path, tmp_path: Path) -> None:
    out = write_corpus(jsonl, tmp_path / "c.parquet")
    summary = domain_summary(out).set_index("domain")
    assert list(summary.index) == ["add", "mul", "all"]  # by accuracy, then the total
    assert summary.loc["add", "accuracy"] == pytest.approx(2 / 3)
    assert (summary.loc["mul", "n"], summary.loc["mul", "graded"]) == (3, 2)
    assert summary.loc["all", "n"] == 6
    assert summary.loc["all", "truncated"] == 1  # the recorded response cut at 64 tokens
