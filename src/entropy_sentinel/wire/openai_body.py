"""What the proxy changes in OpenAI request and response bodies, and nothing more.

**Requests** (`prepare_request`). When the client did not ask for logprobs, the proxy
asks for them: chat completions get ``"logprobs": true, "top_logprobs": N``, legacy
completions ``"logprobs": N``. A client that asked (``"logprobs": true`` in chat, any
``logprobs`` number in legacy completions) is left alone, and so is a request the proxy
cannot read (not a JSON object: the upstream answers it as it would), a chat request
with ``top_logprobs`` but no ``"logprobs": true`` (the upstream judges it), and a legacy
request with ``echo`` (its logprobs would cover the prompt too). The proxy's own field,
``metadata.sentinel_slice``, is removed (and ``metadata`` with it when nothing else is
left); every other field and its value is forwarded as sent. A body that needs no
change is forwarded byte for byte.

**Responses** (`strip_logprobs`). Logprobs the proxy added are taken out of what the
client receives by replacing the value of each choice's ``"logprobs"`` key with
``null`` — what OpenAI, vLLM and llama.cpp servers send when logprobs were not asked
for — in the original bytes: the rest of the answer (key order, spacing, number
formatting) is the upstream's, byte for byte. The same function rewrites one SSE event
of a stream. It fails closed: bytes that may hold logprobs but cannot be read as JSON
(a ``NaN`` logprob, which vLLM has emitted, is not JSON) give `UnstrippableError`, and
the proxy answers with an error instead of passing them on.

>>> import json
>>> p = prepare_request(b'{"model": "m", "messages": []}', "chat", 20)
>>> json.loads(p.body)["top_logprobs"], p.strip, p.record, p.k
(20, True, True, 20)
>>> strip_logprobs(b'{"choices": [{"index": 0, "logprobs": {"content": []}}]}')
b'{"choices": [{"index": 0, "logprobs": null}]}'
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

__all__ = [
    "REFUSAL_STATUSES",
    "Kind",
    "PreparedRequest",
    "UnstrippableError",
    "prepare_request",
    "refuses_logprobs",
    "strip_logprobs",
]

Kind = Literal["chat", "completions"]
"""``chat``: ``/v1/chat/completions``; ``completions``: legacy ``/v1/completions``."""

REFUSAL_STATUSES = (400, 422)
"""Statuses of an upstream that refuses a request (read the body: `refuses_logprobs`)."""

SLICE_KEY = "sentinel_slice"
"""Key of ``metadata`` that carries the slice (same syntax as ``X-Sentinel-Slice``)."""


@dataclass(frozen=True)
class PreparedRequest:
    """The request body to forward, and what the proxy must do with the answer.

    Attributes:
        body: bytes to send upstream (the client's own bytes when nothing changed).
        strip: the proxy added logprobs, so it removes them from the answer.
        record: the answer can carry a trace (logprobs asked for, by the proxy or the
            client); False leaves it unrecorded, counted as ``skipped``.
        client_logprobs: the client asked for logprobs itself.
        stream: the request asks for a stream (``"stream": true``).
        model: the ``model`` field, if any.
        slice_text: ``metadata.sentinel_slice``, if any (parsed by the caller).
        skip_reason: why ``record`` is False.
        payload: the decoded request (None when it is not a JSON object).
        plain: the body without the logprobs the proxy adds (for an upstream that
            refuses them for some model); ``body`` when it adds none.
        k: the number of top logprobs asked for (by the proxy or the client); 0 when
            the request does not say (chat ``logprobs`` without ``top_logprobs``).
    """

    body: bytes
    strip: bool
    record: bool
    client_logprobs: bool
    stream: bool = False
    model: str | None = None
    slice_text: str | None = None
    skip_reason: str | None = None
    payload: dict[str, Any] | None = field(default=None, repr=False)
    plain: bytes | None = field(default=None, repr=False)
    k: int = 0

    def without_logprobs(self, reason: str) -> PreparedRequest:
        """The same request without the logprobs the proxy would add: not recorded."""
        if not self.strip:
            return self
        return dataclasses.replace(
            self,
            body=self.plain or self.body,
            strip=False,
            record=False,
            skip_reason=reason,
            k=0,
        )


def prepare_request(raw: bytes, kind: Kind, top_logprobs: int) -> PreparedRequest:
    """The body to forward for a client request ``raw`` (see the module docstring)."""
    try:
        payload = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return PreparedRequest(
            raw, strip=False, record=False, client_logprobs=False, skip_reason="request"
        )
    changed = False
    slice_text: str | None = None
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and SLICE_KEY in metadata:
        value = metadata[SLICE_KEY]
        slice_text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
        rest = {k: v for k, v in metadata.items() if k != SLICE_KEY}
        if rest:
            payload["metadata"] = rest
        else:
            del payload["metadata"]
        changed = True

    stream = payload.get("stream") is True
    model = payload.get("model") if isinstance(payload.get("model"), str) else None
    asked, skip = _asked_for_logprobs(payload, kind)
    plain = msgspec.json.encode(payload) if changed else raw
    strip = not asked and skip is None
    if strip:
        extra = (
            {"logprobs": True, "top_logprobs": top_logprobs}
            if kind == "chat"
            else {"logprobs": top_logprobs}
        )
        payload = {**payload, **extra}
    body = msgspec.json.encode(payload) if strip else plain
    k = top_logprobs if strip else _asked_k(payload, kind) if asked else 0
    return PreparedRequest(
        body,
        strip=strip,
        record=skip is None,
        client_logprobs=asked,
        stream=stream,
        model=model,
        slice_text=slice_text,
        skip_reason=skip,
        payload=payload,
        plain=plain,
        k=k,
    )


def _asked_k(payload: dict[str, Any], kind: Kind) -> int:
    """The client's own number of top logprobs (0 when it states none, or nonsense)."""
    value = payload.get("top_logprobs" if kind == "chat" else "logprobs")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        return 0
    return value


def _asked_for_logprobs(payload: dict[str, Any], kind: Kind) -> tuple[bool, str | None]:
    """(the client asked for logprobs, why the answer cannot be recorded or None)."""
    if kind == "chat":
        if payload.get("logprobs") is True:
            return True, None
        if payload.get("top_logprobs") is not None:
            return False, "top_logprobs without logprobs"
        return False, None
    if payload.get("echo") is True:
        return payload.get("logprobs") is not None, "echo"
    return payload.get("logprobs") is not None, None


def refuses_logprobs(status: int, body: bytes) -> bool:
    """True when an answer refuses logprobs for the model: a 400 or 422 whose body names
    logprobs (OpenAI's reasoning models answer so). The request is then sent again
    exactly as the client made it, and the model remembered.

    >>> refuses_logprobs(400, b'{"error": {"message": "logprobs are not supported"}}')
    True
    >>> refuses_logprobs(400, b'{"error": {"message": "max_tokens is too large"}}')
    False
    """
    return status in REFUSAL_STATUSES and b"logprob" in body.lower()


# ------------------------------------------------------------------ responses
class _Choice(msgspec.Struct):
    logprobs: msgspec.Raw = msgspec.Raw(b"null")


class _Answer(msgspec.Struct):
    choices: list[_Choice] = []


_ANSWER = msgspec.json.Decoder(_Answer)
# A key named exactly "logprobs": in valid JSON a quote that is not escaped starts or
# ends a string, so `"logprobs"` not preceded by a backslash and followed by a colon
# cannot be inside a string value. (Found with bytes.find: a regex with a lookbehind
# costs about 50 us per KB here.)
_KEY = b'"logprobs"'
_COLON = re.compile(rb"[ \t\r\n]*:[ \t\r\n]*")
_NULL = b"null"


class UnstrippableError(ValueError):
    """An answer may carry logprobs the proxy added, but cannot be read to remove them."""


def strip_logprobs(data: bytes) -> bytes:
    """``data`` with each choice's ``logprobs`` value replaced by ``null``.

    ``data`` is a response body or one SSE event holding one JSON object. Bytes that
    hold no logprobs (``data: [DONE]``, comments, an answer without them) come back
    unchanged. Raises `UnstrippableError` when ``data`` may hold a ``logprobs`` key but
    is not JSON that can be read (fail closed: the caller must not pass it on).
    """
    start = data.find(b"{")
    if start < 0 or (_KEY not in data and b"\\u" not in data):
        return data  # no "logprobs" key, not even written with escapes
    end = data.rfind(b"}") + 1
    try:
        answer = _ANSWER.decode(data[start:end])
    except (msgspec.DecodeError, RecursionError):
        return _rebuilt(data)  # an event with several data lines, or not an answer at all
    values = [bytes(c.logprobs) for c in answer.choices if bytes(c.logprobs) != _NULL]
    if not values:
        return data
    pieces: list[bytes] = []
    last = 0
    pos = data.find(_KEY, start, end)
    while pos >= 0 and values:
        colon = _COLON.match(data, pos + len(_KEY))
        if colon is not None and data[pos - 1] != 0x5C:  # not preceded by a backslash
            at = colon.end()
            if at >= last and data.startswith(values[0], at):
                pieces += (data[last:at], _NULL)
                last = at + len(values.pop(0))
        pos = data.find(_KEY, max(pos + 1, last), end)
    if values:  # not one contiguous JSON text (several data lines, escaped keys): rebuild
        return _rebuilt(data)
    pieces.append(data[last:])
    return b"".join(pieces)


def _rebuilt(data: bytes) -> bytes:
    """Fallback of `strip_logprobs`: decode, set each choice's logprobs to None, encode.

    ``data`` comes back unchanged when it is JSON without logprobs to remove, and
    `UnstrippableError` is raised when it is not JSON at all.
    """
    from entropy_sentinel.wire.sse import event_data

    text = event_data(data) if data.lstrip()[:1] != b"{" else data
    try:
        obj = msgspec.json.decode(text or b"")
    except (msgspec.DecodeError, RecursionError) as exc:
        raise UnstrippableError(
            f"the upstream's answer is not valid JSON ({exc}), so the logprobs the proxy "
            "asked for cannot be removed from it"
        ) from None
    choices = obj.get("choices") if isinstance(obj, dict) else None
    found = False
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict) and choice.get("logprobs") is not None:
            choice["logprobs"] = None
            found = True
    if not found:
        return data
    out = msgspec.json.encode(obj)
    if text is data:
        return out
    keep = [ln for ln in data.splitlines() if ln.strip() and not ln.startswith(b"data:")]
    return b"\n".join([*keep, b"data: " + out]) + b"\n\n"
