"""`IngestPipeline`: validate -> score -> store, with group commit, callable in-process.

Requests (HTTP ingest, or the proxy in the same process) parse and validate their
records (`entropy_sentinel.service.ingest`), then hand the valid traces to one
writer thread and wait. The writer takes everything queued (up to
``_MAX_GROUP`` traces), scores it as one batch (one `StepStats`, one
``predict_proba``: the estimator's per-call overhead is paid once per group, not per
request) and writes it in one transaction. Only after the commit does any of those
requests get its answer, so **an acknowledged trace is on disk**; a request whose
transaction failed gets a 503 and nothing of it is stored.

Each trace is scored by the estimator of its model (`ModelRegistry`): a group with
several models is scored per model (one batch each). A trace of a model without an
estimator is stored *waiting*: no P(correct), its per-step arrays kept (`pack_steps`)
so that it is scored once an estimator for its model is registered; it is counted
(``sentinel_traces_waiting_total``) and logged. With ``store_text``, a record's
``prompt`` and ``answer`` are redacted (`Redactor`) and stored with it.

If scoring a group fails, the writer scores each trace alone, so one trace the
estimator chokes on is rejected (reason ``scoring``) without failing the others.

Back-pressure: with more than ``max_pending`` traces waiting, new requests are
refused at once with `UnavailableError` (HTTP 503, ``Retry-After``) instead of queueing
without bound. `IngestPipeline.close` stops taking requests, writes everything
already queued, and joins the writer (graceful shutdown flushes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from entropy_sentinel.errors import StorageError
from entropy_sentinel.profile import FEATURE_NAMES
from entropy_sentinel.service.ingest import (
    Incoming,
    IngestItem,
    IngestResult,
    ParsedBody,
    parse_body,
    parse_objects,
)
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.model_registry import ModelRegistry
from entropy_sentinel.service.records import ScoredTraces
from entropy_sentinel.service.scoring import Scorer, Scores, trace_k
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.health import StorageMonitor
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.service.texts import Redactor
from entropy_sentinel.service.waiting import pack_steps
from entropy_sentinel.traces import Rejection

__all__ = ["IngestPipeline", "UnavailableError"]

log = logging.getLogger("entropy_sentinel.service.pipeline")

_MAX_GROUP = 4000  # traces per group commit
_STOP = object()
_WIDTH = len(FEATURE_NAMES)  # the stored profile's columns (and the whitened profile's)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What became of one trace of a request.

    Attributes:
        status: ``stored``, ``duplicate`` or ``rejected``.
        p: its P(correct) when stored and scored (None: a duplicate, a rejection, or a
            trace waiting for an estimator of its model).
        reason: why it was rejected (None otherwise).
        model: the model key it is stored (or was refused) under.
    """

    status: Literal["stored", "duplicate", "rejected"]
    p: float | None = None
    reason: str | None = None
    model: str = ""


@dataclass(frozen=True, slots=True)
class _Row:
    """One scored trace: its row ``row`` of the `Scores` of its batch."""

    scores: Scores
    row: int

    @property
    def scorer_id(self) -> int:
        return self.scores.scorer_id

    @property
    def p(self) -> float:
        """Its P(correct), after the scorer's recalibration."""
        return float(self.scores.p[self.row])


class UnavailableError(StorageError):
    """The service cannot take the request now (overloaded, shutting down, database down).

    Attributes:
        retry_after: seconds the client should wait before retrying.
    """

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class _Job:
    items: list[Incoming]
    future: concurrent.futures.Future[list[_Outcome]]


class IngestPipeline:
    """Validate, score and store traces (see the module docstring).

    Args:
        settings: limits and options.
        storage: the database.
        models: the estimators by model (a single `Scorer` serves every trace).
        metrics: where to count.
        clock: epoch seconds now (tests may pin it).
        monitor: told of each write's outcome (``/healthz`` reports a failing writer).
    """

    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        models: ModelRegistry | Scorer,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        monitor: StorageMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.monitor = monitor
        self.storage = storage
        self.models = models
        self.metrics = metrics
        self.redactor = Redactor(settings.text_redact) if settings.store_text else None
        self.clock = clock
        self._queue: queue.Queue[Any] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.on_stored: Callable[[list[tuple[Incoming, float]]], None] | None = None
        """Called by the writer after each commit with (trace, P) of the traces it
        stored (the OpenTelemetry export); must be quick and not raise."""

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sentinel-writer", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 30.0) -> int:
        """Refuse new work, write what is queued, stop; returns traces still unwritten."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("writer did not finish within %.0f s", timeout)
                return self._pending
        return 0

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Traces queued and not yet written."""
        return self._pending

    # ---------------------------------------------------------------- ingest
    async def ingest_body(self, body: bytes, content_type: str | None) -> IngestResult:
        """Ingest an HTTP request body (JSON or NDJSON; see `parse_body`)."""
        s = self.settings
        parsed = parse_body(
            body,
            content_type,
            now=self.clock(),
            max_records=s.max_batch,
            max_future_skew=s.max_future_skew,
            keep_raw=s.store_raw,
        )
        return await self._submit(parsed)

    async def ingest_records(self, records: Sequence[Any]) -> IngestResult:
        """Ingest in-process records (dicts, OpenAI client responses, chunk lists)."""
        s = self.settings
        parsed = parse_objects(
            records, now=self.clock(), max_future_skew=s.max_future_skew, keep_raw=s.store_raw
        )
        return await self._submit(parsed)

    def ingest_records_sync(self, records: Sequence[Any], timeout: float = 60.0) -> IngestResult:
        """Blocking variant of `ingest_records`, for threads without an event loop."""
        s = self.settings
        parsed = parse_objects(
            records, now=self.clock(), max_future_skew=s.max_future_skew, keep_raw=s.store_raw
        )
        future = self._enqueue(parsed)
        return self._answer(parsed, future.result(timeout) if future is not None else [])

    async def _submit(self, parsed: ParsedBody) -> IngestResult:
        future = self._enqueue(parsed)
        outcomes = await asyncio.wrap_future(future) if future is not None else []
        return self._answer(parsed, outcomes)

    def _enqueue(self, parsed: ParsedBody) -> concurrent.futures.Future[list[_Outcome]] | None:
        self.metrics.traces_rejected.labels("invalid").inc(len(parsed.rejections))
        if not parsed.items:
            return None
        n = len(parsed.items)
        with self._lock:
            if self._closed:
                raise UnavailableError("the service is shutting down; retry on another instance", 5)
            if self._thread is None or not self._thread.is_alive():
                raise UnavailableError("the writer is not running; see the service log", 5)
            if self._pending + n > self.settings.max_pending and self._pending > 0:
                raise UnavailableError(
                    f"{self._pending} traces are waiting to be written (max_pending="
                    f"{self.settings.max_pending}); retry in a moment",
                    1,
                )
            self._pending += n
            self.metrics.queue_traces.set(self._pending)
        future: concurrent.futures.Future[list[_Outcome]] = concurrent.futures.Future()
        self._queue.put(_Job(parsed.items, future))
        return future

    def _answer(self, parsed: ParsedBody, outcomes: list[_Outcome]) -> IngestResult:
        items: list[IngestItem] = []
        rejections = list(parsed.rejections)
        for item, out in zip(parsed.items, outcomes, strict=True):
            if out.status == "rejected":
                rejections.append(Rejection(item.index, item.trace.id, None, out.reason or ""))
            else:
                items.append(IngestItem(item.index, item.trace.id, out.status, out.p, out.model))
        rejections.sort(key=lambda r: r.index)
        return IngestResult(parsed.n_records, tuple(items), tuple(rejections))

    # ---------------------------------------------------------------- writer
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            group = [first]
            size = len(first.items)
            while size < _MAX_GROUP:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                group.append(job)
                size += len(job.items)
            self._process(group)

    def _process(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        n = sum(len(j.items) for j in group)
        try:
            results = self._score_and_write(group)
        except Exception as exc:
            if isinstance(exc, StorageError):
                log.error("write of %d traces failed: %s", n, exc)
                error: Exception = UnavailableError(f"the database refused the write: {exc}", 2)
            else:
                log.exception("write of %d traces failed", n)
                error = UnavailableError(f"internal error while storing traces: {exc!r}", 2)
            if self.monitor is not None:
                self.monitor.write_failed(str(exc))
            for job in group:
                job.future.set_exception(error)
        else:
            if self.monitor is not None:
                self.monitor.write_succeeded()
            for job, result in zip(group, results, strict=True):
                job.future.set_result(result)
        finally:
            with self._lock:
                self._pending -= n
                self.metrics.queue_traces.set(self._pending)
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            self.metrics.write_group.observe(n)

    def _route(self, trace: Any) -> tuple[str, Scorer | None]:
        """The model key of a trace and a scorer with its estimator (None: no estimator
        for the model), to check the trace against; nothing is registered yet."""
        models = self.models
        if isinstance(models, Scorer):
            return models.model, models
        key = models.key(trace.model)
        return key, models.estimator_for(key)

    def _scorer_of(self, key: str) -> Scorer:
        models = self.models
        scorer = models if isinstance(models, Scorer) else models.scorer_for(key)
        assert scorer is not None  # routed to an estimator a moment ago
        return scorer

    def _score_and_write(self, group: list[_Job]) -> list[list[_Outcome]]:
        outcomes: list[list[_Outcome]] = [[_Outcome("rejected")] * len(j.items) for j in group]
        keys: dict[tuple[int, int], str] = {}
        by_key: dict[str, list[tuple[int, int]]] = {}
        waiting: list[tuple[int, int]] = []
        for g, job in enumerate(group):
            for i, item in enumerate(job.items):
                key, checker = self._route(item.trace)
                keys[(g, i)] = key
                if checker is None:
                    waiting.append((g, i))
                    continue
                why = checker.mismatch(item.trace)
                if why is None:
                    by_key.setdefault(key, []).append((g, i))
                else:
                    outcomes[g][i] = _Outcome("rejected", reason=why, model=key)
                    self.metrics.traces_rejected.labels("model").inc()
        scored: dict[tuple[int, int], _Row] = {}
        for key, accepted in by_key.items():
            scored.update(self._score(self._scorer_of(key), group, accepted, outcomes, keys))
        batches: list[ScoredTraces] = []
        members: list[tuple[int, list[int], bool]] = []  # (job, items, waiting) per batch
        for g, job in enumerate(group):
            per_scorer: dict[int, list[int]] = {}
            for i in range(len(job.items)):
                if (g, i) in scored:
                    per_scorer.setdefault(scored[(g, i)].scorer_id, []).append(i)
            for idx in per_scorer.values():
                members.append((g, idx, False))
                batches.append(
                    self._scored_traces(job, idx, [scored[(g, i)] for i in idx], keys, g)
                )
            idx = [i for (gg, i) in waiting if gg == g]
            if idx:
                members.append((g, idx, True))
                batches.append(self._scored_traces(job, idx, None, keys, g))
        written = self.storage.write(batches)
        # `write` stores the first occurrence of an id (in this order) and no other:
        # a repeat later in the group (same request or another) is a duplicate
        reported: set[str] = set()
        stored: list[tuple[Incoming, float]] = []
        for (g, idx, wait), outcome in zip(members, written, strict=True):
            for i in idx:
                tid = group[g].items[i].trace.id
                key = keys[(g, i)]
                if tid in outcome.stored and tid not in reported:
                    reported.add(tid)
                    p = None if wait else scored[(g, i)].p
                    outcomes[g][i] = _Outcome("stored", p=p, model=key)
                    self.metrics.traces_stored.inc()
                    if p is None:
                        self.metrics.traces_waiting.inc()
                    else:
                        stored.append((group[g].items[i], p))
                else:
                    outcomes[g][i] = _Outcome("duplicate", model=key)
                    self.metrics.traces_duplicate.inc()
        if waiting and not isinstance(self.models, Scorer):
            for key in sorted({keys[gi] for gi in waiting}):
                self.models.unserved(key)
        if self.on_stored is not None and stored:
            try:
                self.on_stored(stored)
            except Exception:  # an exporter's failure never fails a committed write
                log.exception("the on_stored hook failed for %d traces", len(stored))
        return outcomes

    def _score(
        self,
        scorer: Scorer,
        group: list[_Job],
        accepted: list[tuple[int, int]],
        outcomes: list[list[_Outcome]],
        keys: dict[tuple[int, int], str],
    ) -> dict[tuple[int, int], _Row]:
        """(g, i) -> its row of the `Scores` of its batch, for the traces scored."""
        out: dict[tuple[int, int], _Row] = {}
        if not accepted:
            return out
        counted_in = scorer.refresh()  # one scorer per model for the whole group
        try:
            parts = [accepted]
            scores = [scorer.score([group[g].items[i].trace for g, i in accepted], counted_in)]
        except Exception:
            log.warning("scoring a group of %d traces failed; scoring one by one", len(accepted))
            parts, scores = [], []
            for g, i in accepted:
                try:
                    scores.append(scorer.score([group[g].items[i].trace], counted_in))
                    parts.append([(g, i)])
                except Exception as exc:
                    why = f"scoring failed: {exc}"
                    outcomes[g][i] = _Outcome("rejected", reason=why, model=keys[(g, i)])
                    self.metrics.traces_rejected.labels("scoring").inc()
        for members, sc in zip(parts, scores, strict=True):
            for row, key in enumerate(members):
                out[key] = _Row(sc, row)
        return out

    def _texts(self, items: list[Incoming]) -> list[tuple[str | None, str | None] | None]:
        if self.redactor is None:
            return [None] * len(items)
        return [self.redactor.pair(it.trace.prompt, it.trace.answer) for it in items]

    def _scored_traces(
        self,
        job: _Job,
        idx: list[int],
        rows: list[_Row] | None,
        keys: dict[tuple[int, int], str],
        g: int,
    ) -> ScoredTraces:
        """The items ``idx`` of a job with their scores ``rows``; None: they wait for an
        estimator of their model (NaN features and P, their steps kept)."""
        items = [job.items[i] for i in idx]
        n = len(items)
        waiting = rows is None
        rows = rows or []

        def column(get: Callable[[Scores], Any]) -> Any:
            return np.array([get(r.scores)[r.row] for r in rows])

        return ScoredTraces(
            trace_ids=[it.trace.id for it in items],
            ts=np.array([it.ts for it in items], dtype=np.float64),
            received_at=self.clock(),
            slices=[it.trace.slice for it in items],
            n_tokens=np.array([it.trace.n_steps for it in items], dtype=np.int64),
            k=np.array([trace_k(it.trace) for it in items], dtype=np.int64),
            entropy_mode=rows[0].scores.entropy_mode if rows else "",
            features=np.full((n, _WIDTH), np.nan)
            if waiting
            else column(lambda s: s.features).reshape(n, _WIDTH),
            extra_features=[None] * n if waiting else [r.scores.extra[r.row] for r in rows],
            p_raw=np.full(n, np.nan) if waiting else column(lambda s: s.p_raw),
            p=np.full(n, np.nan) if waiting else column(lambda s: s.p),
            scorer_id=None if waiting else rows[0].scorer_id,
            labels=np.array([it.trace.label for it in items], dtype=np.float64),
            meta=[it.trace.meta for it in items],
            raw=[it.raw for it in items],
            models=[keys[(g, i)] for i in idx],
            steps=[pack_steps(it.trace) for it in items] if waiting else (),
            texts=self._texts(items),
            p_classifier=None if waiting else column(lambda s: s.est.p_classifier),
            seen=None if waiting else column(lambda s: s.est.seen).astype(bool),
            cal=None if waiting else column(lambda s: s.est.cal),
            w=None if waiting else column(lambda s: s.est.w).reshape(n, _WIDTH),
        )
