"""The recorder process: records the proxy's exchanges as traces, beside the event loop.

Started by `entropy_sentinel.service.proxy.record.Recorder` as
``python -m entropy_sentinel.service.proxy.record_worker``. Its standard input carries
length-prefixed messages: first the service's `Settings` (pickled, from the parent
process), then one `Exchange` each (``E`` and msgpack), or new settings after the
service reloaded its models (``S`` and pickle); its standard output carries one `Outcome`
per batch recorded. It opens the service's database and estimator like the service
(`entropy_sentinel.service.state.open_pipeline`), takes the exchanges that arrive within
``_LINGER`` (50 ms) of the first (at most ``_BATCH``) as one batch, so that the
estimator's call and the commit are paid per batch, not per answer, builds the records
(`build_record`) and ingests them in-process (validation, scoring and group commit, as
``POST /v1/traces`` would). When its
input ends (the service is stopping), it records what it has, flushes, and exits 0.
Logs go to standard error, in the service's format.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import sys
import threading
import time
from typing import IO, Any

import msgspec

from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.proxy.record import (
    SETTINGS,
    Exchange,
    Outcome,
    build_record,
    read_frame,
    write_frame,
)

__all__ = ["main", "record_batch"]

log = logging.getLogger("entropy_sentinel.service.proxy.recorder")

_BATCH = 256  # exchanges per ingest call
_LINGER = 0.05  # seconds to wait for more exchanges after the first of a batch
_RETRY_DELAYS = (0.5, 1.0, 2.0)  # after an UnavailableError (queue full, database busy)


_REASONS = ("invalid", "model", "scoring")


def _rejected_counts(metrics: Metrics) -> list[float]:
    return [metrics.traces_rejected.labels(r)._value.get() for r in _REASONS]


def record_batch(
    pipeline: Any, metrics: Metrics, batch: list[Exchange], record_text: bool
) -> Outcome:
    """Record ``batch`` through ``pipeline`` (an `IngestPipeline` counting in ``metrics``);
    never raises."""
    from entropy_sentinel.service.pipeline import UnavailableError

    try:
        records = [build_record(ex, record_text=record_text) for ex in batch]
    except Exception as exc:  # a bug here must not stop the recorder; count and log it
        log.exception("building %d trace records failed", len(batch))
        return Outcome(len(batch), failed=len(batch), error=repr(exc))
    before = _rejected_counts(metrics)
    for delay in (*_RETRY_DELAYS, None):
        try:
            result = pipeline.ingest_records_sync(records)
        except UnavailableError as exc:
            if delay is None:
                return Outcome(len(batch), failed=len(batch), error=str(exc))
            time.sleep(delay)
            continue
        except Exception as exc:
            return Outcome(len(batch), failed=len(batch), error=f"{type(exc).__name__}: {exc}")
        after = _rejected_counts(metrics)
        reasons = {r: int(b - a) for r, a, b in zip(_REASONS, before, after, strict=True) if b > a}
        return Outcome(
            len(batch),
            stored=result.accepted,
            waiting=result.waiting,
            duplicate=result.duplicates,
            rejected=[(r.record_id, r.field, r.reason) for r in result.rejections],
            rejected_reasons=reasons,
        )
    raise AssertionError("unreachable")


def _reader(stream: IO[bytes], inbox: queue.Queue[Any]) -> None:
    decoder = msgspec.msgpack.Decoder(Exchange)
    while (frame := read_frame(stream)) is not None:
        if frame[:1] == SETTINGS:  # the service reloaded its models
            inbox.put(pickle.loads(frame[1:]))  # from the parent process
            continue
        try:
            inbox.put(decoder.decode(frame[1:]))
        except msgspec.DecodeError:
            log.error("an unreadable exchange was skipped")
    inbox.put(None)


def _reconfigure(pipeline: Any, settings: Any) -> None:
    try:
        pipeline.models.configure(settings.model_specs, settings.default_model)
    except Exception:
        log.exception("the recorder could not load the reloaded models; it keeps the old ones")


def main() -> int:
    """Run the recorder until its input ends (see the module docstring)."""
    stdin = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")  # the answers; anything printed goes to stderr instead
    os.dup2(2, 1)
    frame = read_frame(stdin)
    if frame is None:
        return 0
    settings = pickle.loads(frame)  # from the parent process, which started this one

    from entropy_sentinel.service.logs import configure_logging
    from entropy_sentinel.service.state import open_pipeline, open_spans

    configure_logging(settings.log_format, settings.log_level)
    metrics = Metrics()
    try:
        db, pipeline = open_pipeline(settings, metrics)
        # the proxied traces are stored here, so their OpenTelemetry spans leave from here
        spans = open_spans(settings)
        if spans is not None:
            pipeline.on_stored = spans.emit_stored
        pipeline.start()
    except Exception:
        log.exception("the recorder cannot open the database or the estimator")
        return 1
    inbox: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_reader, args=(stdin, inbox), daemon=True).start()
    encoder = msgspec.msgpack.Encoder()
    done = False
    try:
        while not done:
            first = inbox.get()
            if first is None:
                break
            if not isinstance(first, Exchange):  # new settings: serve their models
                _reconfigure(pipeline, first)
                continue
            batch = [first]
            until = time.monotonic() + _LINGER
            while len(batch) < _BATCH:
                try:
                    item = inbox.get(timeout=max(0.0, until - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    done = True
                    break
                if not isinstance(item, Exchange):  # after this batch
                    outcome = record_batch(pipeline, metrics, batch, settings.proxy_record_text)
                    write_frame(out, encoder.encode(outcome))
                    batch = []
                    _reconfigure(pipeline, item)
                    break
                batch.append(item)
            if not batch:
                continue
            outcome = record_batch(pipeline, metrics, batch, settings.proxy_record_text)
            write_frame(out, encoder.encode(outcome))
    finally:
        pipeline.close(settings.shutdown_timeout)
        if spans is not None:
            spans.shutdown()  # export the spans still queued
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
