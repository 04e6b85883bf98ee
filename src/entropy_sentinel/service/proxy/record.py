"""Proxied answers as trace records, and the parent's side of the recorder process.

The proxy hands each finished exchange (the upstream's answer bytes, or the ``data``
payloads of its stream) to `Recorder.submit`, which only queues it: the answer has been
relayed already and never waits for recording. A sender thread writes the queued
exchanges to the recorder, a separate process (`entropy_sentinel.service.proxy.
record_worker`) with its own database connection and estimator, so that parsing, scoring
and storing run beside the event loop instead of competing with it for the GIL. The
recorder ingests them in-process (`IngestPipeline.ingest_records_sync`: the ingest API's
validation, scoring and group commit) and answers with what became of each batch, which
is counted here in ``sentinel_proxy_traces_total`` (and the service's own
``sentinel_traces_*`` counters) and logged with the trace id and the reason.

Back-pressure: at most ``proxy_record_queue`` exchanges are in flight (queued here, on
their way, or being recorded). A request that finds the queue full waits before it is
forwarded (`Recorder.wait_for_room`, at most ``proxy_record_wait`` seconds): clients
slow down to the recorder's pace and nothing relayed is dropped. Only when the recorder
is down (its process died: it is restarted) or stuck past that wait is an answer relayed
without being recorded, counted ``dropped`` and logged. At shutdown every queued
exchange is recorded before the process exits.

The record of an exchange (`build_record`)::

    {"id": <our own id>, "model": <the model asked for>, "k": <top logprobs asked for>,
     "slice": {...}, "timestamp": <received>,
     "meta": {"proxy": {"route", "model", "answer_model", "stream", "client_logprobs",
                        "request_id", "upstream_id"}},
     "prompt": ..., "answer": ...,                       # with proxy_record_text only
     "logprobs": <the response> | [<stream chunks>]}

Every relayed answer gets an id of our own, so answers whose upstream id repeats (a
cache in front of the model, a replay, a server with fixed ids) are all recorded; the
upstream's id is kept in ``meta.proxy.upstream_id``. ``model`` is the key the service
scores the trace under (the requested model: the answer may name a dated version,
llama.cpp a file path); the answer's own ``model`` is kept in ``meta.proxy.answer_model``.
A streamed legacy completion is first reassembled into one completion (the trace
library reads chat chunks directly, legacy chunks only as one response).
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
import uuid
from typing import IO, Any

import anyio
import msgspec

from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.proxy.metrics import ProxyMetrics
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.wire.answer import answer_payload, answer_text
from entropy_sentinel.wire.openai_body import Kind

__all__ = [
    "EXCHANGE",
    "SETTINGS",
    "Exchange",
    "Outcome",
    "Recorder",
    "build_record",
    "new_trace_id",
    "read_frame",
    "write_frame",
]

log = logging.getLogger("entropy_sentinel.service.proxy")

_FRAME = struct.Struct("<I")  # length prefix of every message between the processes
_RESTART_AFTER = 5.0  # seconds between attempts to restart a recorder that died
EXCHANGE = _EXCHANGE = b"E"  # first byte of a message to the recorder: an exchange (msgpack) ...
SETTINGS = _SETTINGS = b"S"  # ... or new settings after a reload (pickle, from this process)


class Exchange(msgspec.Struct, frozen=True):
    """One proxied answer to record.

    Attributes:
        kind: ``chat`` or ``completions``.
        received_at: epoch seconds when the proxy received the request (the event time).
        slice: the request's slice.
        meta: facts about the exchange, stored in the trace's ``meta.proxy``.
        body: the upstream's answer (non-streamed).
        chunks: the ``data`` payloads of a streamed answer, in order, without ``[DONE]``.
        prompt: the request's ``messages`` or ``prompt`` (kept with ``proxy_record_text``).
        id: the trace id, ours (`new_trace_id`); empty: one is made when recording.
        model: the model the request asked for.
        k: the number of top logprobs the request asked for (0: not stated).
    """

    kind: Kind
    received_at: float
    slice: dict[str, str]
    meta: dict[str, Any]
    body: bytes | None = None
    chunks: tuple[bytes, ...] = ()
    prompt: Any = None
    id: str = ""
    model: str | None = None
    k: int = 0


class Outcome(msgspec.Struct, frozen=True):
    """What the recorder did with a batch of exchanges (its answer to this process).

    ``rejected`` lists ``(trace id, field, reason)`` per trace the ingest rules or the
    estimator refused; ``error`` says why ``failed`` traces could not be stored.
    """

    exchanges: int
    stored: int = 0
    waiting: int = 0  # of ``stored``: no estimator for their model yet
    duplicate: int = 0
    rejected: list[tuple[str | None, str | None, str]] = []
    rejected_reasons: dict[str, int] = {}
    failed: int = 0
    error: str | None = None


def new_trace_id() -> str:
    """A fresh trace id of the proxy's own (``px-`` and 32 hex digits)."""
    return "px-" + uuid.uuid4().hex


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One length-prefixed message from ``stream``, or None at its end."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    body = stream.read(size)
    return body if len(body) == size else None


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """Write one length-prefixed message to ``stream`` and flush it."""
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


class _Id(msgspec.Struct):
    id: str | int | None = None
    model: str | None = None


def build_record(ex: Exchange, *, record_text: bool = False) -> bytes:
    """The canonical trace record (JSON bytes) of one exchange (see the module docstring).

    The answer's bytes are spliced in as they are, so the trace library decodes them
    once, straight into arrays.
    """
    answer = answer_payload(ex.kind, ex.body, ex.chunks)
    first = ex.body if ex.body is not None else (ex.chunks or (b"{}",))[0]
    try:
        named = msgspec.json.decode(first, type=_Id)
    except msgspec.DecodeError:
        named = _Id()
    head: dict[str, Any] = {"id": ex.id or new_trace_id()}
    requested = ex.model or ex.meta.get("model")
    if isinstance(requested, str) and requested:
        head["model"] = requested
    if ex.k:
        head["k"] = ex.k
    head.update(
        slice=ex.slice,
        timestamp=ex.received_at,
        meta={"proxy": {**ex.meta, "answer_model": named.model, "upstream_id": named.id}},
    )
    if record_text:
        if isinstance(ex.prompt, str) or (
            isinstance(ex.prompt, list) and all(isinstance(m, dict) for m in ex.prompt)
        ):
            head["prompt"] = ex.prompt
        elif ex.prompt is not None:  # e.g. a legacy prompt given as a list or token ids
            head["meta"]["prompt"] = ex.prompt
        text = answer_text(ex.body, ex.chunks)
        if isinstance(text, str):
            head["answer"] = text
        elif text is not None:  # several choices: one text each
            head["meta"]["answers"] = text
    return msgspec.json.encode(head)[:-1] + b',"logprobs":' + answer + b"}"


class Recorder:
    """The parent's side of the recorder process (see the module docstring).

    Args:
        settings: the service's settings (the recorder opens the same database and
            estimator; ``proxy_record_queue``, ``proxy_record_wait``, ``proxy_record_text``).
        metrics: where outcomes are counted.
        service_metrics: the service's own counters (``sentinel_traces_*``), kept true for
            traces the recorder stores; None to leave them.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ProxyMetrics,
        *,
        service_metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.service_metrics = service_metrics
        self.capacity = settings.proxy_record_queue
        self._queue: queue.Queue[Exchange | Settings | None] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight = 0  # submitted and not yet answered for by the recorder
        self._sent = 0  # written to the current process and not yet answered for
        self._proc: subprocess.Popen[bytes] | None = None
        self._up = threading.Event()  # the current process is running
        self._closing = False
        self._started_at = -_RESTART_AFTER
        self._encoder = msgspec.msgpack.Encoder()
        self._sender = threading.Thread(
            target=self._send_loop, name="sentinel-record-send", daemon=True
        )

    # ------------------------------------------------------------- lifecycle
    def start(self) -> Recorder:
        """Start the recorder process and the sender thread (returns at once)."""
        self._spawn()
        self._sender.start()
        return self

    @property
    def alive(self) -> bool:
        """The recorder process is running."""
        return self._up.is_set()

    @property
    def in_flight(self) -> int:
        """Exchanges submitted and not yet recorded (or failed)."""
        return self._in_flight

    def close(self, timeout: float = 30.0) -> int:
        """Record everything queued, then stop the process; returns exchanges left over."""
        self._closing = True
        self._queue.put(None)
        if self._sender.is_alive():
            self._sender.join(timeout)
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(max(1.0, timeout))
            except subprocess.TimeoutExpired:
                log.error("proxy: the recorder did not finish within %.0f s; stopping it", timeout)
                proc.kill()
                proc.wait()
        left = self._in_flight
        if left:
            log.error("proxy: %d answers were not recorded before shutdown", left)
            self.metrics.traces.labels("failed").inc(left)
        return left

    # ------------------------------------------------------------ submitting
    async def wait_for_room(self) -> None:
        """Wait while ``proxy_record_queue`` exchanges are in flight (back-pressure).

        Returns at once when there is room or the recorder is down, and after
        ``proxy_record_wait`` seconds at most.
        """
        if self._in_flight < self.capacity or not self._up.is_set():
            return
        deadline = time.monotonic() + self.settings.proxy_record_wait
        while self._in_flight >= self.capacity and self._up.is_set():
            if time.monotonic() > deadline:
                log.warning(
                    "proxy: %d answers are waiting to be recorded after %.0f s; relaying on",
                    self._in_flight,
                    self.settings.proxy_record_wait,
                )
                return
            await anyio.sleep(0.005)

    def submit(self, exchange: Exchange) -> bool:
        """Queue ``exchange`` for recording; never blocks. False when it was dropped."""
        if self._closing or (not self._up.is_set() and not self._restart()):
            self.metrics.traces.labels("dropped").inc()
            log.warning(
                "proxy: the recorder is %s; an answer was not recorded",
                "shutting down" if self._closing else "down",
            )
            return False
        with self._lock:
            self._in_flight += 1
            self.metrics.queue.set(self._in_flight)
        self._queue.put(exchange)
        return True

    def reload(self, settings: Settings) -> None:
        """Serve the models of ``settings`` from now on (after the service's reload): the
        recorder reconfigures its estimators between two batches."""
        self.settings = settings
        self._queue.put(settings)

    def skipped(self, reason: str) -> None:
        """Count an answer that carries no trace to record."""
        self.metrics.traces.labels("skipped").inc()
        log.debug("proxy: answer not recorded (%s)", reason)

    # ------------------------------------------------------------ the process
    def _spawn(self) -> bool:
        self._started_at = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "entropy_sentinel.service.proxy.record_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        except OSError as exc:
            log.error("proxy: cannot start the recorder: %s", exc)
            return False
        assert proc.stdin is not None
        try:
            write_frame(proc.stdin, pickle.dumps(self.settings))
        except OSError as exc:
            log.error("proxy: the recorder did not start: %s", exc)
            return False
        self._proc = proc
        self._sent = 0
        self._up.set()
        threading.Thread(
            target=self._read_loop, args=(proc,), name="sentinel-record-read", daemon=True
        ).start()
        return True

    def _restart(self) -> bool:
        """Start a new recorder if the last attempt is long enough ago."""
        with self._lock:
            if self._up.is_set():
                return True
            if time.monotonic() - self._started_at < _RESTART_AFTER or self._closing:
                return False
            log.warning("proxy: restarting the recorder")
            return self._spawn()

    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            proc = self._proc
            if item is None:
                if proc is not None and proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()  # the recorder records what it has, then exits
                return
            if isinstance(item, Settings):
                if proc is not None and proc.stdin is not None and self._up.is_set():
                    with contextlib.suppress(OSError, ValueError):
                        write_frame(proc.stdin, _SETTINGS + pickle.dumps(item))
                continue
            with self._lock:  # the read loop takes over what was sent when the process ends
                up = proc is not None and proc.stdin is not None and self._up.is_set()
                if up:
                    self._sent += 1
            if not up or proc is None or proc.stdin is None:
                self._lost(1, "the recorder is down")
                continue
            # on failure, the read loop sees the process end and accounts for what was sent
            with contextlib.suppress(OSError, ValueError):
                write_frame(proc.stdin, _EXCHANGE + self._encoder.encode(item))

    def _read_loop(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        decoder = msgspec.msgpack.Decoder(Outcome)
        while (frame := read_frame(proc.stdout)) is not None:
            try:
                outcome = decoder.decode(frame)
            except msgspec.DecodeError:
                log.error("proxy: the recorder answered something unreadable; stopping it")
                proc.kill()
                break
            with self._lock:
                self._sent -= outcome.exchanges
            self._count(outcome)
        code = proc.wait()
        for pipe in (proc.stdout, proc.stdin):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()
        with self._lock:
            self._up.clear()
            lost, self._sent = self._sent, 0
        if lost:
            self._lost(lost, f"the recorder stopped (exit code {code})")
        if code != 0 and not self._closing:
            log.error("proxy: the recorder stopped with exit code %s", code)

    def _lost(self, n: int, why: str) -> None:
        self.metrics.traces.labels("failed").inc(n)
        log.error("proxy: %d answers were not recorded: %s", n, why)
        self._done(n)

    def _done(self, n: int) -> None:
        with self._lock:
            self._in_flight -= n
            self.metrics.queue.set(self._in_flight)

    def _count(self, outcome: Outcome) -> None:
        m = self.metrics.traces
        m.labels("stored").inc(outcome.stored)
        m.labels("duplicate").inc(outcome.duplicate)
        m.labels("rejected").inc(len(outcome.rejected))
        m.labels("failed").inc(outcome.failed)
        service = self.service_metrics
        if service is not None:
            service.traces_stored.inc(outcome.stored)
            service.traces_duplicate.inc(outcome.duplicate)
            service.traces_waiting.inc(outcome.waiting)
            for reason, n in outcome.rejected_reasons.items():
                service.traces_rejected.labels(reason).inc(n)
        for trace_id, field, reason in outcome.rejected:
            log.warning(
                "proxy: trace %s not recorded: %s%s",
                trace_id,
                f"{field}: " if field else "",
                reason,
                extra={"trace_id": trace_id, "field": field},
            )
        if outcome.failed:
            log.error("proxy: recording %d answers failed: %s", outcome.failed, outcome.error)
        self._done(outcome.exchanges)
