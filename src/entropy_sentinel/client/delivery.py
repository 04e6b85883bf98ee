"""What the SDK's senders share, without I/O: the bounded outbox, the counters, and what
to do with the service's answer to a batch.

`Sentinel` (a thread) and `AsyncSentinel` (an asyncio task) differ only in how they wait
and send; both take batches from an `Outbox` and hand the service's answer to
`Delivery.settle`, which counts what happened and says whether to retry, when, or to
split the batch.

The service answers ``POST /v1/traces`` with 200 (at least one record accepted; the
others listed as rejected), 422 (none accepted), 413 (batch too large), 401/403 (key),
429/503 (busy: ``Retry-After``) or 5xx. Records carry their ids, so a retried batch is
idempotent: what was stored before answers ``duplicate``.

>>> d = Delivery(max_retry_time=60.0)
>>> d.backoff(0), d.backoff(3), d.backoff(20)
(0.5, 4.0, 30.0)
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["Delivery", "Outbox", "Pending", "SenderStats", "Verdict"]

log = logging.getLogger("entropy_sentinel.client")

_WARN_EVERY = 30.0  # seconds between two warnings about the same kind of loss


@dataclass
class Pending:
    """One record waiting to be sent.

    Attributes:
        id: the record's trace id.
        encode: the record's JSON bytes, or a function that makes them (run by the
            sender, so the caller never pays for encoding a large response).
        call: when the call ran and in which OpenTelemetry context
            (`entropy_sentinel.wire.genai.CallTimes`), for the span the SDK may export.
    """

    id: str
    encode: bytes | Callable[[], bytes]
    call: Any = None

    def payload(self) -> bytes:
        """The record's JSON bytes (made once)."""
        if not isinstance(self.encode, bytes):
            self.encode = self.encode()
        return self.encode


@dataclass
class SenderStats:
    """Counters of one sender since it started (records, not requests).

    Attributes:
        recorded: records accepted by `record` into the queue.
        stored: records the service stored.
        duplicates: records the service already had (a retry of a stored record).
        rejected: records the service refused (their reasons are logged).
        dropped: records lost because the queue was full or the sender closed.
        failed: records lost because the service could not take them in
            ``max_retry_time`` (down, overloaded) or refused the key.
        invalid: calls to `record` whose input could not be made into a record.
        retries: requests sent again.
        requests: requests sent.
    """

    recorded: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    dropped: int = 0
    failed: int = 0
    invalid: int = 0
    retries: int = 0
    requests: int = 0

    @property
    def lost(self) -> int:
        """Records that will never reach the service: ``dropped + failed + invalid``."""
        return self.dropped + self.failed + self.invalid


class Outbox:
    """A bounded, thread-safe queue of `Pending` records, with the counters.

    ``put`` never blocks: a full outbox drops the record and counts it. ``unfinished``
    counts records queued or being sent, so ``flush`` can wait for zero.
    """

    def __init__(self, max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue!r} must be >= 1")
        self.max_queue = max_queue
        self.stats = SenderStats()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._items: collections.deque[Pending] = collections.deque()
        self._in_flight = 0
        self.closed = False
        self._warned: dict[str, float] = {}

    def put(self, item: Pending) -> bool:
        """Queue ``item``; False (counted in ``dropped``) when full or closed."""
        with self.lock:
            if self.closed or len(self._items) >= self.max_queue:
                self.stats.dropped += 1
                why = "the sender is closed" if self.closed else f"{self.max_queue} are queued"
                self._warn("dropped", "a trace record was dropped (%s)", why)
                return False
            self._items.append(item)
            self.stats.recorded += 1
            self.changed.notify_all()
            return True

    def invalid(self, why: str) -> None:
        """Count a `record` call whose input could not be made into a record."""
        with self.lock:
            self.stats.invalid += 1
            self._warn("invalid", "a response could not be recorded: %s", why)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def unfinished(self) -> int:
        """Records queued or being sent."""
        return len(self._items) + self._in_flight

    def take(self, max_records: int, max_bytes: int) -> list[Pending]:
        """Up to ``max_records`` queued records (and about ``max_bytes`` of those already
        encoded), marked in flight. Call with ``lock`` held."""
        out: list[Pending] = []
        size = 0
        while self._items and len(out) < max_records and size < max_bytes:
            out.append(self._items.popleft())
            size += len(out[-1].encode) if isinstance(out[-1].encode, bytes) else 0
        self._in_flight += len(out)
        return out

    def done(self, n: int) -> None:
        """``n`` records taken by `take` are settled (sent, rejected or lost)."""
        with self.lock:
            self._in_flight -= n
            self.changed.notify_all()

    def drain(self) -> list[Pending]:
        """Everything still queued (at close, to count as lost); call with ``lock`` held."""
        out = list(self._items)
        self._items.clear()
        return out

    def _warn(self, kind: str, message: str, *args: Any) -> None:
        """Log a loss at most once per ``_WARN_EVERY`` seconds per kind (counts go on)."""
        now = time.monotonic()
        if now - self._warned.get(kind, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[kind] = now
            s = self.stats
            log.warning(
                message + " [so far: dropped %d, failed %d, invalid %d, rejected %d]",
                *args,
                s.dropped,
                s.failed,
                s.invalid,
                s.rejected,
            )


@dataclass(frozen=True)
class Verdict:
    """What to do after one request: done, retry after ``delay`` s, or split the batch.

    Attributes:
        retry: send the same batch again after ``delay`` seconds.
        delay: seconds to wait first.
        split: send each half of the batch on its own (the service found it too large).
        results: per record id, P(correct) of the records the service accepted
            (stored or duplicate; None when it did not say).
    """

    retry: bool = False
    delay: float = 0.0
    split: bool = False
    results: Mapping[str, float | None] = field(default_factory=dict)


class _Item(msgspec.Struct):
    id: str
    status: str
    p_correct: float | None = None


class _Rejection(msgspec.Struct):
    index: int
    id: str | None = None
    field: str | None = None
    reason: str = ""


class _Answer(msgspec.Struct):
    traces: list[_Item] = []
    rejections: list[_Rejection] = []


_ANSWER = msgspec.json.Decoder(_Answer)


class Delivery:
    """The retry policy and the reading of the service's answers (module docstring).

    Args:
        max_retry_time: seconds a batch may keep being retried before its records are
            counted ``failed``.
        first_delay: the first backoff, doubled on each retry up to ``max_delay``.
        max_delay: the longest wait between two attempts (``Retry-After`` may ask more,
            up to ``max_retry_time``).
    """

    def __init__(
        self, *, max_retry_time: float, first_delay: float = 0.5, max_delay: float = 30.0
    ) -> None:
        self.max_retry_time = max_retry_time
        self.first_delay = first_delay
        self.max_delay = max_delay

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        return float(min(self.max_delay, self.first_delay * 2.0 ** min(attempt, 30)))

    @staticmethod
    def body(batch: Sequence[Pending]) -> bytes:
        """The request body of a batch: ``{"traces": [record, ...]}``."""
        return b'{"traces":[' + b",".join(p.payload() for p in batch) + b"]}"

    def settle(
        self,
        outbox: Outbox,
        batch: Sequence[Pending],
        *,
        status: int | None,
        body: bytes = b"",
        retry_after: str | None = None,
        error: str | None = None,
        attempt: int,
        started: float,
    ) -> Verdict:
        """Count the outcome of one request for ``batch`` and say what to do next.

        ``status`` is None when no answer came (``error`` says why). ``started`` is the
        monotonic time of the batch's first attempt.
        """
        s = outbox.stats
        if (status is not None and 200 <= status < 300) or status == 422:
            answer = self._read(body)
            if answer is None:  # not our service's answer: count the batch as stored
                with outbox.lock:
                    s.stored += len(batch) if status != 422 else 0
                    s.rejected += len(batch) if status == 422 else 0
                return Verdict()
            return Verdict(results=self._count(outbox, batch, answer))
        if status == 413 and len(batch) > 1:
            return Verdict(split=True)
        transient = status is None or status in (408, 425, 429) or status >= 500
        if transient:
            delay = max(self.backoff(attempt), _seconds(retry_after))
            if time.monotonic() + delay - started <= self.max_retry_time:
                with outbox.lock:
                    s.retries += 1
                why = error or f"HTTP {status}"
                log.info(
                    "sentinel: sending %d trace records failed (%s); retrying in %.1f s",
                    len(batch),
                    why,
                    delay,
                )
                return Verdict(retry=True, delay=delay)
            what = f"the service did not take them within {self.max_retry_time:.0f} s"
        else:
            what = f"the service refused the request (HTTP {status}: {body[:300]!r})"
        with outbox.lock:
            s.failed += len(batch)
            outbox._warn("failed", "%d trace records were lost: %s", len(batch), what)
        return Verdict()

    @staticmethod
    def _read(body: bytes) -> _Answer | None:
        try:
            return _ANSWER.decode(body)
        except msgspec.DecodeError:
            return None

    @staticmethod
    def _count(
        outbox: Outbox, batch: Sequence[Pending], answer: _Answer
    ) -> dict[str, float | None]:
        s = outbox.stats
        results: dict[str, float | None] = {}
        for item in answer.traces:
            results[item.id] = item.p_correct
        with outbox.lock:
            s.stored += sum(1 for i in answer.traces if i.status == "stored")
            s.duplicates += sum(1 for i in answer.traces if i.status == "duplicate")
            s.rejected += len(answer.rejections)
        for r in answer.rejections[:5]:
            rid = r.id or (batch[r.index].id if 0 <= r.index < len(batch) else f"#{r.index}")
            log.warning(
                "sentinel: the service rejected trace %s: %s%s",
                rid,
                f"{r.field}: " if r.field else "",
                r.reason,
            )
        if len(answer.rejections) > 5:
            log.warning("sentinel: ... and %d more rejected", len(answer.rejections) - 5)
        return results


def _seconds(retry_after: str | None) -> float:
    """``Retry-After`` in seconds (the HTTP-date form counts as 1 s); 0 when absent."""
    if not retry_after:
        return 0.0
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return 1.0
