"""`wrap_openai`: record every answer of an ``openai.OpenAI`` / ``AsyncOpenAI`` client.

::

    client = wrap_openai(openai.OpenAI(base_url=...), sentinel, slice={"domain": "chemistry"})
    client.chat.completions.create(model="m", messages=[...])   # recorded, answer unchanged

The wrapped client is a copy of the application's (``client.with_options``) whose HTTP
client is a thin layer over the application's own: every request still goes out
through the application's HTTP client (its proxies, certificates, limits), and the
layer does, in process, what the recording proxy does (docs/proxy.md), with the
proxy's own code (`entropy_sentinel.wire`):

* **Requests** to ``/chat/completions`` get ``"logprobs": true, "top_logprobs": 20``
  when the application did not ask for logprobs, ``/completions`` (legacy) get
  ``"logprobs": 5`` (OpenAI's cap there; ``legacy_top_logprobs=20`` for vLLM and
  llama.cpp). A request that asked is left alone and its
  answer recorded as it is. Responses API requests (``/responses``) are recorded when
  the application asked for logprobs itself (``include=["message.output_text.logprobs"]``,
  ``top_logprobs``); the wrapper does not add them there (see docs/integrations.md).
* **Answers** come back to the application exactly as the upstream sent them, except
  the logprobs the wrapper added: each choice's ``logprobs`` value is replaced by
  ``null`` in the answer's bytes, event by event in a stream (`strip_logprobs`), so the
  openai SDK parses the same objects it would have without the wrapper — through
  ``create``, ``with_raw_response``, ``with_streaming_response`` and the stream helpers.
* **A model that refuses logprobs** (a 400 or 422 naming them, as OpenAI's reasoning
  models answer) gets the request again exactly as the application made it, and is
  remembered: its later requests go out unchanged and unrecorded.
* **Recording** happens when the answer is complete (a stream: when it ends; a stream
  the application stops reading before ``[DONE]`` is not recorded): the answer is
  queued on the `Sentinel` (never blocking, never raising) as a trace record with its
  own id, the slice, ``model`` = the model the request asked for, ``k`` = the
  top_logprobs asked for, the upstream's id in ``meta.response_id``, the call's
  OpenTelemetry GenAI attributes in ``meta.gen_ai``, and with ``record_text=True`` the
  prompt and the answer text.

Any other request (embeddings, files, models...) passes through untouched.
"""

from __future__ import annotations

import http.cookiejar
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import msgspec

from entropy_sentinel.client.delivery import Pending
from entropy_sentinel.client.record import encode_record
from entropy_sentinel.client.sentinel import SentinelBase
from entropy_sentinel.wire.answer import answer_payload, answer_text
from entropy_sentinel.wire.genai import (
    ApiKind,
    CallTimes,
    request_attributes,
    response_attributes,
)
from entropy_sentinel.wire.openai_body import (
    REFUSAL_STATUSES,
    PreparedRequest,
    prepare_request,
    refuses_logprobs,
    strip_logprobs,
)
from entropy_sentinel.wire.sse import SSEFramer, event_data

__all__ = ["SliceOf", "wrap_openai"]

log = logging.getLogger("entropy_sentinel.client")

ClientT = TypeVar("ClientT")

SliceOf = Mapping[str, str] | Callable[[Mapping[str, Any]], Mapping[str, str]] | None
"""A slice for every call, or a function of the request's body (its JSON fields: the
``create`` keyword arguments as sent, ``extra_body`` merged) that returns one."""

_ROUTES: dict[str, ApiKind] = {
    "/chat/completions": "chat",
    "/completions": "completions",
    "/responses": "responses",
}
_NOT_RETURNED = frozenset({b"content-encoding", b"content-length", b"transfer-encoding"})
_RESPONSES_LOGPROBS = "message.output_text.logprobs"
_DONE = b"[DONE]"


def wrap_openai(
    client: ClientT,
    sentinel: SentinelBase,
    *,
    slice: SliceOf = None,
    top_logprobs: int = 20,
    legacy_top_logprobs: int = 5,
    record_text: bool = False,
) -> ClientT:
    """A copy of ``client`` (``openai.OpenAI`` or ``AsyncOpenAI``) that records its answers.

    Args:
        client: the application's openai client; it is not changed.
        sentinel: where records go (`Sentinel` or `AsyncSentinel`).
        slice: the slice of every call, or a function of the request body giving it.
        top_logprobs: alternatives per token to ask for in chat completions (1-20).
        legacy_top_logprobs: the same for legacy completions: OpenAI allows at most 5
            there; vLLM and llama.cpp servers give 20, which an estimator fitted on
            top-20 traces needs (a top-5 trace is refused by it, with the reason).
        record_text: keep each call's prompt and answer text in its trace (what
            annotators need to label it); off by default.

    Returns:
        The wrapped client, of the same type.
    """
    for name, n in (("top_logprobs", top_logprobs), ("legacy_top_logprobs", legacy_top_logprobs)):
        if not 1 <= n <= 20:
            raise ValueError(f"{name}={n!r} must be in 1..20")
    inner = getattr(client, "_client", None)
    copy = getattr(client, "with_options", None)
    if inner is None or not callable(copy):
        raise TypeError(
            f"wrap_openai takes an openai.OpenAI or openai.AsyncOpenAI client, not a "
            f"{type(client).__name__}"
        )
    tap = _Tap(sentinel, slice, (top_logprobs, legacy_top_logprobs), record_text)
    # the outer client only hands requests to the application's own, which keeps the
    # cookies, follows redirects and times out as it always did
    jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    outer: httpx.Client | httpx.AsyncClient
    if hasattr(inner, "aclose"):  # httpx.AsyncClient / httpx2.AsyncClient
        outer = httpx.AsyncClient(
            transport=_AsyncTapTransport(inner, tap), timeout=None, cookies=jar
        )
    else:
        outer = httpx.Client(transport=_TapTransport(inner, tap), timeout=None, cookies=jar)
    wrapped: ClientT = copy(http_client=outer)
    return wrapped


# ---------------------------------------------------------------- the calls
@dataclass
class _Call:
    """One intercepted request and what the answer needs."""

    kind: ApiKind
    prepared: PreparedRequest
    payload: Mapping[str, Any]
    slice: dict[str, str]
    k: int | None
    started: float
    context: Any = None
    request_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.prepared.model


class _Tap:
    """The wrapper's state: options, the models that refuse logprobs, the sentinel."""

    def __init__(
        self,
        sentinel: SentinelBase,
        slice: SliceOf,
        top_logprobs: tuple[int, int],
        record_text: bool,
    ) -> None:
        self.sentinel = sentinel
        self.slice = slice
        self.top_logprobs = top_logprobs
        self.record_text = record_text
        self.refusing: set[str] = set()

    def call(self, request: httpx.Request, body: bytes) -> _Call | None:
        """The call for a request to one of the recorded routes; None for others."""
        kind = _kind(request)
        if kind is None:
            return None
        if kind == "responses":
            prepared = _responses_request(body)
        else:
            n = self.top_logprobs[0 if kind == "chat" else 1]
            prepared = prepare_request(body, kind, n)
        if prepared.strip and (prepared.model or "") in self.refusing:
            prepared = prepared.without_logprobs("the upstream refuses logprobs for this model")
        payload = prepared.payload or {}
        return _Call(
            kind=kind,
            prepared=prepared,
            payload=payload,
            slice=self._slice(payload),
            k=_requested_k(kind, payload),
            started=time.time(),
            context=self.sentinel.otel_context(),
            request_attrs=request_attributes(kind, payload),
        )

    def _slice(self, payload: Mapping[str, Any]) -> dict[str, str]:
        spec = self.slice
        try:
            value = spec(payload) if callable(spec) else spec
            return {str(k): str(v) for k, v in (value or {}).items()}
        except Exception as exc:  # the application's function: never raise into its call
            self.sentinel.outbox.invalid(f"the slice function raised {type(exc).__name__}: {exc}")
            return {}

    def refused(self, call: _Call, status: int) -> _Call:
        """The upstream refused logprobs: remember the model; the request as sent."""
        model = call.model or ""
        if len(self.refusing) >= 1000:
            self.refusing.clear()
        self.refusing.add(model)
        log.warning(
            "sentinel: the upstream refused logprobs for model %r (HTTP %d); its requests "
            "are sent as the application makes them from now on, and not recorded",
            model,
            status,
        )
        call.prepared = call.prepared.without_logprobs("the upstream refuses logprobs")
        return call

    def finish(
        self, call: _Call, *, body: bytes | None = None, chunks: tuple[bytes, ...] = ()
    ) -> None:
        """Queue the trace record of a complete answer (never raises)."""
        if not call.prepared.record:
            return
        try:
            self._finish(call, body, chunks)
        except Exception as exc:  # a bug here must not reach the application
            log.exception("sentinel: recording an answer failed")
            self.sentinel.outbox.invalid(f"{type(exc).__name__}: {exc}")

    def _finish(self, call: _Call, body: bytes | None, chunks: tuple[bytes, ...]) -> None:
        """Queue the record; reading the answer (attributes, text) is left to the sender,
        so the application's thread only pays for queueing."""
        ended = time.time()
        trace_id = uuid.uuid4().hex
        record_text = self.record_text

        def encode() -> bytes:
            return _encode(call, body, chunks, trace_id, ended, record_text)

        times = CallTimes(start=call.started, end=ended, context=call.context)
        self.sentinel.submit(Pending(trace_id, encode, times))


def _encode(
    call: _Call,
    body: bytes | None,
    chunks: tuple[bytes, ...],
    trace_id: str,
    ended: float,
    record_text: bool,
) -> bytes:
    """The trace record of one answer (run by the sender; raises TypeError when the
    answer cannot be read, which the sender counts as invalid)."""
    if call.kind == "responses":
        answer = body if body is not None else _completed_response(chunks)
        if answer is None:
            raise TypeError("a Responses API stream ended without its response")
        texts_body: bytes | None = answer
        texts_chunks: tuple[bytes, ...] = ()
    else:
        answer = answer_payload(call.kind, body, chunks)
        texts_body, texts_chunks = body, chunks
    attrs = {
        "gen_ai.provider.name": "openai",  # the API, as the openai instrumentations say
        **call.request_attrs,
        **response_attributes(texts_body, texts_chunks),
    }
    meta: dict[str, Any] = {
        "sdk": {
            "route": call.kind,
            "stream": call.prepared.stream,
            "client_logprobs": call.prepared.client_logprobs,
            "seconds": round(ended - call.started, 6),
        },
        "gen_ai": attrs,
    }
    prompt = text = None
    if record_text:
        prompt = _prompt(call.payload)
        said = answer_text(texts_body, texts_chunks) if call.kind != "responses" else None
        text = said if isinstance(said, str) else _responses_text(answer, call.kind)
    return encode_record(
        answer,
        id=trace_id,
        slice=call.slice,
        model=call.model,
        k=call.k,
        meta=meta,
        prompt=prompt,
        answer=text,
        timestamp=call.started,
    )


def _kind(request: httpx.Request) -> ApiKind | None:
    if request.method != "POST":
        return None
    path = request.url.path.rstrip("/")
    for suffix, kind in _ROUTES.items():
        if path.endswith(suffix) and not (
            kind == "completions" and path.endswith("/chat" + suffix)
        ):
            return kind
    return None


def _responses_request(body: bytes) -> PreparedRequest:
    """A Responses API request, unchanged: recorded when it asked for logprobs itself."""
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict):
        return PreparedRequest(body, strip=False, record=False, client_logprobs=False)
    include = payload.get("include")
    asked = isinstance(include, list) and _RESPONSES_LOGPROBS in include
    model = payload.get("model")
    return PreparedRequest(
        body,
        strip=False,
        record=asked,
        client_logprobs=asked,
        stream=payload.get("stream") is True,
        model=model if isinstance(model, str) else None,
        skip_reason=None if asked else "the request asked for no logprobs",
        payload=payload,
    )


def _requested_k(kind: ApiKind, payload: Mapping[str, Any]) -> int | None:
    value = payload.get("logprobs" if kind == "completions" else "top_logprobs")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _prompt(payload: Mapping[str, Any]) -> Any:
    for key in ("messages", "prompt", "input"):
        value = payload.get(key)
        if isinstance(value, str) or (
            isinstance(value, list) and all(isinstance(m, dict) for m in value)
        ):
            return value
    return None


def _completed_response(chunks: tuple[bytes, ...]) -> bytes | None:
    """The final response of a Responses API stream (its ``response.completed`` event)."""
    for raw in reversed(chunks):
        try:
            event = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            continue
        if (
            isinstance(event, dict)
            and isinstance(event.get("response"), dict)
            and event.get("type") in ("response.completed", "response.incomplete")
        ):
            return msgspec.json.encode(event["response"])
    return None


def _responses_text(answer: bytes, kind: ApiKind) -> str | None:
    if kind != "responses":
        return None
    try:
        obj = msgspec.json.decode(answer)
    except msgspec.DecodeError:
        return None
    texts = [
        part.get("text") or ""
        for item in obj.get("output") or ()
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or ()
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    return "".join(texts) if texts else None


# ---------------------------------------------------------------- HTTP plumbing
def _inner_request(inner: Any, request: httpx.Request, content: Any, *, replace: bool) -> Any:
    """The request to send with the application's own HTTP client (httpx or httpx2)."""
    drop = {b"content-length"} if replace else set()
    headers = [(k, v) for k, v in request.headers.raw if k.lower() not in drop]
    return inner.build_request(
        request.method,
        str(request.url),
        headers=headers,
        content=content,
        extensions=dict(request.extensions),
    )


def _outer_response(resp: Any, stream: Any) -> httpx.Response:
    """``resp`` (of the inner client) as an httpx response with body ``stream``."""
    headers = [(k, v) for k, v in resp.headers.raw if k.lower() not in _NOT_RETURNED]
    ext = {k: v for k, v in resp.extensions.items() if k in ("http_version", "reason_phrase")}
    return httpx.Response(resp.status_code, headers=headers, stream=stream, extensions=ext)


class _Relay:
    """An event stream on its way to the application: frames it, strips the logprobs
    the wrapper added, keeps each event's data for the record."""

    def __init__(self, call: _Call) -> None:
        self.call = call
        self.framer = SSEFramer()
        self.chunks: list[bytes] = []
        self.done = False

    def feed(self, piece: bytes) -> bytes:
        events = self.framer.feed(piece)
        for event in events:
            data = event_data(event)
            if data is None:
                continue
            data = data.strip()
            if data == _DONE:
                self.done = True
            elif data:
                self.chunks.append(data)
        return b"".join(map(strip_logprobs, events)) if self.call.prepared.strip else piece

    def tail(self) -> bytes:
        rest = self.framer.tail()
        return rest if self.call.prepared.strip else b""

    def ended(self, tap: _Tap, complete: bool) -> None:
        """The stream ended (``complete``: its body ended, or ``[DONE]`` was read)."""
        if complete or self.done:
            tap.finish(self.call, chunks=tuple(self.chunks))


def _is_stream(resp: Any) -> bool:
    return bool(resp.headers.get("content-type", "").startswith("text/event-stream"))


class _TapStream(httpx.SyncByteStream):
    def __init__(self, resp: Any, relay: _Relay | None, tap: _Tap) -> None:
        self.resp = resp
        self.relay = relay
        self.tap = tap
        self._ended = False

    def __iter__(self) -> Iterator[bytes]:
        relay = self.relay
        if relay is None:
            yield from self.resp.iter_bytes()
            return
        for piece in self.resp.iter_bytes():
            out = relay.feed(piece)
            if out:
                yield out
        rest = relay.tail()
        if rest:
            yield rest
        self._ended = True
        relay.ended(self.tap, complete=True)

    def close(self) -> None:
        if self.relay is not None and not self._ended:
            self._ended = True
            self.relay.ended(self.tap, complete=False)
        self.resp.close()


class _AsyncTapStream(httpx.AsyncByteStream):
    def __init__(self, resp: Any, relay: _Relay | None, tap: _Tap) -> None:
        self.resp = resp
        self.relay = relay
        self.tap = tap
        self._ended = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        relay = self.relay
        if relay is None:
            async for piece in self.resp.aiter_bytes():
                yield piece
            return
        async for piece in self.resp.aiter_bytes():
            out = relay.feed(piece)
            if out:
                yield out
        rest = relay.tail()
        if rest:
            yield rest
        self._ended = True
        relay.ended(self.tap, complete=True)

    async def aclose(self) -> None:
        if self.relay is not None and not self._ended:
            self._ended = True
            self.relay.ended(self.tap, complete=False)
        await self.resp.aclose()


class _TapTransport(httpx.BaseTransport):
    """Sends through the application's sync HTTP client, recording on the way."""

    def __init__(self, inner: Any, tap: _Tap) -> None:
        self.inner = inner
        self.tap = tap

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        call = self.tap.call(request, request.read()) if _kind(request) else None
        if call is None:
            resp = self.inner.send(
                _inner_request(self.inner, request, request.stream, replace=False), stream=True
            )
            return _outer_response(resp, _TapStream(resp, None, self.tap))
        resp = self._send(request, call)
        if call.prepared.strip and resp.status_code in REFUSAL_STATUSES:
            early = resp.read()
            resp.close()
            if not refuses_logprobs(resp.status_code, early):
                return _outer_response(resp, httpx.ByteStream(early))
            resp = self._send(request, self.tap.refused(call, resp.status_code))
        if not 200 <= resp.status_code < 300:
            return _outer_response(resp, _TapStream(resp, None, self.tap))
        if _is_stream(resp):
            return _outer_response(resp, _TapStream(resp, _Relay(call), self.tap))
        try:
            body = resp.read()
        finally:
            resp.close()
        self.tap.finish(call, body=body)
        return _outer_response(resp, httpx.ByteStream(_stripped(call, body)))

    def _send(self, request: httpx.Request, call: _Call) -> Any:
        req = _inner_request(self.inner, request, call.prepared.body, replace=True)
        return self.inner.send(req, stream=True)

    def close(self) -> None:
        """The application's HTTP client stays open: it belongs to the original client."""


class _AsyncTapTransport(httpx.AsyncBaseTransport):
    """Sends through the application's async HTTP client, recording on the way."""

    def __init__(self, inner: Any, tap: _Tap) -> None:
        self.inner = inner
        self.tap = tap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        call = self.tap.call(request, await request.aread()) if _kind(request) else None
        if call is None:
            req = _inner_request(self.inner, request, request.stream, replace=False)
            resp = await self.inner.send(req, stream=True)
            return _outer_response(resp, _AsyncTapStream(resp, None, self.tap))
        resp = await self._send(request, call)
        if call.prepared.strip and resp.status_code in REFUSAL_STATUSES:
            early = await resp.aread()
            await resp.aclose()
            if not refuses_logprobs(resp.status_code, early):
                return _outer_response(resp, httpx.ByteStream(early))
            resp = await self._send(request, self.tap.refused(call, resp.status_code))
        if not 200 <= resp.status_code < 300:
            return _outer_response(resp, _AsyncTapStream(resp, None, self.tap))
        if _is_stream(resp):
            return _outer_response(resp, _AsyncTapStream(resp, _Relay(call), self.tap))
        try:
            body = await resp.aread()
        finally:
            await resp.aclose()
        self.tap.finish(call, body=body)
        return _outer_response(resp, httpx.ByteStream(_stripped(call, body)))

    async def _send(self, request: httpx.Request, call: _Call) -> Any:
        req = _inner_request(self.inner, request, call.prepared.body, replace=True)
        return await self.inner.send(req, stream=True)

    async def aclose(self) -> None:
        """The application's HTTP client stays open: it belongs to the original client."""


def _stripped(call: _Call, body: bytes) -> bytes:
    return strip_logprobs(body) if call.prepared.strip else body
