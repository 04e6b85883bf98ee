"""`Sentinel`: record responses from application code; one background thread sends them.

>>> from entropy_sentinel.client import Sentinel
>>> with Sentinel("http://127.0.0.1:9", max_retry_time=0.0) as s:  # nothing listens there
...     trace_id = s.record({"id": "c-1", "model": "m", "choices": []}, slice={"d": "x"})
...     s.flush(5.0)
True
>>> s.stats.recorded, s.stats.failed
(1, 1)

`record` only queues (the response is encoded by the sender thread) and returns the
record's trace id; it never blocks and never raises. The thread batches what is queued
(``POST /v1/traces`` with ``{"traces": [...]}``), waiting up to ``linger`` seconds for
more after the first record; retries with exponential backoff on connection errors,
timeouts, 408/429/5xx (honouring ``Retry-After``) for up to ``max_retry_time`` seconds;
splits a batch the service finds too large (413). What it cannot deliver is counted
(`SenderStats`) and logged (at most one warning per 30 s per kind of loss): records
dropped because ``max_queue`` are waiting or the sender is closed, records that failed
after ``max_retry_time``, records the service rejected (with its reasons).

`flush` waits until everything queued so far is settled; `close` flushes, then stops the
thread (also at interpreter exit, for at most 5 s).
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from entropy_sentinel.client.delivery import Delivery, Outbox, Pending, SenderStats
from entropy_sentinel.client.record import encode_record
from entropy_sentinel.wire.genai import CallTimes

__all__ = ["Sentinel", "SentinelBase"]

log = logging.getLogger("entropy_sentinel.client")

_MiB = 1 << 20


class SentinelBase:
    """What `Sentinel` and `AsyncSentinel` share: options, `record`, the counters.

    Args:
        url: the service's base URL (``http://host:8000``); records go to
            ``{url}/v1/traces``.
        api_key: a key with the ``ingest`` scope (sent as ``Authorization: Bearer``);
            None for a service without keys (loopback only).
        max_queue: records waiting at most; beyond it new ones are dropped (counted).
            Records hold their responses (top-20 logprobs: about 2 KB per token).
        batch_size: most records per request.
        max_batch_bytes: about the most bytes per request.
        linger: seconds to wait for more records after the first of a batch.
        timeout: seconds per request.
        max_retry_time: seconds a batch keeps being retried before it counts as failed.
        otel: an `entropy_sentinel.otel.EvaluationSpans` that gets one span per stored
            record with its P(correct) (see docs/integrations.md), or None.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        max_queue: int = 1000,
        batch_size: int = 100,
        max_batch_bytes: int = 8 * _MiB,
        linger: float = 0.2,
        timeout: float = 10.0,
        max_retry_time: float = 60.0,
        otel: Any = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url={url!r} must be the service's http:// or https:// base URL")
        self.url = url.rstrip("/")
        self.endpoint = self.url + "/v1/traces"
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.linger = linger
        self.timeout = timeout
        self.otel = otel
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self.outbox = Outbox(max_queue)
        self.delivery = Delivery(max_retry_time=max_retry_time)

    @property
    def stats(self) -> SenderStats:
        """A snapshot of the counters."""
        with self.outbox.lock:
            return dataclasses.replace(self.outbox.stats)

    def record(
        self,
        response: Any,
        *,
        slice: Mapping[str, str] | None = None,
        id: str | None = None,
        model: str | None = None,
        correct: bool | None = None,
        meta: Mapping[str, Any] | None = None,
        prompt: Any = None,
        answer: str | None = None,
        k: int | None = None,
    ) -> str | None:
        """Queue one response to be recorded; returns its trace id (None if dropped).

        Args:
            response: an openai SDK response, a dict, a list of stream chunks (models or
                dicts), or JSON bytes; any OpenAI / vLLM / llama.cpp shape with logprobs.
            slice: the slice {dimension: value} the response counts under.
            id: the trace id (default: a new random one; labels refer to it).
            model: the model the request asked for (default: the one the response names).
            correct: the label, when known.
            meta: free-form facts kept with the trace.
            prompt, answer: the request's text (or chat messages) and the answer's text,
                kept for the labelling queue when the application opts in.
            k: the ``top_logprobs`` the request asked for.
        """
        trace_id = id or uuid.uuid4().hex
        ts = time.time()
        try:
            slice_ = _check_slice(slice)
        except (TypeError, ValueError) as exc:
            self.outbox.invalid(str(exc))
            return None

        def encode() -> bytes:
            return encode_record(
                response,
                id=trace_id,
                slice=slice_,
                model=model,
                k=k,
                correct=correct,
                meta=meta,
                prompt=prompt,
                answer=answer,
                timestamp=ts,
            )

        times = CallTimes(start=ts, end=ts, context=self.otel_context())
        return trace_id if self.submit(Pending(trace_id, encode, times)) else None

    def submit(self, item: Pending) -> bool:
        """Queue a ready `Pending` record (never blocks); False when dropped."""
        return self.outbox.put(item)

    def otel_context(self) -> Any:
        """The caller's OpenTelemetry context, when spans are exported (their parent)."""
        if self.otel is None:
            return None
        try:
            from opentelemetry import context
        except ImportError:
            return None
        return context.get_current()

    def _take(self) -> list[Pending]:
        return self.outbox.take(self.batch_size, self.max_batch_bytes)

    def _encode(self, batch: list[Pending]) -> tuple[list[Pending], bytes | None]:
        """(the records that could be encoded, their request body)."""
        good: list[Pending] = []
        for p in batch:
            try:
                p.payload()
            except Exception as exc:  # the application's object, not ours: never raise
                self.outbox.invalid(f"{type(exc).__name__}: {exc}")
                self.outbox.done(1)
                continue
            good.append(p)
        return good, (self.delivery.body(good) if good else None)

    def _export(self, batch: list[Pending], results: Mapping[str, float | None]) -> None:
        if self.otel is None or not results:
            return
        try:
            self.otel.emit_records(batch, results)
        except Exception:
            log.exception("sentinel: exporting spans failed")


def _check_slice(slice: Mapping[str, str] | None) -> dict[str, str]:
    if slice is None:
        return {}
    if not isinstance(slice, Mapping):
        raise TypeError(f"slice must be a mapping of dimension to value, got {slice!r}")
    return {str(k): str(v) for k, v in slice.items()}


class Sentinel(SentinelBase):
    """Records responses and sends them from one background thread (module docstring).

    Takes the arguments of `SentinelBase`, plus ``transport``: an httpx transport for
    the service (tests; default: TCP).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, api_key, **options)
        self._client = httpx.Client(timeout=self.timeout, transport=transport)
        self._stop = threading.Event()
        self._flushing = 0
        self._thread = threading.Thread(target=self._run, name="entropy-sentinel", daemon=True)
        self._thread.start()
        atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------ lifecycle
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is settled; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        box = self.outbox
        with box.lock:
            self._flushing += 1
            box.changed.notify_all()
            try:
                while box.unfinished and self._thread.is_alive():
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    box.changed.wait(left)
                return not box.unfinished
            finally:
                self._flushing -= 1

    def close(self, timeout: float | None = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` s), then stop the thread.

        Records still queued after ``timeout`` are counted as dropped and logged.
        """
        if self.outbox.closed:
            return
        self.flush(timeout)
        box = self.outbox
        with box.lock:
            box.closed = True
            left = box.drain()
            box.stats.dropped += len(left)
            box.changed.notify_all()
        self._stop.set()
        self._thread.join(timeout)
        self._client.close()
        if left:
            log.warning("sentinel: closed with %d trace records unsent (dropped)", len(left))

    def __enter__(self) -> Sentinel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------ the thread
    def _run(self) -> None:
        box = self.outbox
        while True:
            with box.lock:
                while not len(box) and not self._stop.is_set():
                    box.changed.wait()
                if self._stop.is_set() and not len(box):
                    return
                # linger for more, unless a flush waits or the batch is full
                deadline = time.monotonic() + self.linger
                while len(box) < self.batch_size and not self._flushing and not box.closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    box.changed.wait(left)
                batch = self._take()
            try:
                self._deliver(batch)
            except Exception:  # a bug must not stop the thread: count the batch, go on
                log.exception("sentinel: sending %d trace records failed", len(batch))
                with box.lock:
                    box.stats.failed += len(batch)
                box.done(len(batch))

    def _deliver(self, batch: list[Pending]) -> None:
        batch, body = self._encode(batch)
        if body is None:
            return
        started = time.monotonic()
        attempt = 0
        while True:
            status, data, retry_after, error = self._post(body)
            verdict = self.delivery.settle(
                self.outbox,
                batch,
                status=status,
                body=data,
                retry_after=retry_after,
                error=error,
                attempt=attempt,
                started=started,
            )
            if verdict.split:
                half = len(batch) // 2
                for part in (batch[:half], batch[half:]):
                    self._deliver(part)
                return
            if not verdict.retry or self._stop.wait(verdict.delay):
                if verdict.retry:  # closing while waiting to retry: the batch is lost
                    with self.outbox.lock:
                        self.outbox.stats.failed += len(batch)
                self._export(batch, verdict.results)
                self.outbox.done(len(batch))
                return
            attempt += 1

    def _post(self, body: bytes) -> tuple[int | None, bytes, str | None, str | None]:
        with self.outbox.lock:
            self.outbox.stats.requests += 1
        try:
            r = self._client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return None, b"", None, f"{type(exc).__name__}: {exc}"
        return r.status_code, r.content, r.headers.get("retry-after"), None


def _close_at_exit(ref: weakref.ref[Sentinel]) -> None:
    sentinel = ref()
    if sentinel is not None:
        sentinel.close(timeout=5.0)
