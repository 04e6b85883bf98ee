"""Regrading trace files: gold answers found by item id, previous grades kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import entropy_sentinel as es
from entropy_sentinel.collect.regrade import ItemLookup, regrade_file
from entropy_sentinel.errors import ConfigError
from tests.conftest import SMOLLM2_FIXTURES


def _record(rid: str, benchmark: str, text: str, **meta: Any) -> dict[str, Any]:
    logprobs = json.loads((SMOLLM2_FIXTURES / "chat.json").read_text())[0]["choices"][0]["logprobs"]
    return {
        "id": rid,
        "slice": {"domain": benchmark},
        "logprobs": logprobs,
        "correct": False,
        "meta": {
            "benchmark": benchmark,
            "item_id": rid,
            "answer_type": meta.pop("answer_type", "number"),
            "response_text": text,
            "grade": {"correct": False, "grader": "old"},
            **meta,
        },
    }


def test_regrade_benchmark_and_synthetic_items(benchmarks_dir: Path, tmp_path: Path) -> None:
    records = [
        _record("svamp-0", "svamp", "76 - 25 = 51. The answer is 51."),  # gold 51
        _record("aqua-0", "aqua", "The answer is (A).", answer_type="choice"),  # gold A
        _record(
            "synth_add_1d-0",
            "synth_add_1d",
            "The answer is 9.",
            question="What is 4 + 5?",
            gold={"answer": "9"},
        ),
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out.jsonl"
    counts = asyncio.run(regrade_file(src, out, directory=benchmarks_dir))
    assert counts == {"records": 3, "graded": 3, "correct": 3, "changed": 3, "unlabelled": 0}
    regraded = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["meta"]["grader"] for r in regraded] == ["number-v2", "choice-v1", "number-v2"]
    assert all(r["meta"]["previous_grades"] == [{"correct": False, "grader": "old"}]
               for r in regraded)  # fmt: skip
    assert es.read_traces(out).labels.tolist() == [1.0, 1.0, 1.0]


def test_unknown_items_and_foreign_records_are_errors(benchmarks_dir: Path) -> None:
    lookup = ItemLookup(benchmarks_dir)
    with pytest.raises(ConfigError, match="item 'svamp-99999' is not in benchmark 'svamp'"):
        lookup.item_of(_record("svamp-99999", "svamp", "1"))
    with pytest.raises(ConfigError, match="not written by the collector"):
        lookup.item_of({"id": "x", "meta": {}})
