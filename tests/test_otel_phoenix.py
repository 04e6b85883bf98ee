"""OpenTelemetry export into a real receiver: Arize Phoenix (scripts/phoenix.sh runs it in
its own virtualenv, on SQLite; scripts/test.sh starts it and sets
``SENTINEL_TEST_PHOENIX_URL``). The service exports its ingested and proxied traces, the
SDK its own; the test reads the spans and their ``gen_ai.evaluation.result`` events back
through Phoenix's REST API, and checks them against the P(correct) the service gave."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from entropy_sentinel.client import Sentinel, wrap_openai
from entropy_sentinel.otel import EVALUATION_NAME, OTHER, EvaluationSpans
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.replay_upstream import ReplayUpstream, load_recorded
from entropy_sentinel.testing.service import ServiceProcess, ThreadedServer
from tests.conftest import SMOLLM2_FIXTURES
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]

PHOENIX_ENV = "SENTINEL_TEST_PHOENIX_URL"
PROJECT_KEY = "openinference.project.name"  # Phoenix files spans by this resource attribute


@pytest.fixture(scope="module")
def phoenix() -> str:
    url = os.environ.get(PHOENIX_ENV)
    if not url:
        pytest.skip(
            f"{PHOENIX_ENV} is not set: start Phoenix with "
            '`eval "$(bash scripts/phoenix.sh env)"` (scripts/test.sh does)'
        )
    return url.rstrip("/")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedServer]:
    with ThreadedServer(ReplayUpstream.from_directory(SMOLLM2_FIXTURES)) as srv:
        yield srv


def _spans(phoenix: str, project: str, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The spans of ``project``, read back from Phoenix once ``n`` have arrived."""
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = httpx.get(f"{phoenix}/v1/projects/{project}/spans", params={"limit": 1000})
        if r.status_code == 200:
            got = r.json()["data"]
            if len(got) >= n:
                return got
        time.sleep(0.5)
    raise AssertionError(f"Phoenix has {len(got)} spans of project {project}, expected {n}")


def _evaluation(span: dict[str, Any]) -> dict[str, Any]:
    events = [e for e in span.get("events", []) if e["name"] == "gen_ai.evaluation.result"]
    assert len(events) == 1, span
    attrs: dict[str, Any] = events[0]["attributes"]
    return attrs


def test_the_service_exports_ingested_and_proxied_traces_to_phoenix(
    phoenix: str, upstream: ThreadedServer, smollm2_model: Path, tmp_path: Path
) -> None:
    """``sentinel serve --otel-endpoint`` (a real service process), with the cap and the
    Phoenix annotations from its settings file."""
    project = f"sentinel-service-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sentinel.toml"
    config.write_text("otel_max_slice_values = 2\notel_phoenix_annotations = true\n")
    chat = load_recorded(SMOLLM2_FIXTURES)["chat"]
    records = [
        {"id": f"ingested-{i}", "slice": {"customer": f"c{i}"}, "model": "smol", "logprobs": r}
        for i, r in enumerate(chat[:3])
    ]
    with ServiceProcess(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model=smollm2_model,
        config=config,
        log_path=tmp_path / "service.log",
        env={"OTEL_RESOURCE_ATTRIBUTES": f"{PROJECT_KEY}={project}"},
        args=["--upstream", upstream.url + "/v1", "--otel-endpoint", phoenix + "/v1/traces"],
    ) as svc:
        answer = httpx.post(svc.url + "/v1/traces", json={"traces": records}, timeout=60).json()
        with openai.OpenAI(base_url=svc.url + "/v1", api_key="k", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="smol",
                messages=[{"role": "user", "content": "What is 2 + 2?"}],
                max_tokens=8,
                extra_headers={"X-Sentinel-Slice": "customer=c0"},
            )
            proxied = raw.parse()
            # stored under the proxy's own id (docs/proxy.md), the upstream's id kept
            proxied_id = raw.headers["X-Sentinel-Trace-Id"]
    # stopped: the service has written its queue and exported the spans still queued
    p_of = {t["id"]: t["p_correct"] for t in answer["traces"]}
    spans = {s["attributes"]["entropy_sentinel.trace_id"]: s for s in _spans(phoenix, project, 4)}
    assert set(spans) == {*p_of, proxied_id}
    for tid, p in p_of.items():
        span = spans[tid]
        assert span["name"] == "chat smol"
        assert span["attributes"]["gen_ai.request.model"] == "smol"
        assert span["attributes"]["entropy_sentinel.p_correct"] == pytest.approx(p)
        ev = _evaluation(span)
        assert ev["gen_ai.evaluation.name"] == EVALUATION_NAME
        assert ev["gen_ai.evaluation.score.value"] == pytest.approx(p)
        assert ev["entropy_sentinel.trace_id"] == tid
    # the cap of 2 values per dimension: the third customer is exported as _OTHER
    customers = sorted(spans[t]["attributes"]["entropy_sentinel.slice.customer"] for t in p_of)
    assert customers == sorted(["c0", "c1", OTHER])
    ev = _evaluation(spans[proxied_id])
    assert ev["gen_ai.response.id"] == proxied.id  # the upstream's id
    assert ev["entropy_sentinel.slice.customer"] == "c0"
    assert 0.0 <= ev["gen_ai.evaluation.score.value"] <= 1.0
    # and as Phoenix annotations (its evaluations), one per span
    by_span = {s["context"]["span_id"]: s for s in spans.values()}
    notes = _annotations(phoenix, project, list(by_span), len(by_span))
    for note in notes:
        span = by_span[note["span_id"]]
        assert note["name"] == EVALUATION_NAME and note["annotator_kind"] == "CODE"
        assert note["result"]["score"] == pytest.approx(
            span["attributes"]["entropy_sentinel.p_correct"]
        )
        assert note["metadata"]["trace_id"] == span["attributes"]["entropy_sentinel.trace_id"]


def _annotations(
    phoenix: str, project: str, span_ids: list[str], n: int, timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    got: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{phoenix}/v1/projects/{project}/span_annotations",
            params={"span_ids": span_ids, "limit": 1000},
        )
        if r.status_code == 200:
            got = r.json()["data"]
            if len(got) >= n:
                return got
        time.sleep(0.5)
    raise AssertionError(f"Phoenix has {len(got)} annotations, expected {n}")


def test_the_sdk_exports_its_calls_under_the_applications_own_spans(
    phoenix: str, upstream: ThreadedServer, smollm2_model: Path, tmp_path: Path
) -> None:
    project = f"sentinel-sdk-{uuid.uuid4().hex[:8]}"
    provider = TracerProvider(resource=Resource.create({PROJECT_KEY: project}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(phoenix + "/v1/traces")))
    app_tracer = provider.get_tracer("the-application")
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model_path=smollm2_model,
        evaluate_every=3600.0,
    )
    direct = openai.OpenAI(base_url=upstream.url + "/v1", api_key="k", max_retries=0)
    with ThreadedServer(create_app(settings)) as svc:
        spans_out = EvaluationSpans(tracer_provider=provider)
        with Sentinel(svc.url, otel=spans_out) as sentinel:
            client = wrap_openai(direct, sentinel, slice={"domain": "math"})
            with app_tracer.start_as_current_span("handle-request") as parent:
                got = client.chat.completions.create(
                    model="smol",
                    messages=[{"role": "user", "content": "What is 3 + 4?"}],
                    max_tokens=8,
                    temperature=0.0,
                )
            assert sentinel.flush(30)
    direct.close()
    assert provider.force_flush(30_000)
    spans = _spans(phoenix, project, 2)
    ours = next(s for s in spans if "entropy_sentinel.trace_id" in s["attributes"])
    parent_id = format(parent.get_span_context().span_id, "016x")
    assert ours["parent_id"] == parent_id  # nested under the application's span
    a = ours["attributes"]
    assert ours["name"] == "chat smol"
    assert a["gen_ai.request.temperature"] == 0.0 and a["gen_ai.request.max_tokens"] == 8
    assert a["gen_ai.response.id"] == got.id
    assert a["gen_ai.usage.output_tokens"] == got.usage.completion_tokens  # type: ignore[union-attr]
    assert a["entropy_sentinel.slice.domain"] == "math"
    ev = _evaluation(ours)
    assert ev["gen_ai.response.id"] == got.id
    assert 0.0 <= ev["gen_ai.evaluation.score.value"] <= 1.0
    provider.shutdown()
    trace.get_tracer_provider()  # the global provider is untouched by all this
    assert json.dumps(a)  # attributes are plain JSON values
