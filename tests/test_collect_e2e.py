"""The collector end to end against the real SmolLM2 llama.cpp server (no mocks)."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from entropy_sentinel.collect import (
    Collector,
    GenerationParams,
    Item,
    LLMJudge,
    RetryPolicy,
    collect,
    generate,
    grade_item,
    read_done_ids,
)
from entropy_sentinel.collect.collector import failed_path
from entropy_sentinel.traces.corpus import read_corpus

pytestmark = pytest.mark.model

MAX_TOKENS = 24


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return generate("synth_add_1d", 3, seed=5) + generate("synth_mul_2d", 1, seed=5)


@pytest.fixture(scope="module")
def collected(
    model_server: Any, items: list[Item], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("collect") / "traces.jsonl"
    summary = collect(
        items,
        out,
        base_url=model_server.base_url,
        model=model_server.alias,
        max_tokens=MAX_TOKENS,
        concurrency=2,
        progress=False,
    )
    assert summary.written == len(items) and summary.failed == 0 and summary.skipped == 0
    assert summary.graded == len(items)
    assert summary.completion_tokens > 0 and summary.tokens_per_second > 0
    return out


def test_records_are_canonical_traces(
    collected: Path, items: list[Item], model_server: Any
) -> None:
    batch = es.read_traces(collected)
    assert set(batch.ids) == {item.id for item in items}
    assert batch.k >= 20  # top_logprobs=20 (llama.cpp may add the sampled token)
    assert not batch.rejected and batch.has_label.all()
    records = [json.loads(line) for line in collected.read_text().splitlines()]
    gold = {item.id: item for item in items}
    for record in records:
        meta = record["meta"]
        item = gold[record["id"]]
        assert record["slice"] == {"domain": item.benchmark, "benchmark": item.benchmark}
        assert meta["request"] == {
            "model": model_server.alias,
            "temperature": 0.5,
            "max_tokens": MAX_TOKENS,
            "logprobs": True,
            "top_logprobs": 20,
            "seed": GenerationParams().request_seed(item.id),
        }
        assert meta["model"] == model_server.alias
        assert meta["benchmark"] == item.benchmark and meta["item_id"] == item.id
        assert meta["answer_type"] == "number" and meta["prompt_template"] == "number-v1"
        assert meta["gold"]["answer"] == item.answer
        assert meta["grader"] == meta["grade"]["grader"] == "number-v2"
        assert meta["grade"]["correct"] is record["correct"]
        assert meta["finish_reason"] in ("stop", "length")
        assert 1 <= meta["timing"]["completion_tokens"] <= MAX_TOKENS
        assert len(record["logprobs"]["content"]) == meta["timing"]["completion_tokens"]
        assert meta["question"] == item.question  # synthetic questions are ours to store
        # the label is the deterministic grader's verdict on the stored response
        assert record["correct"] is grade_item(meta["response_text"], item).correct


def test_resume_skips_written_ids_and_repairs_a_cut_line(
    collected: Path, items: list[Item], model_server: Any, tmp_path: Path
) -> None:
    out = tmp_path / "resume.jsonl"
    lines = collected.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0] + lines[1][: len(lines[1]) // 2])  # a crash mid-write
    done, cut = read_done_ids(out, repair=False)
    assert len(done) == 1 and cut == len(lines[1]) // 2
    summary = collect(
        items,
        out,
        base_url=model_server.base_url,
        model=model_server.alias,
        max_tokens=MAX_TOKENS,
        progress=False,
    )
    assert summary.skipped == 1 and summary.written == len(items) - 1
    assert summary.repaired_bytes == len(lines[1]) // 2
    assert sorted(es.read_traces(out).ids) == sorted(item.id for item in items)
    # same seeds: the resumed run asked for exactly the samples of the first one
    first = {json.loads(x)["id"]: json.loads(x)["meta"]["response_text"] for x in lines}
    again = {
        json.loads(x)["id"]: json.loads(x)["meta"]["response_text"]
        for x in out.read_bytes().splitlines()
    }
    assert again == first
    summary = collect(
        items, out, base_url=model_server.base_url, model=model_server.alias, progress=False
    )
    assert summary.skipped == len(items) and summary.written == 0


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first ``fail`` requests, then forwards to the real server."""

    upstream = ""
    fail = 0
    seen = 0
    replies: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen += 1
        if type(self).seen <= type(self).fail:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(b"busy")
            return
        if type(self).replies:
            reply = type(self).replies.pop(0)
            payload = {"choices": [{"message": {"content": reply}, "finish_reason": "stop"}]}
            data = json.dumps(payload).encode()
        else:
            request = urllib.request.Request(
                self.upstream + self.path.removeprefix("/v1"),
                data=body,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=120) as resp:
                data = resp.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def flaky(model_server: Any) -> Iterator[type[_Flaky]]:
    handler = type(
        "Flaky", (_Flaky,), {"upstream": model_server.base_url, "seen": 0, "replies": []}
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/v1"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


def test_retries_transient_failures(flaky: Any, tmp_path: Path) -> None:
    flaky.fail = 2
    collector = Collector(
        flaky.url,
        "smollm2",
        params=GenerationParams(max_tokens=8),
        retry=RetryPolicy(max_retries=2, backoff=0.01),
    )
    out = tmp_path / "t.jsonl"
    import asyncio

    summary = asyncio.run(collector.run(generate("synth_add_1d", 1), out))
    assert summary.written == 1
    (record,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert record["meta"]["attempts"] == 3 and flaky.seen == 3


def test_failures_are_listed_not_dropped(flaky: Any, tmp_path: Path) -> None:
    flaky.fail = 100
    collector = Collector(
        flaky.url, "smollm2", params=GenerationParams(max_tokens=8), retry=RetryPolicy(1, 0.01)
    )
    out = tmp_path / "t.jsonl"
    import asyncio

    summary = asyncio.run(collector.run(generate("synth_add_1d", 2), out))
    assert summary.failed == 2 and summary.written == 0
    failures = [json.loads(x) for x in failed_path(out).read_text().splitlines()]
    assert {f["id"] for f in failures} == {"synth_add_1d-0", "synth_add_1d-1"}
    assert all("HTTP 503" in f["error"] for f in failures)
    flaky.fail = 0  # the server recovers: the next run retries exactly the failed items
    summary = asyncio.run(collector.run(generate("synth_add_1d", 2), out))
    assert summary.written == 2 and summary.failed == 0
    assert not failed_path(out).exists()


def test_judge_asks_again_without_a_verdict_and_retries(flaky: Any) -> None:
    import asyncio

    import httpx

    flaky.fail = 1
    flaky.replies = ["I think so", "INCORRECT"]
    judge = LLMJudge(flaky.url, "judge", retry=RetryPolicy(2, 0.01))

    async def run() -> Any:
        async with httpx.AsyncClient() as client:
            return await judge.grade(client, "What is 2 + 2?", "It is 5.", "4")

    grade = asyncio.run(run())
    assert grade.correct is False and grade.grader == "judge:judge"
    assert flaky.seen == 3


def test_judge_against_the_real_model(model_server: Any) -> None:
    """SmolLM2 is a poor judge, but the exchange is real: a verdict or an honest None."""
    import asyncio

    import httpx

    judge = LLMJudge(model_server.base_url, model_server.alias, max_verdict_attempts=2)

    async def run() -> Any:
        async with httpx.AsyncClient(timeout=120) as client:
            return await judge.grade(client, "What is 2 + 2?", "The answer is 4.", "4")

    grade = asyncio.run(run())
    assert grade.grader == f"judge:{model_server.alias}"
    assert grade.detail.startswith("judge said" if grade.correct is not None else "no verdict")


def test_cli_collect_grade_pack(collected: Path, model_server: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli.jsonl"
    result = runner.invoke(
        app,
        [
            "collect", "-b", "synth_add_1d,synth_sub_2d", "--limit", "1", "-o", str(out),
            "--base-url", model_server.base_url, "--model", model_server.alias,
            "--max-tokens", "16", "--quiet",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 2 records" in result.output
    assert len(es.read_traces(out)) == 2
    regraded = tmp_path / "regraded.jsonl"
    result = runner.invoke(app, ["grade", str(collected), "-o", str(regraded)])
    assert result.exit_code == 0, result.output
    before = es.read_traces(collected)
    after = es.read_traces(regraded)
    assert after.ids == before.ids and (after.labels == before.labels).all()
    assert "0 changed" in result.output
    records = [msgspec.json.decode(x) for x in regraded.read_bytes().splitlines()]
    assert all(len(r["meta"]["previous_grades"]) == 1 for r in records)
    corpus = tmp_path / "corpus.parquet"
    result = runner.invoke(app, ["pack", str(collected), "-o", str(corpus), "--meta", "run=test"])
    assert result.exit_code == 0, result.output
    packed = read_corpus(corpus)
    assert packed.ids == before.ids and (packed.labels == before.labels).all()


def test_ungradeable_responses_are_kept_unlabelled(model_server: Any, tmp_path: Path) -> None:
    """A grader that cannot decide (judge down, gold unparseable) keeps the response."""
    import asyncio

    from entropy_sentinel.collect.model_server import free_port

    ungradeable = Item(id="odd-0", benchmark="odd", question="What is 1 + 1?", answer="\\",
                       answer_type="expression")  # fmt: skip
    judge = LLMJudge(f"http://127.0.0.1:{free_port()}/v1", "gone", retry=RetryPolicy(0))
    out = tmp_path / "t.jsonl"
    params = GenerationParams(max_tokens=8)
    plain = Collector(model_server.base_url, model_server.alias, params=params)
    judged_by = Collector(model_server.base_url, model_server.alias, params=params, judge=judge)
    for collector, item in [(plain, ungradeable), (judged_by, generate("synth_add_1d", 1)[0])]:
        summary = asyncio.run(collector.run([item], out))
        assert summary.written == 1 and summary.graded == 0
    odd, judged = (json.loads(line) for line in out.read_text().splitlines())
    assert "correct" not in odd and odd["meta"]["grade"]["detail"].startswith("cannot grade")
    assert "correct" not in judged and judged["meta"]["grader"] == "judge:gone"
    assert judged["meta"]["grade"]["detail"].startswith("judge failed")
    assert np.isnan(es.read_traces(out).labels).all()
