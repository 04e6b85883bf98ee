"""The OpenTelemetry GenAI attributes of one call, read from its request and its answer.

Attribute names follow the GenAI semantic conventions (development status; the
``open-telemetry/semantic-conventions-genai`` registry): ``gen_ai.operation.name``,
``gen_ai.request.*``, ``gen_ai.response.*``, ``gen_ai.usage.*``. They are plain values
(str, int, float, bool, lists of str), so they can be stored in a trace's ``meta`` and
put on a span as they are. No OpenTelemetry import here.

>>> request_attributes("chat", {"model": "m", "temperature": 0.0, "max_tokens": 16})
{'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'm', \
'gen_ai.request.temperature': 0.0, 'gen_ai.request.max_tokens': 16}
>>> response_attributes(b'{"id": "c-1", "model": "m-0613", "choices": '
...     b'[{"finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}', ())
{'gen_ai.response.id': 'c-1', 'gen_ai.response.model': 'm-0613', \
'gen_ai.response.finish_reasons': ['stop'], 'gen_ai.usage.input_tokens': 9, \
'gen_ai.usage.output_tokens': 3}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

__all__ = ["OPERATIONS", "ApiKind", "CallTimes", "request_attributes", "response_attributes"]

ApiKind = Literal["chat", "completions", "responses"]
"""``/chat/completions``, legacy ``/completions``, or the Responses API ``/responses``."""

OPERATIONS: dict[str, str] = {
    "chat": "chat",
    "completions": "text_completion",
    "responses": "chat",
}
"""``gen_ai.operation.name`` of each API (the Responses API is a chat operation)."""

_REQUEST: tuple[tuple[str, str, type | tuple[type, ...]], ...] = (
    ("model", "gen_ai.request.model", str),
    ("temperature", "gen_ai.request.temperature", (int, float)),
    ("top_p", "gen_ai.request.top_p", (int, float)),
    ("max_tokens", "gen_ai.request.max_tokens", int),
    ("max_completion_tokens", "gen_ai.request.max_tokens", int),
    ("max_output_tokens", "gen_ai.request.max_tokens", int),
    ("seed", "gen_ai.request.seed", int),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", (int, float)),
    ("presence_penalty", "gen_ai.request.presence_penalty", (int, float)),
    ("n", "gen_ai.request.choice.count", int),
    ("stream", "gen_ai.request.stream", bool),
)


def request_attributes(kind: ApiKind, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``gen_ai.operation.name`` and the ``gen_ai.request.*`` a request body states."""
    out: dict[str, Any] = {"gen_ai.operation.name": OPERATIONS[kind]}
    for key, name, types in _REQUEST:
        value = payload.get(key)
        if isinstance(value, types) and (key == "stream" or not isinstance(value, bool)):
            out[name] = value
    stop = payload.get("stop")
    if isinstance(stop, str):
        out["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        out["gen_ai.request.stop_sequences"] = stop
    return out


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    finish_reason: str | None = None


class _Answer(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    status: str | None = None  # Responses API


_ANSWER = msgspec.json.Decoder(_Answer)


def response_attributes(body: bytes | None, chunks: Sequence[bytes]) -> dict[str, Any]:
    """``gen_ai.response.*`` and ``gen_ai.usage.*`` from an answer's body or its stream.

    A stream's id and model come from its first chunk, finish reasons and usage from the
    chunks that carry them (usage only when the request asked for it).
    """
    out: dict[str, Any] = {}
    finish: dict[int, str] = {}
    docs = [body] if body is not None else list(chunks)
    for doc in docs:
        try:
            a = _ANSWER.decode(doc)
        except msgspec.DecodeError:
            continue
        if a.id and "gen_ai.response.id" not in out:
            out["gen_ai.response.id"] = a.id
        if a.model and "gen_ai.response.model" not in out:
            out["gen_ai.response.model"] = a.model
        for c in a.choices or ():
            if c.finish_reason:
                finish[c.index] = c.finish_reason
        if a.status and a.status != "in_progress":
            finish[0] = a.status
        if a.usage is not None:
            u = a.usage
            inp = u.prompt_tokens if u.prompt_tokens is not None else u.input_tokens
            outp = u.completion_tokens if u.completion_tokens is not None else u.output_tokens
            if inp is not None:
                out["gen_ai.usage.input_tokens"] = inp
            if outp is not None:
                out["gen_ai.usage.output_tokens"] = outp
    if finish:
        out["gen_ai.response.finish_reasons"] = [finish[i] for i in sorted(finish)]
    order = (
        "gen_ai.response.id",
        "gen_ai.response.model",
        "gen_ai.response.finish_reasons",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
    )
    return {k: out[k] for k in order if k in out}


@dataclass
class CallTimes:
    """When a call ran, and the OpenTelemetry context it ran in (for the span's parent).

    Attributes:
        start: epoch seconds when the request was sent.
        end: epoch seconds when the answer was complete.
        context: the caller's OpenTelemetry context at the call, or None.
    """

    start: float
    end: float
    context: Any = None
