"""`Proxy`: the OpenAI-compatible reverse proxy that records a trace of every answer.

``POST /v1/chat/completions`` and ``POST /v1/completions`` are forwarded to
``{upstream}/chat/completions`` and ``{upstream}/completions`` over one shared
`httpx.AsyncClient` (connection pooling, keep-alive). On the way:

* **Request.** The body gets logprobs when the client did not ask for them
  (`entropy_sentinel.wire.openai_body.prepare_request`); the client's headers are
  forwarded as sent — ``Authorization``, ``OpenAI-Organization``, ``OpenAI-Project``,
  ``OpenAI-Beta``, ``User-Agent``, ``X-Request-ID`` and any other — except hop-by-hop
  headers (``Connection`` and those it names, ``Keep-Alive``, ``TE``, ``Trailer``,
  ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``), ``Host``, ``Content-Length``
  (recomputed), ``Expect``, ``Accept-Encoding`` (the proxy asks for ``identity``: it
  reads the answer) and the proxy's own ``X-Sentinel-*`` headers. Headers are never
  logged or stored.
* **Slice.** From ``X-Sentinel-Slice: domain=chemistry,customer=acme``, else from the
  body's ``metadata.sentinel_slice`` (same text; removed before forwarding); see
  `entropy_sentinel.service.proxy.slice_spec`. A malformed slice is a 400 naming the fix.
* **Answer.** Status and headers are the upstream's (less hop-by-hop headers,
  ``Content-Length``, ``Content-Encoding``, ``Date`` and ``Server``, which this server
  sets itself), plus ``X-Sentinel-Trace-Id``, the id its trace is recorded under (an id
  of the proxy's own: upstream ids can repeat). A 2xx answer with logprobs the proxy
  added gets them replaced by ``null`` in its original bytes (`strip_logprobs`); a
  stream (``text/event-stream``) is relayed as it arrives, event by event, each
  rewritten only when it carries logprobs to remove (``data: [DONE]``, comments and
  other events pass unchanged); a client that asked for logprobs gets the upstream's
  bytes untouched. Upstream errors (any non-2xx) pass back with the upstream's status,
  headers and body.
* **Failures of the proxy itself**, with an OpenAI-style body
  ``{"error": {"message", "type", "param", "code"}}``: 504 when the upstream does not
  answer in time (``upstream_timeout`` between bytes; ``proxy_answer_deadline`` for a
  whole non-streamed answer), 502 when it cannot be reached, breaks the protocol, sends
  more than ``proxy_max_answer_bytes``, or sends an answer whose added logprobs cannot be
  removed (not valid JSON: it is withheld, never passed on), 404 when no upstream is
  configured, 400 for a bad slice, 401/403 for the service's key. A stream that breaks
  off mid-way is cut off for the client too (the connection is aborted, as the
  upstream's would be); a stream that goes quiet for ``proxy_stream_idle_timeout``, lasts
  past ``proxy_stream_max_seconds``, grows past ``proxy_max_answer_bytes`` or carries an
  event that cannot be stripped ends with an OpenAI-style error event
  (``data: {"error": {...}}``), which OpenAI clients raise.
* **An upstream that refuses logprobs** for a model (a 400 or 422 answer that mentions
  logprobs, to a request the proxy added them to; OpenAI's reasoning models do this) gets
  the client's request again as sent, and the client gets that answer; the proxy
  remembers the model and forwards its later requests unchanged (not recorded:
  ``skipped``).
* **Recording** never delays an answer: the answer's bytes go to a `Recorder`, which
  hands them to a separate recorder process (`entropy_sentinel.service.proxy.record`).
  A recording failure is counted (``sentinel_proxy_traces_total``) and logged, never
  seen by the client. When the recorder is behind by ``proxy_record_queue`` answers, a
  new request waits before it is forwarded (back-pressure).

Keys: with API keys configured, a proxy request needs a key with the ``ingest`` scope
in ``X-Sentinel-Key`` (``Authorization`` belongs to the upstream); without keys, only
loopback clients are served, as on every other route.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.redact import redact_text, redact_url
from entropy_sentinel.service.auth import Authenticator, AuthError
from entropy_sentinel.service.proxy.metrics import ProxyMetrics
from entropy_sentinel.service.proxy.record import Exchange, Recorder, new_trace_id
from entropy_sentinel.service.proxy.slice_spec import SLICE_HEADER, parse_slice
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.wire.openai_body import (
    REFUSAL_STATUSES,
    Kind,
    PreparedRequest,
    UnstrippableError,
    prepare_request,
    refuses_logprobs,
    strip_logprobs,
)
from entropy_sentinel.wire.sse import SSEFramer, event_data

__all__ = [
    "KEY_HEADER",
    "TRACE_ID_HEADER",
    "AnswerTooLargeError",
    "Proxy",
    "StreamBrokenError",
    "openai_error",
]

log = logging.getLogger("entropy_sentinel.service.proxy")

KEY_HEADER = "x-sentinel-key"
"""The service's own API key on proxy requests (``Authorization`` goes upstream)."""
TRACE_ID_HEADER = "x-sentinel-trace-id"
"""Added to a recorded answer: the id of its trace (``POST /v1/labels`` takes it)."""

_ROUTES: dict[str, str] = {"chat": "chat/completions", "completions": "completions"}
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = _HOP_BY_HOP | {b"host", b"content-length", b"expect", b"accept-encoding"}
_NOT_RETURNED = _HOP_BY_HOP | {b"content-length", b"content-encoding", b"date", b"server"}
_DONE = b"[DONE]"
_REFUSES = "the upstream refuses logprobs for this model"


class StreamBrokenError(ConnectionError):
    """The upstream's stream broke off; raised to abort the client's connection too."""


class AnswerTooLargeError(Exception):
    """An upstream answer is larger than ``proxy_max_answer_bytes``."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


@dataclass(frozen=True)
class _Limits:
    """The proxy's limits on upstream answers (seconds and bytes; see `Settings`)."""

    max_answer_bytes: int
    answer_deadline: float
    stream_idle: float
    stream_max: float


def openai_error(
    status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None
) -> JSONResponse:
    """An error answer shaped like OpenAI's, so OpenAI clients show ``message``."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _connection_listed(raw: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names listed in ``Connection`` (hop-by-hop by declaration)."""
    return {
        token.strip().lower()
        for name, value in raw
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def forwarded_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The client's headers to send upstream (see the module docstring)."""
    drop = _NOT_FORWARDED | _connection_listed(raw)
    out = [
        (name, value)
        for name, value in raw
        if (low := name.lower()) not in drop and not low.startswith(b"x-sentinel-")
    ]
    out.append((b"accept-encoding", b"identity"))
    return out


def returned_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers to pass back (see the module docstring)."""
    drop = _NOT_RETURNED | _connection_listed(raw)
    return [(name.lower(), value) for name, value in raw if name.lower() not in drop]


class Proxy:
    """The reverse proxy of one service (see the module docstring).

    Args:
        settings: ``upstream``, ``upstream_timeout``, ``proxy_top_logprobs``.
        recorder: where finished answers go to be recorded (started by the caller).
        metrics: the proxy's counters.
        auth: the service's key check.
        transport: an httpx transport for the upstream (default: TCP with pooling).
    """

    def __init__(
        self,
        settings: Settings,
        recorder: Recorder,
        metrics: ProxyMetrics,
        auth: Authenticator,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.upstream = settings.upstream.rstrip("/") if settings.upstream else None
        self.top_logprobs = settings.proxy_top_logprobs
        self.record_text = settings.proxy_record_text
        self.recorder = recorder
        self.metrics = metrics
        self.auth = auth
        self.limits = _Limits(
            max_answer_bytes=settings.proxy_max_answer_bytes,
            answer_deadline=settings.proxy_answer_deadline,
            stream_idle=settings.proxy_stream_idle_timeout,
            stream_max=settings.proxy_stream_max_seconds,
        )
        self._refusing: set[str] = set()  # models the upstream gives no logprobs for
        timeout = settings.upstream_timeout
        self._stream_timeout = httpx.Timeout(
            settings.proxy_stream_idle_timeout, connect=min(10.0, timeout)
        )
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(
                max_connections=512, max_keepalive_connections=64, keepalive_expiry=30.0
            ),
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        """Close the upstream connections, then record what is queued (shutdown)."""
        await self.client.aclose()
        await anyio.to_thread.run_sync(self.recorder.close)

    # ------------------------------------------------------------- forwarding
    async def forward(self, request: Request, kind: Kind) -> Response:
        """Forward one client request and answer it (see the module docstring)."""
        route = _ROUTES[kind]
        received = time.time()
        refused = self._check(request, route)
        if refused is not None:
            return refused
        assert self.upstream is not None  # checked by _check
        prepared = prepare_request(await request.body(), kind, self.top_logprobs)
        try:
            slice_ = self._slice(request, prepared)
        except ConfigError as exc:
            self.metrics.requests.labels(route, "refused").inc()
            return openai_error(
                400, str(exc), type_="invalid_request_error", code="invalid_slice", param="slice"
            )
        url = f"{self.upstream}/{route}"
        if request.url.query:
            url += "?" + request.url.query
        headers_out = forwarded_headers(request.headers.raw)
        model = prepared.model or ""
        if prepared.strip and model in self._refusing:
            prepared = prepared.without_logprobs(_REFUSES)
        if prepared.record:
            await self.recorder.wait_for_room()  # back-pressure: before anything is relayed
        started = time.perf_counter()
        deadline = anyio.current_time() + self.limits.answer_deadline
        early: bytes | None = None  # an answer already read (a refusal passed back)
        try:
            with anyio.fail_after(self.limits.answer_deadline):
                resp = await self._send(url, prepared.body, headers_out, prepared.stream)
                if prepared.strip and resp.status_code in REFUSAL_STATUSES:
                    early = await self._read(resp)
                    if refuses_logprobs(resp.status_code, early):  # this model cannot give them
                        self._refuses(model, resp.status_code)
                        prepared = prepared.without_logprobs(_REFUSES)
                        resp = await self._send(url, prepared.body, headers_out, prepared.stream)
                        early = None
        except httpx.HTTPError as exc:
            return self._gateway_error(route, exc)
        except TimeoutError:
            return self._deadline_error(route)
        except AnswerTooLargeError as exc:
            return self._too_large(route, exc)
        waited = time.perf_counter() - started
        self.metrics.upstream_seconds.labels(route).observe(waited)
        request.state.log_fields = {
            "upstream_status": resp.status_code,
            "upstream_ms": round(waited * 1000, 3),
            "stream": prepared.stream,
        }
        ok = 200 <= resp.status_code < 300
        exchange = _PendingExchange(
            kind=kind,
            received_at=received,
            slice=slice_,
            meta={
                "route": route,
                "model": prepared.model,
                "stream": prepared.stream,
                "client_logprobs": prepared.client_logprobs,
                "request_id": request.scope.get("state", {}).get("request_id"),
            },
            prompt=_prompt(prepared) if self.record_text else None,
            trace_id=new_trace_id() if ok and prepared.record else "",
        )
        headers = returned_headers(resp.headers.raw)
        if exchange.trace_id:  # the id the answer is recorded under (for labels later)
            headers.append((TRACE_ID_HEADER.encode(), exchange.trace_id.encode()))
        if ok and resp.headers.get("content-type", "").startswith("text/event-stream"):
            return _SSERelay(self, resp, route, prepared, exchange, headers)
        try:
            with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                body = early if early is not None else await self._read(resp)
        except httpx.HTTPError as exc:
            return self._gateway_error(route, exc)
        except TimeoutError:
            return self._deadline_error(route)
        except AnswerTooLargeError as exc:
            return self._too_large(route, exc)
        finally:
            await resp.aclose()
        if not ok:
            self.metrics.requests.labels(route, "upstream_error").inc()
            self.recorder.skipped(f"upstream status {resp.status_code}")
        else:
            raw = body
            if prepared.strip:
                try:
                    body = strip_logprobs(body)
                except UnstrippableError as exc:
                    return self._unstrippable(route, exc)
            self.metrics.requests.labels(route, "ok").inc()
            self._record(prepared, exchange, body=raw)
        out = Response(body, status_code=resp.status_code)
        out.raw_headers = [*headers, *out.raw_headers]
        return out

    async def _read(self, resp: httpx.Response) -> bytes:
        """The whole body of ``resp``, at most ``proxy_max_answer_bytes`` (else
        `AnswerTooLargeError`); closes ``resp``."""
        cap = self.limits.max_answer_bytes
        parts: list[bytes] = []
        size = 0
        try:
            async for piece in resp.aiter_bytes():
                size += len(piece)
                if size > cap:
                    raise AnswerTooLargeError(size)
                parts.append(piece)
        finally:
            await resp.aclose()
        return b"".join(parts)

    async def _send(
        self, url: str, body: bytes, headers: list[tuple[bytes, bytes]], stream: bool
    ) -> httpx.Response:
        # a stream's reads wait at most proxy_stream_idle_timeout each (its first bytes
        # included); a non-streamed answer's, upstream_timeout
        timeout = self._stream_timeout if stream else None
        request = self.client.build_request(
            "POST", url, content=body, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT
        )
        return await self.client.send(request, stream=True)

    def _refuses(self, model: str, status: int) -> None:
        """Remember that the upstream refuses logprobs for ``model`` (bounded memory)."""
        if len(self._refusing) >= 1000:
            self._refusing.clear()
        self._refusing.add(model)
        log.warning(
            "proxy: the upstream refused logprobs for model %r (HTTP %d); its requests are "
            "forwarded as sent from now on, and not recorded",
            model,
            status,
            extra={"model": model},
        )

    def _check(self, request: Request, route: str) -> JSONResponse | None:
        """The proxy's own refusals: the service's key, no upstream configured."""
        try:
            self.auth.check(request, request.headers.get(KEY_HEADER), "ingest")
        except AuthError as exc:
            self.metrics.requests.labels(route, "refused").inc()
            hint = (
                " (proxy requests carry the service's key in X-Sentinel-Key; Authorization "
                "is forwarded to the upstream)"
                if exc.status == 401
                else ""
            )
            return openai_error(
                exc.status, str(exc) + hint, type_="invalid_request_error", code="sentinel_auth"
            )
        if self.upstream is None:
            self.metrics.requests.labels(route, "refused").inc()
            return openai_error(
                404,
                "this entropy-sentinel service has no upstream to proxy to: start it with "
                "`sentinel serve --upstream URL` (the OpenAI-compatible base URL, e.g. "
                "http://127.0.0.1:8080/v1)",
                type_="invalid_request_error",
                code="proxy_not_configured",
            )
        return None

    def _slice(self, request: Request, prepared: PreparedRequest) -> dict[str, str]:
        header = request.headers.get(SLICE_HEADER)
        if header is not None:
            # headers arrive as latin-1; clients that send UTF-8 mean UTF-8
            with contextlib.suppress(UnicodeError):
                header = header.encode("latin-1").decode("utf-8")
            return parse_slice(header, "X-Sentinel-Slice")
        if prepared.slice_text is not None:
            return parse_slice(prepared.slice_text, "metadata.sentinel_slice")
        return {}

    def _gateway_error(self, route: str, exc: httpx.HTTPError) -> JSONResponse:
        where = f"the upstream {redact_url(self.upstream or '')}"
        if isinstance(exc, httpx.TimeoutException):
            self.metrics.requests.labels(route, "timeout").inc()
            log.warning("proxy: %s timed out (%s)", where, type(exc).__name__)
            return openai_error(
                504,
                f"{where} did not answer in time ({type(exc).__name__}; upstream_timeout is "
                f"{self.client.timeout.read} s)",
                type_="upstream_error",
                code="upstream_timeout",
            )
        self.metrics.requests.labels(route, "unreachable").inc()
        why = redact_text(str(exc))
        log.warning("proxy: %s failed: %s: %s", where, type(exc).__name__, why)
        return openai_error(
            502,
            f"{where} failed: {type(exc).__name__}: {why}",
            type_="upstream_error",
            code="upstream_unreachable",
        )

    def _deadline_error(self, route: str) -> JSONResponse:
        self.metrics.requests.labels(route, "timeout").inc()
        seconds = self.limits.answer_deadline
        log.warning("proxy: the upstream's answer took longer than %.0f s", seconds)
        return openai_error(
            504,
            f"the upstream did not finish its answer within proxy_answer_deadline = {seconds:g} "
            "s; raise it in the service's settings if answers this long are expected",
            type_="upstream_error",
            code="upstream_deadline",
        )

    def _too_large(self, route: str, exc: AnswerTooLargeError) -> JSONResponse:
        self.metrics.requests.labels(route, "too_large").inc()
        cap = self.limits.max_answer_bytes
        log.warning("proxy: an upstream answer was larger than %d bytes", cap)
        return openai_error(
            502,
            f"the upstream's answer is larger than proxy_max_answer_bytes = {cap} bytes "
            f"(at least {exc.size}); the proxy does not relay it. Raise the limit in the "
            "service's settings if answers this large are expected",
            type_="upstream_error",
            code="answer_too_large",
        )

    def _unstrippable(self, route: str, exc: UnstrippableError) -> JSONResponse:
        self.metrics.requests.labels(route, "unstrippable").inc()
        self.recorder.skipped("unstrippable answer")
        log.warning("proxy: an answer was withheld: %s", exc)
        return openai_error(
            502,
            f"{exc}; the answer is withheld rather than passed on with logprobs the client did "
            "not ask for. Retry, or ask for logprobs yourself to receive the upstream's answer "
            "unchanged",
            type_="upstream_error",
            code="unstrippable_answer",
        )

    def _record(
        self,
        prepared: PreparedRequest,
        pending: _PendingExchange,
        *,
        body: bytes | None = None,
        chunks: tuple[bytes, ...] = (),
    ) -> None:
        if not prepared.record:
            self.recorder.skipped(prepared.skip_reason or "no logprobs")
            return
        self.recorder.submit(
            Exchange(
                kind=pending.kind,
                received_at=pending.received_at,
                slice=pending.slice,
                meta=pending.meta,
                body=body,
                chunks=chunks,
                prompt=pending.prompt,
                id=pending.trace_id,
                model=prepared.model,
                k=prepared.k,
            )
        )


class _PendingExchange:
    """What is known of an exchange before its answer is complete."""

    __slots__ = ("kind", "meta", "prompt", "received_at", "slice", "trace_id")

    def __init__(
        self,
        *,
        kind: Kind,
        received_at: float,
        slice: dict[str, str],
        meta: dict[str, Any],
        prompt: Any,
        trace_id: str,
    ) -> None:
        self.trace_id = trace_id
        self.kind = kind
        self.received_at = received_at
        self.slice = slice
        self.meta = meta
        self.prompt = prompt


def _prompt(prepared: PreparedRequest) -> Any:
    payload = prepared.payload or {}
    return payload.get("messages", payload.get("prompt"))


class _SSERelay(Response):
    """Relays an upstream event stream to the client as it arrives (module docstring).

    The client's disconnect is watched alongside, so the upstream stream is closed as
    soon as nobody reads it. The answer is recorded when the stream ended normally, or
    when the client left after ``data: [DONE]`` (OpenAI clients stop reading there and
    may close the connection before the upstream's end of body arrives).
    """

    def __init__(
        self,
        proxy: Proxy,
        upstream: httpx.Response,
        route: str,
        prepared: PreparedRequest,
        pending: _PendingExchange,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.proxy = proxy
        self.upstream = upstream
        self.route = route
        self.prepared = prepared
        self.pending = pending
        self.status_code = upstream.status_code
        self.raw_headers = headers
        self.background = None
        self._done_sent = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        outcome = "disconnected"
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                outcome = await self._pump(send, chunks)
                tg.cancel_scope.cancel()
        except OSError:  # the client went away while we were sending (ASGI 2.4 servers)
            outcome = "disconnected"
        finally:
            if outcome == "disconnected" and self._done_sent:
                outcome = "ok"  # the client had the whole answer
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            self._finish(outcome, chunks)
        if outcome == "broken":
            # cut the client's connection off too, as the upstream's was (not an error the
            # app's handlers could answer: the response has started)
            raise StreamBrokenError(
                f"the upstream {redact_url(self.proxy.upstream or '')} broke off a stream"
            )

    async def _pump(self, send: Send, chunks: list[bytes]) -> str:
        strip = self.prepared.strip
        limits = self.proxy.limits
        framer = SSEFramer()
        ends = anyio.current_time() + limits.stream_max
        size = 0
        try:
            # each read waits at most proxy_stream_idle_timeout (the request's read timeout)
            async for piece in self.upstream.aiter_bytes():
                if anyio.current_time() > ends:
                    return await self._fail(
                        send,
                        "timeout",
                        "stream_deadline",
                        f"the stream lasted longer than proxy_stream_max_seconds = "
                        f"{limits.stream_max:g} s",
                    )
                size += len(piece)
                if size > limits.max_answer_bytes:
                    return await self._fail(
                        send,
                        "too_large",
                        "answer_too_large",
                        f"the stream is larger than proxy_max_answer_bytes = "
                        f"{limits.max_answer_bytes} bytes",
                    )
                events = framer.feed(piece)
                done = False
                for event in events:
                    data = event_data(event)
                    if data is None:
                        continue
                    data = data.strip()
                    if data == _DONE:
                        done = True
                    elif data:
                        chunks.append(data)
                try:
                    out = b"".join(map(strip_logprobs, events)) if strip else piece
                except UnstrippableError as exc:
                    return await self._fail(send, "unstrippable", "unstrippable_answer", str(exc))
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                self._done_sent = self._done_sent or done
            rest = framer.tail()
            if rest and strip:
                try:
                    rest = strip_logprobs(rest)
                except UnstrippableError as exc:
                    return await self._fail(send, "unstrippable", "unstrippable_answer", str(exc))
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except httpx.ReadTimeout:
            return await self._fail(
                send,
                "timeout",
                "stream_idle_timeout",
                "the upstream sent nothing for proxy_stream_idle_timeout = "
                f"{limits.stream_idle:g} s",
            )
        except httpx.HTTPError as exc:
            log.warning(
                "proxy: the upstream stream broke off: %s: %s",
                type(exc).__name__,
                redact_text(str(exc)),
            )
            return "broken"
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "ok"

    async def _fail(self, send: Send, outcome: str, code: str, message: str) -> str:
        """End the stream with an OpenAI-style error event (the status line is sent)."""
        log.warning("proxy: a stream was ended: %s", message)
        error = {
            "error": {"message": message, "type": "upstream_error", "param": None, "code": code}
        }
        event = b"data: " + msgspec.json.encode(error) + b"\n\n"
        await send({"type": "http.response.body", "body": event, "more_body": False})
        return outcome

    def _finish(self, outcome: str, chunks: list[bytes]) -> None:
        proxy = self.proxy
        proxy.metrics.requests.labels(self.route, outcome).inc()
        if outcome == "ok":
            proxy._record(self.prepared, self.pending, chunks=tuple(chunks))
        else:
            proxy.recorder.skipped(f"stream {outcome}")
