"""The annotators' file of a labelling request list, as JSON Lines.

One record per response to label, ready to fill in and to bring back with
``sentinel labels import`` (or ``POST /v1/labels``)::

    {"id": "r1", "correct": null, "slice_rank": 1, "dimension": "domain",
     "value": "gsm8k", "timestamp": "...", "p_correct": 0.31,
     "slice": {"domain": "gsm8k"}, "meta": {...}, "model": "m", "prompt": "...",
     "answer": "...", "design_id": 3, "inclusion_probability": 0.07, "status": "pending"}

``correct`` is a real null (the annotator writes true or false), ``slice`` and ``meta``
are JSON objects, and the prompt and answer text are there when the service stored
them (and the reader may see them). Every other field of the request is kept as it is.
The CSV export (`Priorities.requests_frame`) keeps flat columns instead.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from entropy_sentinel.service.prioritize import Priorities
from entropy_sentinel.service.storage.store import Storage

__all__ = ["label_records", "labels_jsonl", "with_texts", "write_labels_jsonl"]

_TEXT = ("prompt", "answer")


def with_texts(storage: Storage, result: Priorities) -> Priorities:
    """``result`` with each request's stored prompt and answer (where text is stored)."""
    texts = storage.texts([r.trace_id for r in result.requests])
    requests = tuple(
        dataclasses.replace(r, prompt=texts[r.trace_id][0], answer=texts[r.trace_id][1])
        if r.trace_id in texts
        else r
        for r in result.requests
    )
    return dataclasses.replace(result, requests=requests)


def label_records(result: Priorities) -> list[dict[str, Any]]:
    """One JSON-ready record per response of ``result`` (see the module docstring)."""
    out = []
    for request in result.requests:
        fields = dataclasses.asdict(request)
        record: dict[str, Any] = {"id": fields.pop("trace_id"), "correct": None}
        record.update((k, v) for k, v in fields.items() if not (k in _TEXT and v is None))
        out.append(record)
    return out


def labels_jsonl(result: Priorities) -> str:
    """The records of `label_records` as JSON Lines text (UTF-8, one record a line)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in label_records(result))


def write_labels_jsonl(result: Priorities, path: Path) -> None:
    """Write `labels_jsonl` to ``path``."""
    path.write_text(labels_jsonl(result), encoding="utf-8")
