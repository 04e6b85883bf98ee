"""`wrap_openai` with real parts end to end: the official openai client calls the real
llama.cpp server (SmolLM2-135M-Instruct) through the wrapper, and a real ``sentinel
serve`` process (`ServiceProcess`) receives the records. The application's answers equal
unwrapped answers to the same request (temperature 0, fixed seed), the service counts
every call under its slice, and stopping the service mid-run costs the application
nothing: its answers keep coming, nothing raises, the losses are counted.

As in tests/test_proxy_model.py, each compared request is sent once first, so that both
meet llama-cpp-python's prompt cache in the same state; requests are short (12 tokens).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from openai.types.chat import ChatCompletionMessageParam

from entropy_sentinel.client import AsyncSentinel, Sentinel, wrap_openai
from entropy_sentinel.collect.model_server import LocalModelServer
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.service import ServiceProcess
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]

pytestmark = pytest.mark.model

_SETTINGS: Any = {"max_tokens": 12, "temperature": 0.0, "seed": 7}  # create() keywords


@pytest.fixture
def service(smollm2_model: Path, tmp_path: Path) -> Iterator[ServiceProcess]:
    svc = ServiceProcess(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model=smollm2_model,
        log_path=tmp_path / "service.log",
    )
    with svc:
        yield svc


def _slices(service: ServiceProcess) -> list[dict[str, str]]:
    engine = sa.create_engine(service.db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(traces.c.slice, traces.c.p)).all()
    finally:
        engine.dispose()
    assert all(0.0 <= r.p <= 1.0 for r in rows)
    return sorted((json.loads(r.slice) for r in rows), key=lambda s: sorted(s.items()))


def _messages(q: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": q}]


def _warm(server: LocalModelServer, route: str, body: dict[str, Any]) -> None:
    warm = {**body, "model": server.alias, "stream": False}
    httpx.post(f"{server.base_url}/{route}", json=warm, timeout=120).raise_for_status()


def _dump(obj: Any) -> Any:
    if isinstance(obj, list):
        return [_dump(x) for x in obj]
    out = obj.model_dump()
    out.pop("id"), out.pop("created")
    return out


def test_wrapped_answers_equal_direct_ones_and_the_service_counts_them(
    model_server: LocalModelServer, service: ServiceProcess
) -> None:
    direct = openai.OpenAI(base_url=model_server.base_url, api_key="k", max_retries=0)
    m = model_server.alias
    with Sentinel(service.url) as sentinel:
        client = wrap_openai(
            direct,
            sentinel,
            slice=lambda body: {"domain": "arith" if "times" in str(body) else "capitals"},
            legacy_top_logprobs=20,  # llama.cpp gives 20 in legacy completions too
        )
        for q in ("What is 6 times 7?", "What is the capital of France?"):
            body = {"messages": _messages(q), **_SETTINGS}
            _warm(model_server, "chat/completions", body)
            a = client.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
            b = direct.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
            assert _dump(a) == _dump(b) and a.choices[0].logprobs is None
            s = client.chat.completions.create(
                model=m, messages=_messages(q), stream=True, **_SETTINGS
            )
            t = direct.chat.completions.create(
                model=m, messages=_messages(q), stream=True, **_SETTINGS
            )
            assert _dump(list(s)) == _dump(list(t))
        prompt = "Q: What is 3 times 3?\nA:"
        _warm(model_server, "completions", {"prompt": prompt, **_SETTINGS})
        c = client.completions.create(model=m, prompt=prompt, **_SETTINGS)
        d = direct.completions.create(model=m, prompt=prompt, **_SETTINGS)
        assert _dump(c) == _dump(d) and c.choices[0].logprobs is None
        assert sentinel.flush(60)
        stats = sentinel.stats
    direct.close()
    assert (stats.recorded, stats.stored, stats.rejected, stats.lost) == (5, 5, 0, 0)
    assert _slices(service) == [{"domain": "arith"}] * 3 + [{"domain": "capitals"}] * 2


def test_async_wrapped_answers_equal_direct_ones(
    model_server: LocalModelServer, service: ServiceProcess
) -> None:
    m = model_server.alias
    q = "What is 5 times 8?"
    _warm(model_server, "chat/completions", {"messages": _messages(q), **_SETTINGS})

    async def main() -> tuple[Any, Any, Any, Any, int]:
        direct = openai.AsyncOpenAI(base_url=model_server.base_url, api_key="k", max_retries=0)
        async with AsyncSentinel(service.url) as sentinel:
            client = wrap_openai(direct, sentinel, slice={"domain": "async"})
            a = await client.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
            b = await direct.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
            s = await client.chat.completions.create(
                model=m, messages=_messages(q), stream=True, **_SETTINGS
            )
            chunks = [c async for c in s]
            t = await direct.chat.completions.create(
                model=m, messages=_messages(q), stream=True, **_SETTINGS
            )
            direct_chunks = [c async for c in t]
            assert await sentinel.flush(60)
            stored = sentinel.stats.stored
        await direct.close()
        return a, b, chunks, direct_chunks, stored

    a, b, chunks, direct_chunks, stored = asyncio.run(main())
    assert _dump(a) == _dump(b)
    assert _dump(chunks) == _dump(direct_chunks)
    assert stored == 2
    assert _slices(service) == [{"domain": "async"}] * 2


def test_stopping_the_service_mid_run_costs_the_application_nothing(
    model_server: LocalModelServer, service: ServiceProcess
) -> None:
    direct = openai.OpenAI(base_url=model_server.base_url, api_key="k", max_retries=0)
    m = model_server.alias
    q = "What is 2 times 9?"
    _warm(model_server, "chat/completions", {"messages": _messages(q), **_SETTINGS})
    expected = direct.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
    sentinel = Sentinel(service.url, max_retry_time=2.0, linger=0.0)
    client = wrap_openai(direct, sentinel, slice={"phase": "up"})
    answers = [client.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)]
    assert sentinel.flush(60)
    service.stop()  # the service goes away (SIGTERM)
    down = wrap_openai(direct, sentinel, slice={"phase": "down"})
    for stream in (False, True, False):
        if stream:
            chunks = list(
                down.chat.completions.create(
                    model=m, messages=_messages(q), stream=True, **_SETTINGS
                )
            )
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            answers.append(
                down.chat.completions.create(model=m, messages=_messages(q), **_SETTINGS)
            )
    assert all(_dump(a) == _dump(expected) for a in answers)
    sentinel.close(timeout=30)
    stats = sentinel.stats
    direct.close()
    assert (stats.recorded, stats.stored) == (4, 1)
    assert stats.failed + stats.dropped == 3 and stats.retries >= 1
    assert _slices(service) == [{"phase": "up"}]
