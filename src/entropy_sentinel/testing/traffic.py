"""Send a stream of chat requests through the proxy, each with its slice: demo traffic.

`send_traffic` asks every benchmark item (from
`entropy_sentinel.collect.load_benchmarks`, which interleaves domains) as an OpenAI
chat completion through the service's proxy, with ``X-Sentinel-Slice: domain=<the
item's benchmark>`` (plus any extra dimensions you give), some of them streamed, and
grades each answer with the project's graders. The prompts are the collector's
templates, so an estimator fitted on a corpus collected from the same model applies.
The proxy records every answer as a trace; the results say which (``trace_id``) and
whether it was correct, so a caller can post some labels back (``POST /v1/labels``).

>>> from entropy_sentinel.collect import load_benchmarks             # doctest: +SKIP
>>> items = load_benchmarks("synth_add_1d,gsm8k", limit=10, offset=150)  # doctest: +SKIP
>>> results = run_traffic(svc.url, items, model="smollm2-135m-instruct")  # doctest: +SKIP
>>> sum(r.ok for r in results), svc.url + "/"                        # doctest: +SKIP
(20, 'http://127.0.0.1:8000/')
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.collect.graders import grade_item
from entropy_sentinel.collect.prompts import template_for
from entropy_sentinel.service.proxy.relay import TRACE_ID_HEADER
from entropy_sentinel.wire.sse import SSEFramer, event_data

__all__ = ["TrafficResult", "run_traffic", "send_traffic", "slice_header"]


@dataclass(frozen=True)
class TrafficResult:
    """One request of the traffic.

    Attributes:
        item_id: the benchmark item asked.
        slice: the slice sent in ``X-Sentinel-Slice``.
        status: HTTP status of the answer (0 when no answer arrived).
        trace_id: the id the proxy recorded the answer under (its ``X-Sentinel-Trace-Id``
            header; the answer's own ``id`` is the upstream's).
        text: the answer's text.
        correct: the grader's verdict (None when it could not decide or no answer).
        grader: the grader's name.
        stream: whether the request was streamed.
        seconds: time to the whole answer.
        error: what went wrong, when ``status`` is not 200.
    """

    item_id: str
    slice: Mapping[str, str]
    status: int
    trace_id: str | None
    text: str | None
    correct: bool | None
    grader: str | None
    stream: bool
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.text is not None


def slice_header(slice_: Mapping[str, str]) -> str:
    """``X-Sentinel-Slice`` text of a slice (values percent-encoded where needed).

    >>> slice_header({"domain": "gsm8k", "customer": "acme, inc"})
    'domain=gsm8k,customer=acme%2C%20inc'
    """
    return ",".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in slice_.items())


async def send_traffic(
    proxy_url: str,
    items: Sequence[Item],
    *,
    model: str,
    extra_slice: Callable[[int, Item], Mapping[str, str]] | None = None,
    concurrency: int = 2,
    max_tokens: int = 160,
    temperature: float = 0.5,
    seed: int = 0,
    stream_every: int = 3,
    api_key: str = "sk-no-key-needed",
    timeout: float = 600.0,
    on_result: Callable[[TrafficResult], None] | None = None,
) -> list[TrafficResult]:
    """Ask every item through the proxy at ``proxy_url`` (the service's base URL).

    Args:
        proxy_url: the monitoring service, e.g. ``http://127.0.0.1:8000``.
        items: the questions, in the order to send them.
        model: the upstream's model name.
        extra_slice: more slice dimensions for request ``i`` (e.g. a customer).
        concurrency: requests in flight at once.
        max_tokens, temperature: sampling; each request's seed is
            ``(seed + crc32(item id)) mod 2**31``, as in the collector.
        stream_every: every n-th request is streamed (0: none).
        api_key: sent as ``Authorization: Bearer``, which the proxy forwards upstream.
        timeout: seconds per request.
        on_result: called with each result as it arrives (progress).

    Returns:
        One result per item, in the order of ``items``.
    """
    results: list[TrafficResult | None] = [None] * len(items)
    queue = iter(enumerate(items))
    url = proxy_url.rstrip("/") + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            for i, item in queue:
                slice_ = {"domain": item.benchmark, **(extra_slice(i, item) if extra_slice else {})}
                body: dict[str, Any] = {
                    "model": model,
                    "messages": template_for(item).render(item),
                    "max_tokens": max_tokens,
                    "temperature": temperature,
                    "seed": (seed + zlib.crc32(item.id.encode())) % 2**31,
                }
                stream = stream_every > 0 and i % stream_every == stream_every - 1
                headers = {
                    "Authorization": f"Bearer {api_key}",
                    "X-Sentinel-Slice": slice_header(slice_),
                }
                result = await _ask(client, url, body, headers, item, slice_, stream)
                results[i] = result
                if on_result is not None:
                    on_result(result)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return [r for r in results if r is not None]


def run_traffic(proxy_url: str, items: Sequence[Item], **kwargs: Any) -> list[TrafficResult]:
    """`send_traffic` from synchronous code (its own event loop)."""
    return asyncio.run(send_traffic(proxy_url, items, **kwargs))


async def _ask(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str],
    item: Item,
    slice_: Mapping[str, str],
    stream: bool,
) -> TrafficResult:
    started = time.perf_counter()
    trace_id: str | None = None
    text: str | None = None
    status = 0
    error: str | None = None
    try:
        if stream:
            parts: list[str] = []
            framer = SSEFramer()
            async with client.stream(
                "POST", url, json={**body, "stream": True}, headers=headers
            ) as r:
                status = r.status_code
                trace_id = r.headers.get(TRACE_ID_HEADER)
                if status != 200:
                    error = (await r.aread()).decode("utf-8", "replace")[:500]
                else:
                    async for piece in r.aiter_bytes():
                        for event in framer.feed(piece):
                            data = event_data(event)
                            if not data or data.strip() == b"[DONE]":
                                continue
                            chunk = json.loads(data)
                            for choice in chunk.get("choices") or ():
                                parts.append((choice.get("delta") or {}).get("content") or "")
                    text = "".join(parts)
        else:
            r = await client.post(url, json=body, headers=headers)
            status = r.status_code
            trace_id = r.headers.get(TRACE_ID_HEADER)
            if status != 200:
                error = r.text[:500]
            else:
                answer = r.json()
                text = answer["choices"][0]["message"].get("content") or ""
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    grade = grade_item(text, item) if text is not None else None
    return TrafficResult(
        item_id=item.id,
        slice=slice_,
        status=status,
        trace_id=trace_id,
        text=text,
        correct=None if grade is None else grade.correct,
        grader=None if grade is None else grade.grader,
        stream=stream,
        seconds=time.perf_counter() - started,
        error=error,
    )
