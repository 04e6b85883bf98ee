"""`AsyncSentinel`: `Sentinel` for asyncio applications; one task sends, nothing blocks.

`record` is the same non-blocking call as `Sentinel.record` (safe from any thread); the
sending runs as a task on the event loop that first used the sender (``async with``, or
the first `record` made from inside a running loop), over an `httpx.AsyncClient`.
Encoding responses into records runs in a worker thread (`asyncio.to_thread`), so a
large response never holds the loop. Batching, retries and counting are `Sentinel`'s
(`entropy_sentinel.client.delivery`). `flush` and `aclose` are awaitables::

    async with AsyncSentinel("http://127.0.0.1:8000") as sentinel:
        sentinel.record(response, slice={"domain": "chemistry"})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Any

import httpx

from entropy_sentinel.client.delivery import Pending
from entropy_sentinel.client.sentinel import SentinelBase

__all__ = ["AsyncSentinel"]

log = logging.getLogger("entropy_sentinel.client")


class AsyncSentinel(SentinelBase):
    """Records responses and sends them from an asyncio task (see the module docstring).

    Takes the arguments of `SentinelBase`, plus ``transport``: an httpx async transport
    for the service (tests; default: TCP).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Any,
    ) -> None:
        super().__init__(url, api_key, **options)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._settled: asyncio.Event | None = None
        self._flushing = 0
        self._stopping = False

    # ------------------------------------------------------------ queueing
    def submit(self, item: Pending) -> bool:
        """Queue a ready record (never blocks, from any thread); False when dropped."""
        ok = self.outbox.put(item)
        if ok:
            self._kick()
        return ok

    def _kick(self) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        loop = self._loop
        if loop is None or loop.is_closed():
            if running is not None:
                self._start(running)
            return  # queued; sent once the sender starts on a loop
        if running is loop:
            assert self._wake is not None
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake_up)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)
        self._task = loop.create_task(self._run(), name="entropy-sentinel")
        self._wake.set()

    async def start(self) -> AsyncSentinel:
        """Start sending on the running loop (also done by ``async with`` and `record`)."""
        if self._task is None:
            self._start(asyncio.get_running_loop())
        return self

    # ------------------------------------------------------------ lifecycle
    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record queued so far is settled; False on timeout."""
        await self.start()
        assert self._settled is not None
        assert self._wake is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        self._flushing += 1
        try:
            while self.outbox.unfinished and self._task is not None and not self._task.done():
                self._wake.set()
                self._settled.clear()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._settled.wait(), left)
            return not self.outbox.unfinished
        finally:
            self._flushing -= 1

    async def aclose(self, timeout: float | None = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` s), then stop the task."""
        if self.outbox.closed:
            return
        if self._task is not None or len(self.outbox):
            await self.flush(timeout)
        box = self.outbox
        with box.lock:
            box.closed = True
            left = box.drain()
            box.stats.dropped += len(left)
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
        if left:
            log.warning("sentinel: closed with %d trace records unsent (dropped)", len(left))

    async def __aenter__(self) -> AsyncSentinel:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------ the task
    async def _run(self) -> None:
        assert self._wake is not None
        assert self._settled is not None
        box = self.outbox
        while True:
            if not len(box):
                self._settled.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            deadline = time.monotonic() + self.linger
            while len(box) < self.batch_size and not self._flushing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)
                self._wake.clear()
            with box.lock:
                batch = self._take()
            try:
                await self._deliver(batch)
            except asyncio.CancelledError:
                with box.lock:
                    box.stats.failed += len(batch)
                box.done(len(batch))
                raise
            except Exception:  # a bug must not stop the task: count the batch, go on
                log.exception("sentinel: sending %d trace records failed", len(batch))
                with box.lock:
                    box.stats.failed += len(batch)
                box.done(len(batch))
            self._settled.set()

    async def _deliver(self, batch: list[Pending]) -> None:
        if all(isinstance(p.encode, bytes) for p in batch):
            batch, body = self._encode(batch)
        else:
            batch, body = await asyncio.to_thread(self._encode, batch)
        if body is None:
            return
        started = time.monotonic()
        attempt = 0
        while True:
            status, data, retry_after, error = await self._post(body)
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
                    await self._deliver(part)
                return
            if not verdict.retry:
                self._export(batch, verdict.results)
                self.outbox.done(len(batch))
                return
            await asyncio.sleep(verdict.delay)
            attempt += 1

    async def _post(self, body: bytes) -> tuple[int | None, bytes, str | None, str | None]:
        assert self._client is not None
        with self.outbox.lock:
            self.outbox.stats.requests += 1
        try:
            r = await self._client.post(self.endpoint, content=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return None, b"", None, f"{type(exc).__name__}: {exc}"
        return r.status_code, r.content, r.headers.get("retry-after"), None
