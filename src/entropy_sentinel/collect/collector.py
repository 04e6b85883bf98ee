"""The collector: benchmark items -> model responses with logprobs -> graded trace records.

For each `Item` the collector renders its prompt template, sends
``POST {base_url}/chat/completions`` with ``logprobs=true, top_logprobs=k`` to any
OpenAI-compatible server, grades the answer and appends one canonical trace record
(docs/formats.md) to a JSON Lines file::

    {"id": item id, "slice": {"domain": ..., "benchmark": ...}, "model": the model asked,
     "k": top_logprobs asked,
     "logprobs": <the choice's logprobs object>, "correct": bool,
     "meta": {"model", "request", "benchmark", "item_id", "answer_type", "gold",
              "grade", "grader", "prompt_template", "response_text", "finish_reason",
              "usage", "timing", "attempts", ...}}

Properties:

* **async, bounded**: ``concurrency`` requests in flight at most (worker tasks over a queue,
  items taken in the given order);
* **retries** transient HTTP failures with exponential backoff and jitter (`RetryPolicy`);
* **resumable**: ids already in the output file are skipped; each record is appended and
  flushed as soon as it is graded, so an interrupted run loses at most the requests in
  flight. A partial last line (a crash mid-write) is cut off and reported;
* **nothing dropped silently**: an item that fails (retries used up, empty response, a
  record that `entropy_sentinel.read_traces` would reject) is appended with its reason to
  ``OUTPUT.failed.jsonl`` (the failures of the latest run) and counted; the next run
  tries it again.

>>> params = GenerationParams(max_tokens=64)
>>> params.request_seed("gsm8k-3") == params.request_seed("gsm8k-3")
True
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from entropy_sentinel.collect.benchmarks import Item
from entropy_sentinel.collect.graders import Grade, grade_item
from entropy_sentinel.collect.judge import LLMJudge
from entropy_sentinel.collect.prompts import template_for
from entropy_sentinel.collect.retry import RetryPolicy, post_json
from entropy_sentinel.errors import ConfigError, TraceError, UpstreamError
from entropy_sentinel.redact import redact_url
from entropy_sentinel.traces import decode_record

__all__ = [
    "CollectSummary",
    "Collector",
    "GenerationParams",
    "RecordInfo",
    "collect",
    "failed_path",
    "read_done_ids",
]


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters sent with every request (and recorded with every trace).

    Attributes:
        temperature: sampling temperature.
        top_logprobs: alternatives returned per token (OpenAI allows up to 20).
        max_tokens: generation limit; responses cut by it have ``finish_reason == "length"``.
        seed: base seed; request seeds are ``(seed + crc32(item id)) mod 2**31`` so a
            resumed or repeated run asks for exactly the same samples. None: no seed.
        top_p: nucleus sampling (None: the server's default).
    """

    temperature: float = 0.5
    top_logprobs: int = 20
    max_tokens: int = 320
    seed: int | None = 0
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"temperature={self.temperature}: use a value in [0, 2]")
        if not 1 <= self.top_logprobs <= 20:
            raise ConfigError(f"top_logprobs={self.top_logprobs}: use 1..20 (OpenAI's limit)")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens={self.max_tokens}: must be >= 1")

    def request_seed(self, item_id: str) -> int | None:
        """The seed of the request for ``item_id``."""
        if self.seed is None:
            return None
        return (self.seed + zlib.crc32(item_id.encode())) % 2**31

    def body(self, model: str, messages: list[dict[str, str]], item_id: str) -> dict[str, Any]:
        """The JSON body of the chat completion request for one item."""
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }
        seed = self.request_seed(item_id)
        if seed is not None:
            body["seed"] = seed
        if self.top_p is not None:
            body["top_p"] = self.top_p
        return body


@dataclass(frozen=True)
class RecordInfo:
    """What the progress display learns about each finished item."""

    id: str
    domain: str
    ok: bool
    correct: bool | None = None
    completion_tokens: int = 0
    truncated: bool = False
    error: str | None = None


@dataclass
class CollectSummary:
    """Counts of one collector run (all counts are items).

    Attributes:
        requested: items given to the run.
        skipped: already in the output file (resumed).
        written: new records appended.
        failed: items that produced no record (listed in ``OUTPUT.failed.jsonl``).
        correct / graded: labels among the written records (ungraded: judge gave no verdict).
        truncated: written responses cut by ``max_tokens`` (``finish_reason == "length"``).
        completion_tokens: generated tokens of the written records.
        seconds: wall time of the run.
        per_domain: domain -> {"written", "correct", "graded", "truncated"}.
        repaired_bytes: bytes of a partial last line cut off the output file at start.
    """

    requested: int = 0
    skipped: int = 0
    written: int = 0
    failed: int = 0
    correct: int = 0
    graded: int = 0
    truncated: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    per_domain: dict[str, dict[str, int]] = field(default_factory=dict)
    repaired_bytes: int = 0

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per wall-clock second over the run."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    def add(self, info: RecordInfo) -> None:
        if not info.ok:
            self.failed += 1
            return
        self.written += 1
        self.completion_tokens += info.completion_tokens
        dom = self.per_domain.setdefault(
            info.domain, {"written": 0, "correct": 0, "graded": 0, "truncated": 0}
        )
        dom["written"] += 1
        if info.correct is not None:
            self.graded += 1
            dom["graded"] += 1
            self.correct += int(info.correct)
            dom["correct"] += int(info.correct)
        if info.truncated:
            self.truncated += 1
            dom["truncated"] += 1


class _IdOnly(msgspec.Struct):
    id: str | None = None


def failed_path(output: Path) -> Path:
    """Where the items that produced no record are listed: ``OUTPUT.failed.jsonl``."""
    return output.with_name(output.name + ".failed.jsonl")


def read_done_ids(output: Path, *, repair: bool = True) -> tuple[set[str], int]:
    """Ids already written to ``output`` and the bytes of a partial last line cut off.

    A last line without its newline is what a crash mid-write leaves; with ``repair`` it
    is truncated away (its item is collected again). Any other unreadable line is an
    error naming the line: the file is not ours to rewrite.
    """
    if not output.exists():
        return set(), 0
    decoder = msgspec.json.Decoder(_IdOnly)
    done: set[str] = set()
    good_end = 0
    with output.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                break
            if line.strip():
                try:
                    rid = decoder.decode(line).id
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise ConfigError(
                        f"{output}:{lineno} is not a trace record ({exc}); "
                        "resume into a file written by the collector, or choose another output"
                    ) from None
                if rid is None:
                    raise ConfigError(f"{output}:{lineno}: trace record without an id")
                done.add(rid)
            good_end += len(line)
    cut = output.stat().st_size - good_end
    if cut and repair:
        with output.open("r+b") as fh:
            fh.truncate(good_end)
    return done, cut


class Collector:
    """Collects graded trace records from an OpenAI-compatible server (see the module doc).

    Args:
        base_url: the server's OpenAI-compatible base URL, ending in ``/v1``.
        model: model name sent in requests.
        params: sampling parameters.
        concurrency: requests in flight at most.
        retry: HTTP retry policy.
        timeout: seconds per HTTP request.
        api_key: sent as ``Authorization: Bearer`` (hidden from ``repr``).
        grade: grade inline with the deterministic graders (or ``judge``); False leaves
            records unlabelled (grade later with ``sentinel grade``).
        judge: an `LLMJudge` that replaces the deterministic graders.
        templates: answer type -> prompt template name (defaults: `DEFAULT_TEMPLATES`).
        fsync: ``os.fsync`` after each record (survives power loss, not just crashes).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        params: GenerationParams | None = None,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        timeout: float = 600.0,
        api_key: str | None = None,
        grade: bool = True,
        judge: LLMJudge | None = None,
        templates: Mapping[str, str] | None = None,
        fsync: bool = False,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url {redact_url(base_url)!r} must start with http:// or https://"
            )
        if concurrency < 1:
            raise ConfigError(f"concurrency={concurrency}: must be >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.params = params if params is not None else GenerationParams()
        self.concurrency = concurrency
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout = timeout
        self.api_key = api_key
        self.grade = grade
        self.judge = judge
        self.templates = templates
        self.fsync = fsync

    def __repr__(self) -> str:
        return (
            f"Collector(base_url={redact_url(self.base_url)!r}, model={self.model!r}, "
            f"params={self.params!r}, concurrency={self.concurrency})"
        )

    async def run(
        self,
        items: Sequence[Item],
        output: str | os.PathLike[str],
        *,
        on_start: Callable[[int, int], None] | None = None,
        on_record: Callable[[RecordInfo], None] | None = None,
    ) -> CollectSummary:
        """Collect every item of ``items`` not yet in ``output``; returns the counts.

        ``on_start(total, skipped)`` is called once before the first request,
        ``on_record(info)`` after each item (written or failed).
        """
        import httpx

        out = Path(output)
        ids = [item.id for item in items]
        if len(set(ids)) != len(ids):
            dupes = sorted(i for i, n in collections.Counter(ids).items() if n > 1)[:5]
            raise ConfigError(f"item ids repeat (e.g. {dupes}); ids must be unique per output")
        out.parent.mkdir(parents=True, exist_ok=True)
        done, cut = read_done_ids(out)
        todo = [item for item in items if item.id not in done]
        summary = CollectSummary(
            requested=len(items), skipped=len(items) - len(todo), repaired_bytes=cut
        )
        if on_start is not None:
            on_start(len(items), summary.skipped)
        queue: asyncio.Queue[Item] = asyncio.Queue()
        for item in todo:
            queue.put_nowait(item)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        started = time.perf_counter()
        limits = httpx.Limits(max_connections=self.concurrency + 1)
        # the failures file lists this run's failures: earlier ones are retried by this run
        with out.open("ab") as sink, failed_path(out).open("wb") as failures:

            def record_done(info: RecordInfo, line: bytes | None) -> None:
                target = sink if line is not None else failures
                if line is None:
                    line = msgspec.json.encode(
                        {"id": info.id, "domain": info.domain, "error": info.error}
                    )
                target.write(line + b"\n")
                target.flush()
                if self.fsync:
                    os.fsync(target.fileno())
                summary.add(info)
                if on_record is not None:
                    on_record(info)

            async with httpx.AsyncClient(
                timeout=self.timeout, headers=headers, limits=limits
            ) as client:

                async def worker() -> None:
                    while True:
                        try:
                            item = queue.get_nowait()
                        except asyncio.QueueEmpty:
                            return
                        info, line = await self._one(client, item)
                        record_done(info, line)

                await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(todo)))))
        summary.seconds = time.perf_counter() - started
        if not failed_path(out).stat().st_size:
            failed_path(out).unlink()
        return summary

    async def _one(self, client: Any, item: Item) -> tuple[RecordInfo, bytes | None]:
        """Request, grade and encode one item; failures come back as a `RecordInfo`."""
        domain = item.benchmark
        try:
            record = await self.record(client, item)
            line = msgspec.json.encode(record)
            decode_record(line, 0)  # exactly what read_traces will do with it
        except (UpstreamError, TraceError) as exc:
            return RecordInfo(item.id, domain, ok=False, error=str(exc)), None
        meta = record["meta"]
        return (
            RecordInfo(
                item.id,
                domain,
                ok=True,
                correct=record.get("correct"),
                completion_tokens=int(meta["timing"]["completion_tokens"]),
                truncated=meta["finish_reason"] == "length",
            ),
            line,
        )

    async def record(self, client: Any, item: Item) -> dict[str, Any]:
        """The canonical trace record of ``item`` (one request, graded unless disabled)."""
        template = template_for(item, self.templates)
        body = self.params.body(self.model, template.render(item), item.id)
        started_at = dt.datetime.now(dt.UTC)
        t0 = time.perf_counter()
        response, attempts = await post_json(
            client, f"{self.base_url}/chat/completions", body, self.retry
        )
        latency = time.perf_counter() - t0
        choice = _first_choice(response, item.id)
        logprobs = choice.get("logprobs")
        content = (logprobs or {}).get("content") if isinstance(logprobs, dict) else None
        if not content:
            raise UpstreamError(
                f"item {item.id!r}: the answer carries no token logprobs "
                f"(finish_reason={choice.get('finish_reason')!r}); the server must support "
                "logprobs=true with top_logprobs, and the response must not be empty"
            )
        text = str((choice.get("message") or {}).get("content") or "")
        usage = response.get("usage") or {}
        n_tokens = int(usage.get("completion_tokens") or len(content))
        grade = await self._grade(client, item, text) if self.grade else None
        request = {k: v for k, v in body.items() if k != "messages"}
        meta: dict[str, Any] = {
            "model": response.get("model") or self.model,
            "request": request,
            "base_url": redact_url(self.base_url),
            "benchmark": item.benchmark,
            "item_id": item.id,
            "answer_type": item.answer_type,
            "gold": {"benchmark": item.benchmark, "id": item.id, "answer": item.answer},
            "grade": None if grade is None else _grade_dict(grade),
            "grader": None if grade is None else grade.grader,
            "prompt_template": template.name,
            "response_text": text,
            "finish_reason": choice.get("finish_reason"),
            "usage": usage,
            "timing": {
                "started_at": started_at.isoformat(timespec="milliseconds"),
                "latency_s": round(latency, 4),
                "completion_tokens": n_tokens,
                "tokens_per_s": round(n_tokens / latency, 3) if latency > 0 else None,
            },
            "attempts": attempts,
        }
        if item.meta.get("synthetic"):
            meta["question"] = item.question  # ours to store; shared benchmarks go by id
        record: dict[str, Any] = {
            "id": item.id,
            "slice": {"domain": item.benchmark, "benchmark": item.benchmark},
            "model": self.model,
            "k": self.params.top_logprobs,
            "logprobs": logprobs,
            "meta": meta,
        }
        if grade is not None and grade.correct is not None:
            record["correct"] = grade.correct
        return record

    async def _grade(self, client: Any, item: Item, text: str) -> Grade:
        """The grade of one response; a grader that cannot decide leaves it unlabelled.

        The response is kept either way (``correct`` absent, the reason in
        ``meta.grade.detail``): regrade it later with ``sentinel grade``.
        """
        if self.judge is not None:
            try:
                return await self.judge.grade(client, item.question, text, item.answer)
            except UpstreamError as exc:
                return Grade(None, self.judge.grader, None, f"judge failed: {exc}")
        try:
            return grade_item(text, item)
        except ConfigError as exc:  # e.g. a gold answer math-verify cannot parse
            return Grade(None, "none", None, f"cannot grade: {exc}")


def _first_choice(response: Mapping[str, Any], item_id: str) -> Mapping[str, Any]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamError(
            f"item {item_id!r}: not a chat completion (no choices): {str(response)[:200]}"
        )
    return choices[0]


def _grade_dict(grade: Grade) -> dict[str, Any]:
    return {
        "correct": grade.correct,
        "grader": grade.grader,
        "extracted": grade.extracted,
        "detail": grade.detail,
    }


def collect(
    items: Sequence[Item],
    output: str | os.PathLike[str],
    *,
    base_url: str,
    model: str,
    temperature: float = 0.5,
    top_logprobs: int = 20,
    max_tokens: int = 320,
    seed: int | None = 0,
    concurrency: int = 4,
    api_key: str | None = None,
    grade: bool = True,
    judge: LLMJudge | None = None,
    retry: RetryPolicy | None = None,
    timeout: float = 600.0,
    progress: bool = True,
) -> CollectSummary:
    """Collect labelled traces of ``items`` into ``output`` (blocking; see `Collector`).

    With ``progress`` a progress bar with throughput and running accuracy goes to
    stderr. Resumable: call it again with the same output to finish an interrupted run.

    Example (the demo's few lines)::

        from entropy_sentinel.collect import collect, load_benchmarks
        from entropy_sentinel.collect.model_server import LocalModelServer

        domains = "synth_add_1d,synth_mul_2d,svamp"
        labelled = load_benchmarks(domains, limit=20)            # 20 per domain
        traffic = load_benchmarks(domains, limit=20, offset=20)  # 20 other items each
        with LocalModelServer() as server:
            summary = collect(labelled, "labelled.jsonl", base_url=server.base_url,
                              model=server.alias, max_tokens=192)
            collect(traffic, "traffic.jsonl", base_url=server.base_url,
                    model=server.alias, max_tokens=192, grade=False)  # unlabelled
        print(summary.per_domain)
    """
    from entropy_sentinel.collect.progress import CollectProgress

    collector = Collector(
        base_url,
        model,
        params=GenerationParams(
            temperature=temperature, top_logprobs=top_logprobs, max_tokens=max_tokens, seed=seed
        ),
        concurrency=concurrency,
        retry=retry,
        timeout=timeout,
        api_key=api_key,
        grade=grade,
        judge=judge,
    )
    with CollectProgress(disable=not progress) as bar:
        return asyncio.run(collector.run(items, output, on_start=bar.start, on_record=bar.update))
