"""The proxy in a real service, against an upstream that replays real recorded SmolLM2
answers (tests/fixtures/smollm2) over real HTTP: what is forwarded, what comes back,
the failures the real model server cannot produce on demand (upstream errors,
timeouts, a stream that breaks off, a client that leaves), and that recording never
reaches the client. Every server is a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from openai.types.chat import ChatCompletionMessageParam

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import ApiKey, Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.tables import trace_payloads, traces
from entropy_sentinel.testing.replay_upstream import ReplayUpstream
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import SMOLLM2_FIXTURES
from tests.service_fixtures import corpus_model, corpus_records, smollm2_model

__all__ = ["corpus_model", "corpus_records", "smollm2_model"]

SECRET = "sk-client-secret-do-not-log-0123456789"
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 17 + 25?"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ReplayUpstream, ThreadedServer]]:
    app = ReplayUpstream.from_directory(SMOLLM2_FIXTURES)
    with ThreadedServer(app) as srv:
        yield app, srv


def _serve(tmp: Path, model: Path, upstream_url: str | None, **kw: Any) -> ThreadedServer:
    settings = Settings(
        db_url=f"sqlite:///{tmp / 'sentinel.db'}",
        model_path=model,
        upstream=upstream_url,
        evaluate_every=3600.0,
        **kw,
    )
    return ThreadedServer(create_app(settings))


@pytest.fixture(scope="module")
def service(
    upstream: tuple[ReplayUpstream, ThreadedServer],
    smollm2_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ThreadedServer]:
    tmp = tmp_path_factory.mktemp("proxy")
    with _serve(tmp, smollm2_model, upstream[1].url + "/v1", store_raw=True) as srv:
        yield srv


@pytest.fixture
def client_for() -> Iterator[Callable[..., openai.OpenAI]]:
    """OpenAI clients for base URLs, closed after the test."""
    made: list[openai.OpenAI] = []

    def make(base_url: str, api_key: str = "k") -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0))
        return made[-1]

    yield make
    for client in made:
        client.close()


def _recorded_chat() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((SMOLLM2_FIXTURES / "chat.json").read_text())
    return data


def _state(server: ThreadedServer) -> ServiceState:
    state: ServiceState = server.app.state.service
    return state


def _count(server: ThreadedServer, name: str, **labels: str) -> float:
    value = _state(server).metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def _wait(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _rows(server: ThreadedServer) -> list[dict[str, Any]]:
    """Every stored trace row (slice and meta decoded)."""
    with _state(server).db.read.connect() as conn:
        rows = conn.execute(sa.select(traces)).all()
    out = []
    for row in rows:
        one = dict(row._mapping)
        for key in ("slice", "meta"):
            one[key] = json.loads(one[key]) if isinstance(one[key], str) else one[key]
        out.append(one)
    return out


def _stored(server: ThreadedServer, upstream_id: str) -> dict[str, Any] | None:
    """The stored row of the trace of the answer with this upstream id, or None."""
    for row in _rows(server):
        if row["meta"]["proxy"]["upstream_id"] == upstream_id:
            assert row["trace_id"].startswith("px-")  # recorded under an id of our own
            return row
    return None


def _wait_stored(server: ThreadedServer, trace_id: str) -> dict[str, Any]:
    _wait(lambda: _stored(server, trace_id) is not None, f"trace {trace_id}")
    row = _stored(server, trace_id)
    assert row is not None
    return row


# ------------------------------------------------------------------ forwarding
def test_headers_go_upstream_unchanged_and_are_never_logged_or_stored(
    service: ThreadedServer,
    upstream: tuple[ReplayUpstream, ThreadedServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "OpenAI-Organization": "org-sentinel",
        "OpenAI-Project": "proj_1",
        "X-Custom": "kept",
        "X-Sentinel-Slice": "domain=chemistry, customer=acme",
    }
    r = httpx.post(
        service.url + "/v1/chat/completions",
        json={"model": "smollm2", "messages": CHAT, "user": "u-1"},
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    seen, body = upstream[0].requests[-1]
    assert seen["authorization"] == f"Bearer {SECRET}"
    assert (seen["openai-organization"], seen["openai-project"]) == ("org-sentinel", "proj_1")
    assert seen["x-custom"] == "kept" and seen["accept-encoding"] == "identity"
    assert not any(k.startswith("x-sentinel") for k in seen)
    sent = json.loads(body)
    assert (sent["logprobs"], sent["top_logprobs"], sent["user"]) == (True, 20, "u-1")

    answer = r.json()
    assert answer["choices"][0]["logprobs"] is None
    row = _wait_stored(service, answer["id"])
    assert row["trace_id"] == r.headers["x-sentinel-trace-id"]
    assert row["slice"] == {"domain": "chemistry", "customer": "acme"}
    assert row["meta"]["proxy"]["route"] == "chat/completions"
    with _state(service).db.read.connect() as conn:
        stored = conn.execute(sa.select(traces, trace_payloads.c.raw).join(trace_payloads)).all()
    assert stored, "store_raw keeps the record"
    for rec in stored:
        assert SECRET not in str(rec.meta) + str(rec.raw)
    assert all(SECRET not in rec.getMessage() + str(rec.__dict__) for rec in caplog.records)


def test_the_openai_client_gets_the_upstreams_answer_without_added_logprobs(
    service: ThreadedServer,
    upstream: tuple[ReplayUpstream, ThreadedServer],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    proxied = client_for(service.url + "/v1", SECRET)
    direct = client_for(upstream[1].url + "/v1", SECRET)
    recorded = {r["choices"][0]["message"]["content"] for r in _recorded_chat()}
    a = proxied.chat.completions.create(
        model="m",
        messages=CHAT,
        metadata={"sentinel_slice": "domain=bio"},
    )
    b = direct.chat.completions.create(model="m", messages=CHAT)
    assert a.choices[0].logprobs is None and b.choices[0].logprobs is None
    assert a.choices[0].message.content in recorded and a.usage is not None
    assert "sentinel_slice" not in upstream[0].requests[-2][1].decode()
    row = _wait_stored(service, a.id)
    assert row["slice"] == {"domain": "bio"} and row["n_tokens"] > 0

    # asked for logprobs: passed through untouched, and still recorded
    c = proxied.chat.completions.create(
        model="m",
        messages=CHAT,
        logprobs=True,
        top_logprobs=20,
    )
    assert c.choices[0].logprobs is not None and c.choices[0].logprobs.content
    assert json.loads(upstream[0].requests[-1][1])["top_logprobs"] == 20
    _wait_stored(service, c.id)


def test_streams_are_relayed_event_by_event_and_recorded(
    service: ThreadedServer,
    upstream: tuple[ReplayUpstream, ThreadedServer],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    client = client_for(service.url + "/v1", SECRET)
    stream = client.chat.completions.create(
        model="m",
        messages=CHAT,
        stream=True,
        extra_headers={"X-Sentinel-Slice": "domain=physics"},
    )
    chunks = list(stream)
    assert len(chunks) > 3 and all(c.choices[0].logprobs is None for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    row = _wait_stored(service, chunks[0].id)
    assert row["slice"] == {"domain": "physics"}
    assert row["n_tokens"] == sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert text

    # the raw bytes: every event the upstream sent, in order, [DONE] included
    with httpx.stream(
        "POST",
        service.url + "/v1/chat/completions",
        json={"model": "m", "messages": CHAT, "stream": True, "logprobs": True, "top_logprobs": 20},
        timeout=30,
    ) as r:
        raw = b"".join(r.iter_raw())
    events = raw.split(b"\r\n\r\n")
    assert events[-2] == b"data: [DONE]" and events[-1] == b""
    assert all(b'"logprobs":{"content"' in e for e in events[1:-3])  # client asked: untouched


def test_upstream_errors_pass_back_with_status_and_body(
    service: ThreadedServer,
    upstream: tuple[ReplayUpstream, ThreadedServer],
    client_for: Callable[..., openai.OpenAI],
) -> None:
    before = _count(service, "sentinel_proxy_traces_total", outcome="skipped")
    direct = httpx.post(
        upstream[1].url + "/v1/chat/completions",
        json={"messages": CHAT},
        headers={"X-Replay-Status": "429"},
    )
    r = httpx.post(
        service.url + "/v1/chat/completions",
        json={"messages": CHAT},
        headers={"X-Replay-Status": "429"},
    )
    assert (r.status_code, r.content) == (direct.status_code, direct.content) == (429, r.content)
    client = client_for(service.url + "/v1", "k")
    with pytest.raises(openai.RateLimitError, match="replayed error 429"):
        client.chat.completions.create(
            model="m",
            messages=CHAT,
            extra_headers={"X-Replay-Status": "429"},
        )
    assert _count(service, "sentinel_proxy_traces_total", outcome="skipped") == before + 2
    assert (
        _count(
            service,
            "sentinel_proxy_requests_total",
            route="chat/completions",
            outcome="upstream_error",
        )
        >= 2
    )


def test_bad_slices_are_refused_before_forwarding(
    service: ThreadedServer, client_for: Callable[..., openai.OpenAI]
) -> None:
    client = client_for(service.url + "/v1", "k")
    with pytest.raises(openai.BadRequestError, match="is not name=value") as info:
        client.chat.completions.create(
            model="m",
            messages=CHAT,
            extra_headers={"X-Sentinel-Slice": "chemistry"},
        )
    assert info.value.code == "invalid_slice"


def test_an_upstream_refusing_logprobs_gets_the_clients_request_as_sent(
    service: ThreadedServer, upstream: tuple[ReplayUpstream, ThreadedServer]
) -> None:
    before = _count(service, "sentinel_proxy_traces_total", outcome="skipped")
    body = {"model": "reasoner", "messages": CHAT, "metadata": {"sentinel_slice": "domain=x"}}
    refuse = {"X-Replay-Refuse-Logprobs": "1"}
    r = httpx.post(service.url + "/v1/chat/completions", json=body, headers=refuse, timeout=30)
    assert r.status_code == 200 and r.json()["choices"][0]["logprobs"] is None
    tried, retried = (json.loads(b) for _, b in list(upstream[0].requests)[-2:])
    assert tried["logprobs"] is True and "logprobs" not in retried
    assert retried == {"model": "reasoner", "messages": CHAT}  # as sent, less our slice
    # remembered: the next request for that model goes as sent at once
    r = httpx.post(service.url + "/v1/chat/completions", json=body, headers=refuse, timeout=30)
    assert r.status_code == 200 and "logprobs" not in json.loads(upstream[0].requests[-1][1])
    assert _count(service, "sentinel_proxy_traces_total", outcome="skipped") == before + 2
    # a client that asked for logprobs itself gets the upstream's refusal
    r = httpx.post(
        service.url + "/v1/chat/completions",
        json={**body, "logprobs": True},
        headers=refuse,
        timeout=30,
    )
    assert r.status_code == 400 and "not supported" in r.json()["error"]["message"]


# ------------------------------------------------------------------- failures
def test_timeouts_unreachable_and_missing_upstreams(
    upstream: tuple[ReplayUpstream, ThreadedServer],
    smollm2_model: Path,
    tmp_path: Path,
    client_for: Callable[..., openai.OpenAI],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens after close
    servers = {}
    with contextlib.ExitStack() as stack:
        for name, url, kw in (
            ("slow", upstream[1].url + "/v1", {"upstream_timeout": 0.5}),
            ("unreachable", dead, {}),
            ("missing", None, {}),
        ):
            (tmp_path / name).mkdir()
            servers[name] = stack.enter_context(_serve(tmp_path / name, smollm2_model, url, **kw))
        r = httpx.post(
            servers["slow"].url + "/v1/chat/completions",
            json={"messages": CHAT},
            headers={"X-Replay-Delay": "3"},
            timeout=30,
        )
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
        r = httpx.post(servers["unreachable"].url + "/v1/completions", json={"prompt": "x"})
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unreachable"
        client = client_for(servers["missing"].url + "/v1", "k")
        with pytest.raises(openai.NotFoundError, match="--upstream"):
            client.completions.create(model="m", prompt="x")
        for name, route, outcome in (
            ("slow", "chat/completions", "timeout"),
            ("unreachable", "completions", "unreachable"),
            ("missing", "completions", "refused"),
        ):
            labels = {"route": route, "outcome": outcome}
            assert _count(servers[name], "sentinel_proxy_requests_total", **labels) == 1


def test_a_stream_that_breaks_off_is_cut_off_for_the_client_too(service: ThreadedServer) -> None:
    before = _count(service, "sentinel_proxy_traces_total", outcome="stored")
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            service.url + "/v1/chat/completions",
            json={"messages": CHAT, "stream": True},
            headers={"X-Replay-Break-After": "3"},
            timeout=30,
        ) as r,
    ):
        b"".join(r.iter_raw())
    _wait(
        lambda: (
            _count(
                service, "sentinel_proxy_requests_total", route="chat/completions", outcome="broken"
            )
            == 1
        ),
        "the broken stream to be counted",
    )
    assert _count(service, "sentinel_proxy_traces_total", outcome="stored") == before


def test_a_client_leaving_mid_stream_closes_the_upstream_stream(
    service: ThreadedServer, upstream: tuple[ReplayUpstream, ThreadedServer]
) -> None:
    async def leave_early() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream(
                "POST",
                service.url + "/v1/chat/completions",
                json={"messages": CHAT, "stream": True},
                headers={"X-Replay-Event-Delay": "0.2"},
            ) as r,
        ):
            async for _ in r.aiter_raw():
                break  # one event, then hang up

    asyncio.run(leave_early())
    _wait(
        lambda: (
            _count(
                service,
                "sentinel_proxy_requests_total",
                route="chat/completions",
                outcome="disconnected",
            )
            == 1
        ),
        "the disconnect to be counted",
    )
    # the upstream saw its reader go away before the stream's end: the proxy closed it
    # rather than reading the answer nobody waits for
    record = upstream[0].streams[-1]
    _wait(lambda: record.outcome != "open", "the upstream stream to end")
    assert record.outcome == "closed" and record.sent < record.total, record


def test_recording_failures_never_reach_the_client(
    upstream: tuple[ReplayUpstream, ThreadedServer],
    corpus_model: Path,
    smollm2_model: Path,
    tmp_path: Path,
) -> None:
    # an estimator fitted on per-token entropies refuses logprob traces: the client
    # still gets its answer; the refusal is counted and logged
    (tmp_path / "entropies").mkdir()
    with _serve(tmp_path / "entropies", corpus_model, upstream[1].url + "/v1") as srv:
        r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": CHAT}, timeout=30)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        _wait(
            lambda: _count(srv, "sentinel_proxy_traces_total", outcome="rejected") == 1,
            "the rejection to be counted",
        )
        labels = {"reason": "model"}
        assert _count(srv, "sentinel_traces_rejected_total", **labels) == 1
    with _serve(tmp_path, smollm2_model, upstream[1].url + "/v1") as srv:
        # the database refuses the write (a trigger aborts every insert): counted as failed
        with _state(srv).db.write.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON traces "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
                )
            )
        r = httpx.post(
            srv.url + "/v1/chat/completions",
            json={"messages": CHAT, "stream": True},
            timeout=30,
        )
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\r\n\r\n")
        _wait(
            lambda: _count(srv, "sentinel_proxy_traces_total", outcome="failed") == 1,
            "the failure to be counted",
            timeout=30,
        )


def test_answers_whose_upstream_id_repeats_are_all_recorded(service: ThreadedServer) -> None:
    fixed = {"X-Replay-Id": "chatcmpl-always-the-same"}
    answers = [
        httpx.post(
            service.url + "/v1/chat/completions",
            json={"messages": CHAT, "stream": i % 2 == 1},
            headers=fixed,
            timeout=30,
        )
        for i in range(3)
    ]
    ids = {r.headers["x-sentinel-trace-id"] for r in answers}
    assert len(ids) == 3 and all(r.status_code == 200 for r in answers)
    _wait(
        lambda: {r["trace_id"] for r in _rows(service)} >= ids,
        "three traces with one upstream id",
    )
    same = [r for r in _rows(service) if r["trace_id"] in ids]
    assert {r["meta"]["proxy"]["upstream_id"] for r in same} == {"chatcmpl-always-the-same"}


def test_added_logprobs_that_cannot_be_removed_never_reach_the_client(
    service: ThreadedServer,
) -> None:
    nan = {"X-Replay-NaN": "1"}
    r = httpx.post(
        service.url + "/v1/chat/completions", json={"messages": CHAT}, headers=nan, timeout=30
    )
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert error["code"] == "unstrippable_answer" and "not valid JSON" in error["message"]
    assert b"top_logprobs" not in r.content
    with httpx.stream(
        "POST",
        service.url + "/v1/chat/completions",
        json={"messages": CHAT, "stream": True},
        headers=nan,
        timeout=30,
    ) as s:
        raw = b"".join(s.iter_raw())
    assert b"top_logprobs" not in raw and b'"code":"unstrippable_answer"' in raw
    labels = {"route": "chat/completions", "outcome": "unstrippable"}
    _wait(  # a stream is counted as it ends, just after its last byte went out
        lambda: _count(service, "sentinel_proxy_requests_total", **labels) == 2,
        "both withheld answers to be counted",
    )
    # a client that asked for logprobs gets the upstream's bytes as they are
    r = httpx.post(
        service.url + "/v1/chat/completions",
        json={"messages": CHAT, "logprobs": True, "top_logprobs": 20},
        headers=nan,
        timeout=30,
    )
    assert r.status_code == 200 and b"NaN" in r.content


def test_answer_size_deadline_and_stream_limits(
    upstream: tuple[ReplayUpstream, ThreadedServer], smollm2_model: Path, tmp_path: Path
) -> None:
    limits = {
        "proxy_max_answer_bytes": 4000,
        "proxy_answer_deadline": 1.0,
        "proxy_stream_idle_timeout": 0.5,
        "proxy_stream_max_seconds": 1.5,
    }
    with _serve(tmp_path, smollm2_model, upstream[1].url + "/v1", **limits) as srv:
        url = srv.url + "/v1/chat/completions"
        # a body over the cap (the recorded answers are 13-90 KB with logprobs)
        r = httpx.post(url, json={"messages": CHAT}, timeout=30)
        assert r.status_code == 502 and r.json()["error"]["code"] == "answer_too_large"
        assert "proxy_max_answer_bytes = 4000" in r.json()["error"]["message"]
    limits["proxy_max_answer_bytes"] = 1 << 20
    with _serve(tmp_path, smollm2_model, upstream[1].url + "/v1", **limits) as srv:
        url = srv.url + "/v1/chat/completions"
        # an answer dripping in, each piece well within upstream_timeout: the deadline ends it
        started = time.monotonic()
        r = httpx.post(url, json={"messages": CHAT}, headers={"X-Replay-Drip": "0.2"}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_deadline"
        assert time.monotonic() - started < 5

        def streamed(headers: dict[str, str]) -> bytes:
            body = {"messages": CHAT, "stream": True}
            with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as s:
                assert s.status_code == 200
                return b"".join(s.iter_raw())

        quiet = streamed({"X-Replay-Event-Delay": "1.0"})
        assert b'"code":"stream_idle_timeout"' in quiet and b"[DONE]" not in quiet
        slow = streamed({"X-Replay-Event-Delay": "0.3"})
        assert b'"code":"stream_deadline"' in slow and b"[DONE]" not in slow
        labels = {"route": "chat/completions", "outcome": "timeout"}
        _wait(
            lambda: _count(srv, "sentinel_proxy_requests_total", **labels) == 3,
            "three timeouts to be counted",
        )
        assert _count(srv, "sentinel_proxy_traces_total", outcome="stored") == 0


def test_back_pressure_waits_for_the_recorder_and_a_dead_recorder_is_counted(
    service: ThreadedServer,
) -> None:
    proxy = service.app.state.proxy
    recorder = proxy.recorder
    # the queue is full: a request waits before it is forwarded, until there is room
    recorder.capacity = 0
    sent = 1

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(service.url + "/v1/chat/completions", json={"messages": CHAT})

    async def held_then_released() -> tuple[bool, httpx.Response]:
        task = asyncio.ensure_future(one())
        await asyncio.sleep(0.5)
        held = not task.done()
        recorder.capacity = 2000
        return held, await task

    before = _count(service, "sentinel_proxy_traces_total", outcome="stored")
    recorder._in_flight += sent  # as if an answer were being recorded
    try:
        held, r = asyncio.run(held_then_released())
    finally:
        recorder._in_flight -= sent
    assert held and r.status_code == 200
    _wait(
        lambda: _count(service, "sentinel_proxy_traces_total", outcome="stored") == before + 1,
        "the held answer to be recorded",
    )
    # the recorder dies: answers are still relayed, the lost ones counted; it comes back
    dropped = _count(service, "sentinel_proxy_traces_total", outcome="dropped")
    assert recorder._proc is not None
    recorder._proc.kill()
    _wait(lambda: not recorder.alive, "the recorder to be seen down")
    recorder._started_at = time.monotonic()  # as if it had just been restarted, and died
    r = httpx.post(service.url + "/v1/chat/completions", json={"messages": CHAT}, timeout=30)
    assert r.status_code == 200
    assert _count(service, "sentinel_proxy_traces_total", outcome="dropped") == dropped + 1
    recorder._started_at -= 60  # allow the restart now rather than in 5 s
    r = httpx.post(service.url + "/v1/chat/completions", json={"messages": CHAT}, timeout=30)
    _wait_stored(service, r.json()["id"])


# ------------------------------------------------------------ keys and load
def test_with_keys_the_proxy_needs_an_ingest_key_in_x_sentinel_key(
    upstream: tuple[ReplayUpstream, ThreadedServer], smollm2_model: Path, tmp_path: Path
) -> None:
    ingest, read = "ingest-key-0123456789abcdef", "read-key-0123456789abcdefgh"
    keys = (
        ApiKey.from_secret("collector", ingest, {"ingest"}),
        ApiKey.from_secret("viewer", read, {"read"}),
    )
    with _serve(tmp_path, smollm2_model, upstream[1].url + "/v1", api_keys=keys) as srv:
        url = srv.url + "/v1/chat/completions"
        body = {"messages": CHAT}
        r = httpx.post(url, json=body, headers={"Authorization": f"Bearer {ingest}"})
        assert r.status_code == 401 and "X-Sentinel-Key" in r.json()["error"]["message"]
        r = httpx.post(url, json=body, headers={"X-Sentinel-Key": read})
        assert r.status_code == 403
        r = httpx.post(
            url,
            json=body,
            headers={"X-Sentinel-Key": ingest, "Authorization": f"Bearer {SECRET}"},
        )
        assert r.status_code == 200
        seen = upstream[0].requests[-1][0]
        assert seen["authorization"] == f"Bearer {SECRET}" and "x-sentinel-key" not in seen


def test_concurrent_requests_are_all_answered_and_recorded(service: ThreadedServer) -> None:
    n = 40
    before = _count(service, "sentinel_proxy_traces_total", outcome="stored")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v1/chat/completions",
                        json={"messages": CHAT, "stream": i % 2 == 0},
                        headers={"X-Sentinel-Slice": f"domain=d{i % 4}"},
                    )
                    for i in range(n)
                )
            )

    answers = asyncio.run(burst())
    assert all(r.status_code == 200 for r in answers)
    _wait(
        lambda: _count(service, "sentinel_proxy_traces_total", outcome="stored") == before + n,
        "every answer to be recorded",
    )
    body = httpx.get(service.url + "/v1/estimates", params={"by": "domain"}).json()
    counts = {r["slice"]["domain"]: r["n"] for r in body["records"]}
    assert all(counts[f"d{i}"] == n // 4 for i in range(4))
