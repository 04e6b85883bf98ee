"""What a trace record needs from an OpenAI-style answer, read from its bytes.

An answer is either one body (``bytes``) or the ``data`` payloads of its stream, in
order, without ``[DONE]``. The proxy and the SDK both build their records from these.

>>> body = b'{"id": "c-1", "choices": [{"index": 0, "message": {"content": "42"}}]}'
>>> response_id(body), answer_text(body, ())
('c-1', '42')
>>> chunks = (b'{"id": "c-2", "choices": [{"index": 0, "text": "4"}]}',
...           b'{"id": "c-2", "choices": [{"index": 0, "text": "2"}]}')
>>> answer_text(None, chunks), answer_payload("completions", None, chunks)[:22]
('42', b'{"id":"c-2","object":n')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from entropy_sentinel.wire.openai_body import Kind

__all__ = ["answer_payload", "answer_text", "legacy_from_chunks", "response_id"]


class _Id(msgspec.Struct):
    id: str | None = None


class _Message(msgspec.Struct):
    content: str | None = None


class _TextChoice(msgspec.Struct):
    index: int = 0
    text: str | None = None
    message: _Message | None = None
    delta: _Message | None = None


class _Texts(msgspec.Struct):
    choices: list[_TextChoice] = []


def response_id(first: bytes) -> str | None:
    """The ``id`` of an answer (a body, or a stream's first chunk); None when absent."""
    try:
        rid = msgspec.json.decode(first, type=_Id).id
    except msgspec.DecodeError:
        return None
    return rid or None


def answer_payload(kind: Kind, body: bytes | None, chunks: Sequence[bytes]) -> bytes:
    """The answer as the trace library reads it: the body, the chat chunks as one JSON
    array, or a legacy stream reassembled into one completion (the library reads
    legacy chunks only as one response)."""
    if body is not None:
        return body
    if kind == "completions":
        return legacy_from_chunks(chunks)
    return b"[" + b",".join(chunks) + b"]"


def answer_text(body: bytes | None, chunks: Sequence[bytes]) -> str | list[str] | None:
    """The answer's text: one string per choice (a list when there are several)."""
    parts: dict[int, list[str]] = {}
    docs = [body] if body is not None else list(chunks)
    for doc in docs:
        try:
            texts = msgspec.json.decode(doc, type=_Texts)
        except msgspec.DecodeError:
            return None
        for c in texts.choices:
            piece = c.text
            for msg in (c.message, c.delta):
                if msg is not None and msg.content is not None:
                    piece = msg.content
            if piece:
                parts.setdefault(c.index, []).append(piece)
    joined = ["".join(parts[i]) for i in sorted(parts)]
    if not joined:
        return None
    return joined[0] if len(joined) == 1 else joined


def legacy_from_chunks(chunks: Sequence[bytes]) -> bytes:
    """One legacy completion from its stream chunks (tokens and logprobs concatenated)."""
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    for raw in chunks:
        try:
            chunk = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return b"[" + b",".join(chunks) + b"]"  # the trace library names the bad chunk
        if not isinstance(chunk, dict):
            continue
        for key in ("id", "object", "created", "model"):
            head.setdefault(key, chunk.get(key))
        for c in chunk.get("choices") or ():
            if not isinstance(c, dict):
                continue
            out = choices.setdefault(
                int(c.get("index") or 0), {"index": int(c.get("index") or 0), "text": ""}
            )
            out["text"] += c.get("text") or ""
            if c.get("finish_reason") is not None:
                out["finish_reason"] = c["finish_reason"]
            lp = c.get("logprobs")
            if isinstance(lp, dict):
                acc = out.setdefault("logprobs", {})
                for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                    if lp.get(key) is not None:
                        acc.setdefault(key, []).extend(lp[key])
    head["choices"] = [choices[i] for i in sorted(choices)]
    return msgspec.json.encode(head)
