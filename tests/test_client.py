"""The SDK (`entropy_sentinel.client`) against a real service and an upstream that replays
real recorded SmolLM2 answers, over real HTTP: records of every accepted kind stored
under their slices, answers through `wrap_openai` equal to unwrapped ones (streams and
async too), a model that refuses logprobs, a service that goes away, and the sender's
retry policy. The real llama.cpp model: tests/test_client_model.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy as sa
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from entropy_sentinel.client import AsyncSentinel, Sentinel, wrap_openai
from entropy_sentinel.client.delivery import Delivery, Outbox, Pending
from entropy_sentinel.client.sentinel import SentinelBase
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.replay_upstream import ReplayUpstream, load_recorded
from entropy_sentinel.testing.service import ThreadedServer, free_port
from entropy_sentinel.traces import decode_record
from tests.conftest import SMOLLM2_FIXTURES
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is 17 + 25?"}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ReplayUpstream, ThreadedServer]]:
    app = ReplayUpstream.from_directory(SMOLLM2_FIXTURES)
    with ThreadedServer(app) as srv:
        yield app, srv


@pytest.fixture
def service(smollm2_model: Path, tmp_path: Path) -> Iterator[ThreadedServer]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model_path=smollm2_model,
        evaluate_every=3600.0,
    )
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


def _stored(service: ThreadedServer) -> dict[str, Any]:
    """trace id -> row of every stored trace."""
    state: ServiceState = service.app.state.service
    with state.db.read.connect() as conn:
        return {r.trace_id: r for r in conn.execute(sa.select(traces)).all()}


def _replayed(app: ReplayUpstream, kind: str) -> Any:
    """What the replay upstream answers next to a request without logprobs, as SDK
    objects: the recorded answer of its next turn with ``"logprobs": null``."""
    recorded = load_recorded(SMOLLM2_FIXTURES)[kind]
    answer = recorded[app._turn % len(recorded)]

    def plain(obj: dict[str, Any]) -> dict[str, Any]:
        return dict(obj, choices=[dict(c, logprobs=None) for c in obj["choices"]])

    if kind == "chat_stream":
        return [ChatCompletionChunk.model_validate(plain(c)) for c in answer]
    if kind == "completions":
        return Completion.model_validate(plain(answer))
    return ChatCompletion.model_validate(plain(answer))


def _without_ids(obj: Any) -> Any:
    """A response (or chunks) as plain data, less the per-request id and time."""
    if isinstance(obj, list):
        return [_without_ids(x) for x in obj]
    out = obj.model_dump()
    out.pop("id"), out.pop("created")
    return out


def test_record_takes_sdk_objects_dicts_chunk_lists_and_bytes(service: ThreadedServer) -> None:
    recorded = load_recorded(SMOLLM2_FIXTURES)
    chat = recorded["chat"][0]
    chunks = recorded["chat_stream"][0]
    legacy = recorded["completions"][0]
    with Sentinel(service.url) as sentinel:
        ids = [
            sentinel.record(ChatCompletion.model_validate(chat), slice={"domain": "math"}),
            sentinel.record(chat, slice={"domain": "math"}, correct=True, model="smol"),
            sentinel.record(
                [ChatCompletionChunk.model_validate(c) for c in chunks], slice={"domain": "qa"}
            ),
            sentinel.record(chunks, slice={"domain": "qa"}, prompt="Hi", answer="Hello"),
            sentinel.record(json.dumps(legacy).encode(), slice={"domain": "code"}, k=20),
        ]
        assert sentinel.flush(30)
        stats = sentinel.stats
    assert all(isinstance(i, str) for i in ids)
    assert (stats.recorded, stats.stored, stats.lost, stats.rejected) == (5, 5, 0, 0)
    rows = _stored(service)
    assert set(rows) == set(ids)
    by_id = {i: rows[i] for i in ids if i is not None}
    slices = [json.loads(by_id[i].slice)["domain"] for i in by_id]
    assert slices == ["math", "math", "qa", "qa", "code"]
    metas = [json.loads(by_id[i].meta) for i in by_id]
    assert metas[0]["response_id"] == chat["id"]  # the upstream's id, kept in meta
    assert metas[2]["response_id"] == chunks[0]["id"]
    assert by_id[ids[1]].label == 1.0  # type: ignore[index]
    assert all(0.0 <= r.p <= 1.0 for r in by_id.values())


def test_a_bad_record_is_counted_never_raised(service: ThreadedServer) -> None:
    with Sentinel(service.url) as sentinel:
        assert sentinel.record(object()) is not None  # queued; encoding it fails later
        assert sentinel.record({"id": "x", "choices": []}, slice="domain=x") is None  # type: ignore[arg-type]
        assert sentinel.record({"no": "logprobs"}) is not None  # the service rejects it
        assert sentinel.flush(30)
        stats = sentinel.stats
    assert (stats.invalid, stats.rejected, stats.stored) == (2, 1, 0)


def test_wrapped_answers_equal_unwrapped_and_every_call_is_recorded(
    upstream: tuple[ReplayUpstream, ThreadedServer], service: ThreadedServer
) -> None:
    base = upstream[1].url + "/v1"
    direct = openai.OpenAI(base_url=base, api_key="k", max_retries=0)
    with Sentinel(service.url) as sentinel:
        client = wrap_openai(
            direct, sentinel, slice=lambda body: {"customer": str(body.get("user", "none"))}
        )
        expected = _replayed(upstream[0], "chat")
        got = client.chat.completions.create(model="smol", messages=CHAT, max_tokens=8, user="a")
        assert _without_ids(got) == _without_ids(expected)
        assert got.choices[0].logprobs is None  # asked for by the wrapper, stripped again
        # the request went out with top-20 logprobs
        sent = json.loads(upstream[0].requests[-1][1])
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 20)

        expected = _replayed(upstream[0], "chat")
        raw = client.chat.completions.with_raw_response.create(
            model="smol", messages=CHAT, max_tokens=8, user="b"
        )
        assert b'"logprobs":null' in raw.content
        assert _without_ids(raw.parse()) == _without_ids(expected)

        expected = _replayed(upstream[0], "chat_stream")
        streamed = list(
            client.chat.completions.create(
                model="smol", messages=CHAT, max_tokens=8, stream=True, user="c"
            )
        )
        assert _without_ids(streamed) == _without_ids(expected)

        own = client.chat.completions.create(
            model="smol", messages=CHAT, max_tokens=8, logprobs=True, top_logprobs=20, user="d"
        )
        assert own.choices[0].logprobs is not None  # asked by the application: kept

        expected = _replayed(upstream[0], "completions")
        legacy = client.completions.create(model="smol", prompt="2+2=", max_tokens=8, user="e")
        assert _without_ids(legacy) == _without_ids(expected)
        assert json.loads(upstream[0].requests[-1][1])["logprobs"] == 5  # OpenAI's cap

        client.models  # noqa: B018  (other routes pass through untouched)
        assert sentinel.flush(30)
        stats = sentinel.stats
    direct.close()
    # the legacy trace has top-5 logprobs (OpenAI's cap), which this top-20 estimator
    # refuses (the service says why; the sender logs it)
    assert (stats.stored, stats.rejected, stats.lost) == (4, 1, 0)
    rows = list(_stored(service).values())
    assert sorted(json.loads(r.slice)["customer"] for r in rows) == ["a", "b", "c", "d"]
    metas = {json.loads(r.slice)["customer"]: json.loads(r.meta) for r in rows}
    assert metas["a"]["response_id"] == got.id
    assert metas["a"]["gen_ai"]["gen_ai.request.model"] == "smol"
    assert metas["a"]["gen_ai"]["gen_ai.usage.output_tokens"] == got.usage.completion_tokens  # type: ignore[union-attr]
    sdk = metas["c"]["sdk"]
    assert (sdk["route"], sdk["stream"], sdk["client_logprobs"]) == ("chat", True, False)
    assert sdk["seconds"] >= 0
    assert metas["d"]["sdk"]["client_logprobs"] is True


def test_a_model_that_refuses_logprobs_gets_the_call_as_made(
    upstream: tuple[ReplayUpstream, ThreadedServer], service: ThreadedServer
) -> None:
    app, srv = upstream
    refuse = {"X-Replay-Refuse-Logprobs": "1"}
    direct = openai.OpenAI(base_url=srv.url + "/v1", api_key="k", max_retries=0)
    with Sentinel(service.url) as sentinel:
        client = wrap_openai(direct, sentinel)
        before = len(app.requests)
        got = client.chat.completions.create(
            model="o-reasoning", messages=CHAT, max_tokens=8, extra_headers=refuse
        )
        assert got.choices[0].message.content
        assert len(app.requests) - before == 2  # refused, then sent as made
        assert "logprobs" not in json.loads(app.requests[-1][1])
        client.chat.completions.create(
            model="o-reasoning", messages=CHAT, max_tokens=8, extra_headers=refuse
        )
        assert len(app.requests) - before == 3  # remembered: sent as made at once
        # an application that asked itself gets the refusal, as without the wrapper
        with pytest.raises(openai.BadRequestError, match="logprobs"):
            client.chat.completions.create(
                model="o-reasoning", messages=CHAT, logprobs=True, extra_headers=refuse
            )
        assert sentinel.flush(30)
        assert sentinel.stats.recorded == 0
    direct.close()


def test_async_client_and_sender(
    upstream: tuple[ReplayUpstream, ThreadedServer], service: ThreadedServer
) -> None:
    base = upstream[1].url + "/v1"

    app = upstream[0]

    async def main() -> tuple[list[Any], list[Any], int]:
        direct = openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0)
        async with AsyncSentinel(service.url) as sentinel:
            client = wrap_openai(direct, sentinel, slice={"domain": "async"})
            expected: list[Any] = [_replayed(app, "chat")]
            a = await client.chat.completions.create(model="smol", messages=CHAT, max_tokens=8)
            expected.append(_replayed(app, "chat_stream"))
            stream = await client.chat.completions.create(
                model="smol", messages=CHAT, max_tokens=8, stream=True
            )
            chunks = [c async for c in stream]
            assert await sentinel.flush(30)
            stored = sentinel.stats.stored
        await direct.close()
        return [a, chunks], expected, stored

    wrapped, expected, stored = asyncio.run(main())
    assert _without_ids(wrapped) == _without_ids(expected)
    assert stored == 2
    assert [json.loads(r.slice) for r in _stored(service).values()] == [{"domain": "async"}] * 2


def test_a_service_that_is_down_costs_the_application_nothing(
    upstream: tuple[ReplayUpstream, ThreadedServer],
) -> None:
    """Nothing listens at the service's address: answers arrive, nothing raises, the
    losses are counted (failed after the retry time; dropped once the queue is full)."""
    direct = openai.OpenAI(base_url=upstream[1].url + "/v1", api_key="k", max_retries=0)
    url = f"http://127.0.0.1:{free_port()}"
    sentinel = Sentinel(url, max_queue=2, max_retry_time=1.0, linger=0.0)
    client = wrap_openai(direct, sentinel)
    answers = [
        client.chat.completions.create(model="smol", messages=CHAT, max_tokens=8) for _ in range(6)
    ]
    assert all(a.choices[0].message.content for a in answers)
    sentinel.close(timeout=10)
    stats = sentinel.stats
    assert stats.stored == 0
    assert stats.recorded + stats.dropped == 6
    assert stats.failed + stats.dropped == 6  # every record accounted for as lost
    assert stats.retries >= 1
    direct.close()


def test_records_sent_while_the_service_restarts_arrive(
    smollm2_model: Path, tmp_path: Path
) -> None:
    """Retries carry records over a restart of the service (same port)."""
    port = free_port()
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model_path=smollm2_model,
        evaluate_every=3600.0,
    )
    chat = load_recorded(SMOLLM2_FIXTURES)["chat"]
    with Sentinel(f"http://127.0.0.1:{port}", max_retry_time=60.0, linger=0.0) as sentinel:
        ids = [sentinel.record(chat[i], slice={"n": str(i)}) for i in range(3)]
        time.sleep(1.0)  # the first attempts fail: nothing listens yet
        with ThreadedServer(create_app(settings), port=port) as srv:
            assert sentinel.flush(60)
            assert set(_stored(srv)) == set(ids)
        stats = sentinel.stats
    assert (stats.stored, stats.lost) == (3, 0) and stats.retries >= 1


def test_retry_policy_honours_retry_after_and_gives_up_in_time() -> None:
    box = Outbox(10)
    batch = [Pending("a", b"{}"), Pending("b", b"{}")]
    d = Delivery(max_retry_time=10.0)
    now = time.monotonic()
    v = d.settle(box, batch, status=503, retry_after="3", attempt=0, started=now)
    assert (v.retry, v.delay) == (True, 3.0)
    v = d.settle(box, batch, status=None, error="ConnectError", attempt=2, started=now)
    assert (v.retry, v.delay) == (True, 2.0)
    v = d.settle(box, batch, status=429, retry_after="30", attempt=0, started=now)
    assert not v.retry and box.stats.failed == 2  # 30 s is past max_retry_time
    v = d.settle(box, batch, status=413, attempt=0, started=now)
    assert v.split
    v = d.settle(box, batch, status=401, body=b"invalid API key", attempt=0, started=now)
    assert not v.retry and box.stats.failed == 4
    body = b'{"traces": [{"index": 0, "id": "a", "status": "stored", "p_correct": 0.7}],'
    body += b' "rejections": [{"index": 1, "id": "b", "field": "$", "reason": "no logprobs"}]}'
    v = d.settle(box, batch, status=200, body=body, attempt=0, started=now)
    assert dict(v.results) == {"a": 0.7} and (box.stats.stored, box.stats.rejected) == (1, 1)


def test_a_full_queue_drops_and_counts_without_blocking() -> None:
    with Sentinel(f"http://127.0.0.1:{free_port()}", max_queue=3, max_retry_time=0.0) as s:
        started = time.perf_counter()
        for _ in range(1000):
            s.record({"id": "x", "choices": []})
        took = time.perf_counter() - started
        s.flush(10)
    assert s.stats.recorded + s.stats.dropped == 1000
    assert s.stats.dropped >= 990
    assert took < 5.0  # never blocks on the network (a loose bound: 1000 queue operations)


def test_wrapping_something_else_is_a_clear_error() -> None:
    with Sentinel("http://127.0.0.1:9") as s, pytest.raises(TypeError, match=r"openai\.OpenAI"):
        wrap_openai(httpx.Client(), s)


def test_record_text_keeps_the_prompt_and_the_answer(
    upstream: tuple[ReplayUpstream, ThreadedServer],
) -> None:
    """The record follows the ingest contract: top-level model, k, prompt and answer."""
    queue_only = SentinelBase("http://127.0.0.1:9")  # records are queued, never sent
    direct = openai.OpenAI(base_url=upstream[1].url + "/v1", api_key="k", max_retries=0)
    client = wrap_openai(direct, queue_only, record_text=True, slice={"domain": "math"})
    got = client.chat.completions.create(model="smol", messages=CHAT, max_tokens=8)
    chunks = list(
        client.chat.completions.create(model="smol", messages=CHAT, max_tokens=8, stream=True)
    )
    direct.close()
    with queue_only.outbox.lock:
        pending = queue_only.outbox.take(10, 1 << 30)
    records = [json.loads(p.payload()) for p in pending]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert [r["answer"] for r in records] == [got.choices[0].message.content, streamed]
    for r in records:
        assert (r["prompt"], r["model"], r["k"], r["slice"]) == (
            CHAT,
            "smol",
            20,
            {"domain": "math"},
        )
    parsed = decode_record(pending[0].payload(), 0)[0]  # the trace library reads it so
    assert (parsed.answer, parsed.model, parsed.k) == (got.choices[0].message.content, "smol", 20)
    assert parsed.n_steps == got.usage.completion_tokens  # type: ignore[union-attr]
