"""The proxy with real parts end to end: the official `openai` client calls the service,
which forwards to the real llama.cpp server (SmolLM2-135M-Instruct); the client's
answers equal what the server returns directly for the same request and seed, and the
traces are in the database with the right slices.

Requests are short (12-16 tokens) to keep the test under a minute on two shared cores.
llama-cpp-python reuses the evaluated tokens of the previous request (its prompt cache),
and the first request for a prompt can sample differently from the next ones with the
same seed (measured: after a one-token warm-up too; after one full request, every
repeat, streamed or not, with or without logprobs, gives the same answer). So each
comparison first sends the same request once, directly.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa

from entropy_sentinel.collect.model_server import LocalModelServer
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.tables import trace_payloads, traces
from entropy_sentinel.testing.service import ThreadedServer
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]

pytestmark = pytest.mark.model

_VOLATILE = re.compile(rb'("id": ?"[^"]*"|"created": ?\d+)')


@pytest.fixture(scope="module")
def proxy(
    model_server: LocalModelServer, smollm2_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    db = tmp_path_factory.mktemp("proxy-model") / "sentinel.db"
    settings = Settings(
        db_url=f"sqlite:///{db}",
        model_path=smollm2_model,
        upstream=model_server.base_url,
        evaluate_every=3600.0,
        proxy_record_text=True,
        store_raw=True,
    )
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


@pytest.fixture
def clients(
    proxy: ThreadedServer, model_server: LocalModelServer
) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    """(through the proxy, direct) OpenAI clients, closed after the test."""
    key = "sk-test-client-key"  # llama.cpp ignores it; the proxy forwards it
    via = openai.OpenAI(base_url=proxy.url + "/v1", api_key=key, max_retries=0, timeout=120)
    direct = openai.OpenAI(base_url=model_server.base_url, api_key=key, max_retries=0, timeout=120)
    with via, direct:
        yield via, direct


def _dump(obj: Any) -> Any:
    out = obj.model_dump()
    out.pop("id"), out.pop("created")
    return out


def _normalised(raw: bytes) -> bytes:
    """The answer's bytes without the per-request id and creation time."""
    return _VOLATILE.sub(b"", raw)


def _rows(proxy: ThreadedServer, ids: list[str]) -> dict[str, Any]:
    """The stored rows of the answers with these upstream ids (recorded under ids of the
    proxy's own, the upstream's in meta), each with its raw record as ``record``."""
    state: ServiceState = proxy.app.state.service
    deadline = time.monotonic() + 30
    while True:
        with state.db.read.connect() as conn:
            rows = conn.execute(sa.select(traces, trace_payloads.c.raw).join(trace_payloads)).all()
        found = {}
        for r in rows:
            upstream_id = json.loads(r.meta)["proxy"]["upstream_id"]
            if upstream_id in ids:
                found[upstream_id] = SimpleNamespace(
                    **r._mapping, record=json.loads(zlib.decompress(r.raw))
                )
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _warm(server: LocalModelServer, body: dict[str, Any], route: str = "chat/completions") -> None:
    """Send ``body`` once, so that both compared requests meet the same cache state."""
    warm = {**body, "model": server.alias, "stream": False}
    httpx.post(f"{server.base_url}/{route}", json=warm, timeout=120).raise_for_status()


def _request(question: str, *, logprobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": question}],
        "max_tokens": 16,
        "temperature": 0.7,
        "seed": 1234,
    }
    if logprobs:
        body.update(logprobs=True, top_logprobs=20)
    return body


@pytest.mark.parametrize("logprobs", [False, True], ids=["plain", "client-logprobs"])
def test_chat_answers_equal_the_upstreams_byte_for_byte(
    proxy: ThreadedServer,
    model_server: LocalModelServer,
    clients: tuple[openai.OpenAI, openai.OpenAI],
    logprobs: bool,
) -> None:
    via, direct = clients
    body = _request(f"What is {7 if logprobs else 6} times 8?", logprobs=logprobs)
    slice_ = {"domain": "arithmetic", "customer": "acme" if logprobs else "globex"}
    header = ",".join(f"{k}={v}" for k, v in slice_.items())
    _warm(model_server, body)
    a = via.chat.completions.with_raw_response.create(
        model=model_server.alias, extra_headers={"X-Sentinel-Slice": header}, **body
    )
    b = direct.chat.completions.with_raw_response.create(model=model_server.alias, **body)
    assert a.status_code == b.status_code == 200
    assert _normalised(a.content) == _normalised(b.content)
    pa, pb = a.parse(), b.parse()
    assert _dump(pa) == _dump(pb)
    assert (pa.choices[0].logprobs is not None) == logprobs
    assert pa.choices[0].message.content

    row = _rows(proxy, [pa.id])[pa.id]
    assert json.loads(row.slice) == slice_
    meta = json.loads(row.meta)
    assert row.record["answer"] == pa.choices[0].message.content  # proxy_record_text
    assert row.record["model"] == model_server.alias and row.record["k"] == 20
    assert meta["proxy"]["client_logprobs"] is logprobs
    assert row.n_tokens == pa.usage.completion_tokens
    assert 0.0 <= row.p <= 1.0


@pytest.mark.parametrize("logprobs", [False, True], ids=["plain", "client-logprobs"])
def test_streamed_answers_equal_the_upstreams(
    proxy: ThreadedServer,
    model_server: LocalModelServer,
    clients: tuple[openai.OpenAI, openai.OpenAI],
    logprobs: bool,
) -> None:
    via, direct = clients
    body = _request(f"Name {'two' if logprobs else 'three'} colours.", logprobs=logprobs)
    _warm(model_server, body)
    got = list(
        via.chat.completions.create(
            model=model_server.alias,
            stream=True,
            metadata={"sentinel_slice": "domain=colours"},
            **body,
        )
    )
    want = list(direct.chat.completions.create(model=model_server.alias, stream=True, **body))
    assert [_dump(c) for c in got] == [_dump(c) for c in want]
    assert any(c.choices and c.choices[0].logprobs is not None for c in got) == logprobs

    row = _rows(proxy, [got[0].id])[got[0].id]
    assert json.loads(row.slice) == {"domain": "colours"}
    text = "".join(c.choices[0].delta.content or "" for c in got if c.choices)
    assert row.record["answer"] == text


def test_streamed_bytes_equal_the_upstreams(
    proxy: ThreadedServer, model_server: LocalModelServer
) -> None:
    # An answer in ASCII: llama-cpp-python streams a character whose UTF-8 bytes span
    # several tokens as "" per token when logprobs are on (it sends it whole when they
    # are off), so such characters differ with the proxy (docs/proxy.md, known limits).
    question = "List two fruits."
    body = {"model": model_server.alias, "stream": True, **_request(question, logprobs=False)}
    _warm(model_server, body)
    raws = []
    for url in (proxy.url + "/v1", model_server.base_url):
        with httpx.stream("POST", url + "/chat/completions", json=body, timeout=120) as r:
            assert r.status_code == 200
            raws.append(b"".join(r.iter_raw()))
    events = [e for e in raws[1].split(b"\n\n") if e.startswith(b"data: {")]
    text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events)
    assert text.strip() and text.isascii(), text
    assert _normalised(raws[0]) == _normalised(raws[1])
    assert raws[0].rstrip().endswith(b"data: [DONE]")


def test_legacy_completions_plain_and_streamed(
    proxy: ThreadedServer,
    model_server: LocalModelServer,
    clients: tuple[openai.OpenAI, openai.OpenAI],
) -> None:
    via, direct = clients
    params: dict[str, Any] = {
        "model": model_server.alias,
        "prompt": "The capital of France is",
        "max_tokens": 12,
        "temperature": 0.7,
        "seed": 99,
    }
    _warm(model_server, params, "completions")
    a = via.completions.create(extra_headers={"X-Sentinel-Slice": "domain=geography"}, **params)
    b = direct.completions.create(**params)
    assert _dump(a) == _dump(b) and a.choices[0].logprobs is None
    got = list(
        via.completions.create(
            stream=True, extra_headers={"X-Sentinel-Slice": "domain=geography"}, **params
        )
    )
    want = list(direct.completions.create(stream=True, **params))
    assert [_dump(c) for c in got] == [_dump(c) for c in want]
    assert "".join(c.choices[0].text for c in got) == a.choices[0].text

    rows = _rows(proxy, [a.id, got[0].id])
    assert len(rows) == 2
    for row in rows.values():
        assert json.loads(row.slice) == {"domain": "geography"}
        assert row.n_tokens == a.usage.completion_tokens
    # the streamed trace is the same response, token for token: the same features
    x, y = rows[a.id], rows[got[0].id]
    assert x.h_mean == pytest.approx(y.h_mean) and x.p == pytest.approx(y.p)


def test_the_estimates_api_sees_the_proxied_slices(proxy: ThreadedServer) -> None:
    body = httpx.get(proxy.url + "/v1/estimates", params={"by": "domain"}, timeout=30).json()
    counts = {r["slice"]["domain"]: r["n"] for r in body["records"]}
    assert counts.get("arithmetic", 0) >= 2 and counts.get("geography", 0) >= 2
    assert all(0.0 <= r["estimate"] <= 1.0 for r in body["records"])
    metrics = httpx.get(proxy.url + "/metrics", timeout=30).text
    assert 'sentinel_proxy_traces_total{outcome="rejected"} 0.0' in metrics
    assert 'sentinel_proxy_traces_total{outcome="failed"} 0.0' in metrics


def test_demo_traffic_goes_through_the_proxy_with_its_slices(
    proxy: ThreadedServer, model_server: LocalModelServer
) -> None:
    from entropy_sentinel.collect import load_benchmarks
    from entropy_sentinel.testing.traffic import run_traffic

    items = load_benchmarks("synth_add_1d,synth_mul_1d", limit=2, offset=150)
    assert [i.benchmark for i in items] == ["synth_add_1d", "synth_mul_1d"] * 2  # interleaved
    seen: list[str] = []
    results = run_traffic(
        proxy.url,
        items,
        model=model_server.alias,
        max_tokens=24,
        # concurrent: a streamed answer must not be cut off by the next request waiting
        # for the model (llama-cpp-python does that unless told not to)
        concurrency=4,
        stream_every=2,
        extra_slice=lambda i, item: {"customer": "acme" if i % 2 else "globex"},
        on_result=lambda r: seen.append(r.item_id),
    )
    assert sorted(seen) == sorted(i.id for i in items)
    assert all(r.ok and r.trace_id for r in results), [r.error for r in results]
    assert [r.stream for r in results] == [False, True, False, True]
    assert all(r.correct in (True, False) and r.grader == "number-v2" for r in results)
    state: ServiceState = proxy.app.state.service
    deadline = time.monotonic() + 30
    while True:  # recorded beside the answers: wait for them
        with state.db.read.connect() as conn:
            stored = conn.execute(
                sa.select(traces, trace_payloads.c.raw)
                .join(trace_payloads)
                .where(traces.c.trace_id.in_([r.trace_id for r in results]))
            ).all()
        if len(stored) == len(results) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rows = {row.trace_id: row for row in stored}
    for r in results:
        row = rows[r.trace_id]
        assert json.loads(row.slice) == {
            "domain": r.slice["domain"],
            "customer": r.slice["customer"],
        }
        assert json.loads(zlib.decompress(row.raw))["answer"] == r.text


def test_each_trace_is_keyed_by_the_model_the_request_asked_for(
    proxy: ThreadedServer, clients: tuple[openai.OpenAI, openai.OpenAI]
) -> None:
    """Two model names through the proxy to the one real server: each trace belongs to the
    model its request named, the answer's own model name is kept in meta; the artifact
    records no model, so it scores both and their estimates are marked."""
    via, _ = clients
    ids, named = {}, {}
    for name in ("smol-fast", "smol-slow"):
        answer = via.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=8,
            extra_headers={"X-Sentinel-Slice": "domain=colours"},
        )
        ids[name], named[name] = answer.id, answer.model
    rows = _rows(proxy, list(ids.values()))
    for name, tid in ids.items():
        row = rows[tid]
        assert row.model == name and row.p is not None
        assert json.loads(row.meta)["proxy"]["answer_model"] == named[name]
    models = {
        m["name"]: m for m in httpx.get(proxy.url + "/v1/models", timeout=30).json()["models"]
    }
    for name in ids:
        assert models[name]["estimator"]["other_model"] is True
        assert models[name]["traces"]["scored"] == 1
