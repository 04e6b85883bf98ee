"""Trace records (the ingest contract) from what an application has at hand.

`encode_record` takes a response as the openai SDK returns it (a pydantic model), as a
dict, as a list of stream chunks (models or dicts), or as JSON bytes, and writes one
trace record::

    {"id", "slice", "model", "k", "correct", "prompt", "answer", "timestamp",
     "meta": {..., "response_id": <the upstream's id>}, "logprobs": <the response>}

The record's ``id`` is its own (a random one unless given): upstream ids can repeat
behind a cache, so the upstream's id is kept in ``meta.response_id``. ``model`` defaults
to the model the response names. A legacy completion's stream is reassembled into one
completion, and a Responses API answer (``"object": "response"``) is read as its
``output_text`` logprobs, which have the chat shape.

>>> import json
>>> rec = json.loads(encode_record(
...     {"id": "chatcmpl-1", "model": "m", "choices": []}, id="t1", slice={"domain": "x"}))
>>> rec["id"], rec["model"], rec["meta"], rec["slice"]
('t1', 'm', {'response_id': 'chatcmpl-1'}, {'domain': 'x'})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from entropy_sentinel.wire.answer import legacy_from_chunks

__all__ = ["encode_record", "plain", "responses_logprobs"]

_ENCODER = msgspec.json.Encoder()


def plain(obj: Any) -> Any:
    """``obj`` as JSON-ready data: pydantic models dumped, sequences of them too."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, list | tuple):
        return [plain(x) for x in obj]
    return obj


def encode_record(
    response: Any,
    *,
    id: str,
    slice: Mapping[str, str] | None = None,
    model: str | None = None,
    k: int | None = None,
    correct: bool | None = None,
    meta: Mapping[str, Any] | None = None,
    prompt: Any = None,
    answer: str | None = None,
    timestamp: float | None = None,
) -> bytes:
    """One trace record as JSON bytes (see the module docstring).

    Raises:
        TypeError: ``response`` is none of the accepted kinds, or cannot be JSON.
    """
    logprobs: Any
    first: dict[str, Any]
    if isinstance(response, bytes | bytearray | memoryview | str):
        text = bytes(response) if not isinstance(response, str) else response.encode()
        logprobs, first = _from_json(text)
    else:
        logprobs = plain(response)
        if isinstance(logprobs, list):
            first = logprobs[0] if logprobs and isinstance(logprobs[0], dict) else {}
            if first.get("object") == "text_completion":  # a legacy stream: one completion
                chunks = [_ENCODER.encode(c) for c in logprobs]
                logprobs = msgspec.Raw(legacy_from_chunks(chunks))
        elif isinstance(logprobs, dict):
            first = logprobs
            if first.get("object") == "response" and "output" in first:
                logprobs = {"content": responses_logprobs(first)}
        else:
            raise TypeError(
                f"a {type(response).__name__} is not a response: give an openai SDK response, "
                "a dict, a list of stream chunks, or JSON bytes"
            )
    record: dict[str, Any] = {"id": id, "slice": dict(slice or {})}
    model = model if model is not None else first.get("model")
    if isinstance(model, str) and model:
        record["model"] = model
    for key, value in (("k", k), ("correct", correct), ("prompt", prompt), ("answer", answer)):
        if value is not None:
            record[key] = value
    if timestamp is not None:
        record["timestamp"] = timestamp
    meta_out = dict(meta or {})
    rid = first.get("id")
    if rid is not None and "response_id" not in meta_out:
        meta_out["response_id"] = str(rid)
    record["meta"] = meta_out
    record["logprobs"] = logprobs
    return _ENCODER.encode(record)


class _Head(msgspec.Struct):
    id: str | int | None = None
    model: str | None = None
    object: str | None = None


_HEAD = msgspec.json.Decoder(_Head | list[msgspec.Raw])
_FIRST = msgspec.json.Decoder(_Head)


def _from_json(text: bytes) -> tuple[Any, dict[str, Any]]:
    """(the record's ``logprobs`` value, the answer's id/model/object) from JSON bytes.

    Only the few head fields are decoded; the answer itself is spliced in as it is.
    """
    try:
        head = _HEAD.decode(text)
    except msgspec.DecodeError as exc:
        raise TypeError(f"the response is not JSON: {exc}") from None
    if isinstance(head, list):
        first = _FIRST.decode(head[0]) if head else _Head()
        if first.object == "text_completion":
            return msgspec.Raw(legacy_from_chunks([bytes(c) for c in head])), _fields(first)
        return msgspec.Raw(text), _fields(first)
    if head.object == "response":
        full = msgspec.json.decode(text)
        if isinstance(full, dict) and "output" in full:
            return {"content": responses_logprobs(full)}, _fields(head)
    return msgspec.Raw(text), _fields(head)


def _fields(head: _Head) -> dict[str, Any]:
    return {k: v for k in ("id", "model", "object") if (v := getattr(head, k)) is not None}


def responses_logprobs(response: Mapping[str, Any]) -> list[Any]:
    """The generated tokens of a Responses API answer, in the chat ``content`` shape.

    Each ``output_text`` part of each ``message`` item lists its tokens as
    ``{"token", "logprob", "bytes", "top_logprobs": [...]}``, exactly the chat shape.
    """
    steps: list[Any] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            if isinstance(part, dict) and part.get("type") == "output_text":
                steps.extend(part.get("logprobs") or ())
    return steps
