"""Recording proxied answers as traces, off the response path.

The proxy hands each finished exchange (the upstream's answer bytes, or the ``data``
payloads of its stream) to `Recorder.submit`, which only queues it. One recorder
thread takes what is queued, waiting up to ``linger`` seconds (0.2) after the first
exchange for more (at most ``_BATCH``), turns each exchange into a canonical trace
record (`build_record`) and ingests them in-process
(`IngestPipeline.ingest_records_sync`: the ingest API's validation, scoring and group
commit, no HTTP). Its outcome per trace is counted in ``sentinel_proxy_traces_total``;
rejections and failures are logged with the trace id and the reason. Nothing here can
reach the client: a full queue drops the exchange (counted ``dropped``), an error is
counted ``failed``.

Why linger: recording runs in the proxy's process, and every ingest call pays the
estimator's fixed per-call cost (about 15 ms, docs/service.md) while holding the GIL
the event loop needs. Gathering what arrives within 0.2 s into one call keeps that cost
per batch, not per request, so it competes less with the answers being relayed; a
trace reaches the database a fraction of a second later.

The record of an exchange::

    {"id": <the upstream's response id>, "model": <the model the request asked for>,
     "slice": {...}, "timestamp": <received>,
     "meta": {"proxy": {"route", "model", "answer_model", "stream", "client_logprobs",
                        "request_id"},
              "prompt": ..., "answer": ...},       # prompt/answer with proxy_record_text
     "logprobs": <the response> | [<stream chunks>]}

``model`` is the key the service scores the trace under (the requested model: the
answer may name a dated version, llama.cpp a file path); the answer's own ``model`` is
kept in ``meta.proxy.answer_model``.

A streamed legacy completion is first reassembled into one completion (the trace
library reads chat chunks directly, legacy chunks only as one response).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from entropy_sentinel.service.pipeline import IngestPipeline, UnavailableError
from entropy_sentinel.service.proxy.metrics import ProxyMetrics
from entropy_sentinel.wire.answer import answer_payload, answer_text
from entropy_sentinel.wire.openai_body import Kind

__all__ = ["Exchange", "Recorder", "build_record"]

log = logging.getLogger("entropy_sentinel.service.proxy")

_BATCH = 256  # exchanges per in-process ingest call
_RETRY_DELAYS = (0.5, 1.0)  # after an UnavailableError (queue full, database busy)
_STOP = object()


@dataclass(frozen=True)
class Exchange:
    """One proxied answer to record.

    Attributes:
        kind: ``chat`` or ``completions``.
        received_at: epoch seconds when the proxy received the request (the event time).
        slice: the request's slice.
        meta: facts about the exchange, stored in the trace's ``meta.proxy``.
        body: the upstream's answer (non-streamed).
        chunks: the ``data`` payloads of a streamed answer, in order, without ``[DONE]``.
        prompt: the request's ``messages`` or ``prompt`` (kept with ``proxy_record_text``).
    """

    kind: Kind
    received_at: float
    slice: dict[str, str]
    meta: dict[str, Any]
    body: bytes | None = None
    chunks: tuple[bytes, ...] = ()
    prompt: Any = field(default=None, repr=False)


class _Id(msgspec.Struct):
    id: str | None = None
    model: str | None = None


def build_record(ex: Exchange, *, record_text: bool = False) -> bytes:
    """The canonical trace record (JSON bytes) of one exchange (see the module docstring).

    The answer's bytes are spliced in as they are, so the trace library decodes them
    once, straight into arrays.
    """
    answer = answer_payload(ex.kind, ex.body, ex.chunks)
    head: dict[str, Any] = {}
    first = ex.body if ex.body is not None else (ex.chunks or (b"{}",))[0]
    try:
        named = msgspec.json.decode(first, type=_Id)
    except msgspec.DecodeError:
        named = _Id()
    if named.id:
        head["id"] = named.id
    requested = ex.meta.get("model")
    if isinstance(requested, str) and requested:
        head["model"] = requested
    meta: dict[str, Any] = {"proxy": {**ex.meta, "answer_model": named.model}}
    if record_text:
        meta["prompt"] = ex.prompt
        meta["answer"] = answer_text(ex.body, ex.chunks)
    head.update(slice=ex.slice, timestamp=ex.received_at, meta=meta)
    return msgspec.json.encode(head)[:-1] + b',"logprobs":' + answer + b"}"


class Recorder:
    """A queue and one thread that record exchanges (see the module docstring).

    Args:
        pipeline: the service's ingest pipeline.
        metrics: where outcomes are counted.
        max_queued: exchanges waiting at most; beyond, new ones are dropped (counted).
        record_text: keep the prompt and the answer text in each trace's ``meta``.
        linger: seconds to wait for more exchanges after the first of a batch.
    """

    def __init__(
        self,
        pipeline: IngestPipeline,
        metrics: ProxyMetrics,
        *,
        max_queued: int = 2000,
        record_text: bool = False,
        linger: float = 0.2,
    ) -> None:
        self.pipeline = pipeline
        self.metrics = metrics
        self.record_text = record_text
        self.linger = linger
        self._queue: queue.Queue[Any] = queue.Queue(max_queued)
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name="sentinel-proxy-recorder", daemon=True
        )

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def submit(self, exchange: Exchange) -> bool:
        """Queue ``exchange`` for recording; never blocks. False when it was dropped."""
        if self._closing:
            self.metrics.traces.labels("dropped").inc()
            log.warning("proxy: recorder is closed; an answer was not recorded")
            return False
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.metrics.traces.labels("dropped").inc()
            log.warning(
                "proxy: %d answers are waiting to be recorded; an answer was dropped",
                self._queue.qsize(),
            )
            return False
        self.metrics.queue.set(self._queue.qsize())
        return True

    def skipped(self, reason: str) -> None:
        """Count an answer that carries no trace to record."""
        self.metrics.traces.labels("skipped").inc()
        log.debug("proxy: answer not recorded (%s)", reason)

    def close(self, timeout: float = 30.0) -> int:
        """Record what is queued, then stop; returns the exchanges left unrecorded."""
        self._closing = True
        if not self._thread.is_alive():
            return self._queue.qsize()
        self._queue.put(_STOP)  # after everything already queued
        self._thread.join(timeout)
        left = self._queue.qsize() if self._thread.is_alive() else 0
        if left:
            log.error("proxy: %d answers were not recorded before shutdown", left)
        return left

    # ---------------------------------------------------------------- thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch: list[Exchange] = [item]
            stop = False
            deadline = time.monotonic() + self.linger
            while len(batch) < _BATCH:
                wait = 0.0 if self._closing else deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self.metrics.queue.set(self._queue.qsize())
            self._record(batch)
            if stop:
                return

    def _record(self, batch: list[Exchange]) -> None:
        try:
            records = [build_record(ex, record_text=self.record_text) for ex in batch]
        except Exception:  # a bug here must not stop the thread; count and log it
            log.exception("proxy: building %d trace records failed", len(batch))
            self.metrics.traces.labels("failed").inc(len(batch))
            return
        for attempt, delay in enumerate((*_RETRY_DELAYS, None)):
            try:
                result = self.pipeline.ingest_records_sync(records)
            except UnavailableError as exc:
                if delay is None or self._closing:
                    self._failed(len(records), exc)
                    return
                log.info("proxy: recording retried (attempt %d): %s", attempt + 2, exc)
                time.sleep(delay)
                continue
            except Exception as exc:
                self._failed(len(records), exc)
                return
            break
        m = self.metrics.traces
        m.labels("stored").inc(result.accepted)
        m.labels("duplicate").inc(result.duplicates)
        m.labels("rejected").inc(len(result.rejections))
        for r in result.rejections:
            log.warning(
                "proxy: trace %s not recorded: %s%s",
                r.record_id or f"#{r.index}",
                f"{r.field}: " if r.field else "",
                r.reason,
                extra={"trace_id": r.record_id, "field": r.field},
            )

    def _failed(self, n: int, exc: BaseException) -> None:
        self.metrics.traces.labels("failed").inc(n)
        log.error("proxy: recording %d answers failed: %s: %s", n, type(exc).__name__, exc)
