"""Grade (or regrade) trace records written by the collector, e.g. with an LLM judge.

The gold answer of each record is found from its ``meta``: synthetic items carry their
question and answer; benchmark items are looked up by ``meta.item_id`` in the
benchmark files (question texts of shared benchmarks are never stored with traces).
The new grade replaces ``correct``, ``meta.grade`` and ``meta.grader``; the old one is
appended to ``meta.previous_grades``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from entropy_sentinel.collect.benchmarks import Item, load_benchmark
from entropy_sentinel.collect.graders import Grade, grade_item
from entropy_sentinel.collect.judge import LLMJudge
from entropy_sentinel.errors import ConfigError

__all__ = ["ItemLookup", "apply_grade", "regrade_file"]


class ItemLookup:
    """Benchmark items by id, loading each benchmark file once (from ``directory``)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = directory
        self._by_benchmark: dict[str, dict[str, Item]] = {}

    def item_of(self, record: Mapping[str, Any]) -> Item:
        """The `Item` a collector record was generated from."""
        rid = record.get("id")
        meta = record.get("meta") or {}
        try:
            benchmark, item_id = str(meta["benchmark"]), str(meta["item_id"])
        except KeyError:
            raise ConfigError(
                f"record {rid!r} has no meta.benchmark / meta.item_id: not written by the collector"
            ) from None
        if meta.get("question") is not None and (meta.get("gold") or {}).get("answer"):
            # synthetic items carry everything needed
            return Item(
                id=item_id,
                benchmark=benchmark,
                question=str(meta["question"]),
                answer=str(meta["gold"]["answer"]),
                answer_type=meta["answer_type"],
            )
        if benchmark not in self._by_benchmark:
            items = load_benchmark(benchmark, directory=self.directory)
            self._by_benchmark[benchmark] = {item.id: item for item in items}
        item = self._by_benchmark[benchmark].get(item_id)
        if item is None:
            raise ConfigError(
                f"record {rid!r}: item {item_id!r} is not in benchmark {benchmark!r}; "
                "is --benchmarks-dir the folder the traces were collected from?"
            )
        return item


def apply_grade(record: dict[str, Any], grade: Grade) -> dict[str, Any]:
    """``record`` with ``grade`` as its label (the previous grade kept in meta)."""
    meta = dict(record.get("meta") or {})
    if meta.get("grade") is not None:
        meta["previous_grades"] = [*meta.get("previous_grades", []), meta["grade"]]
    meta["grade"] = {
        "correct": grade.correct,
        "grader": grade.grader,
        "extracted": grade.extracted,
        "detail": grade.detail,
    }
    meta["grader"] = grade.grader
    out = {k: v for k, v in record.items() if k not in ("correct", "meta")}
    if grade.correct is not None:
        out["correct"] = grade.correct
    out["meta"] = meta
    return out


async def regrade_file(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    directory: str | os.PathLike[str] | None = None,
    judge: LLMJudge | None = None,
    concurrency: int = 4,
) -> dict[str, int]:
    """Grade every record of ``input`` into ``output``; returns counts.

    Counts: ``records``, ``graded`` (got a verdict), ``correct``, ``changed`` (label differs
    from before), ``unlabelled`` (the judge gave no verdict).
    """
    import httpx

    lookup = ItemLookup(directory)
    records = []
    with Path(input).open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = msgspec.json.decode(line)
            except msgspec.DecodeError as exc:
                raise ConfigError(f"{input}:{lineno}: not JSON ({exc})") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{input}:{lineno}: a trace record must be a JSON object")
            records.append(record)
    items = [lookup.item_of(r) for r in records]
    texts = [str((r.get("meta") or {}).get("response_text") or "") for r in records]
    if judge is None:
        grades = [grade_item(text, item) for text, item in zip(texts, items, strict=True)]
    else:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=120.0) as client:

            async def one(text: str, item: Item) -> Grade:
                async with gate:
                    return await judge.grade(client, item.question, text, item.answer)

            grades = list(
                await asyncio.gather(*(one(t, i) for t, i in zip(texts, items, strict=True)))
            )
    counts = {"records": len(records), "graded": 0, "correct": 0, "changed": 0, "unlabelled": 0}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with Path(output).open("wb") as out:
        for record, grade in zip(records, grades, strict=True):
            if grade.correct is None:
                counts["unlabelled"] += 1
            else:
                counts["graded"] += 1
                counts["correct"] += int(grade.correct)
            counts["changed"] += int(record.get("correct") != grade.correct)
            out.write(msgspec.json.encode(apply_grade(record, grade)) + b"\n")
    return counts
