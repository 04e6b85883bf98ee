"""`EvaluationSpans` with the OpenTelemetry SDK's own in-memory exporter: the span of a
response recorded by hand through the SDK and scored by a real service, its parent, its
evaluation event, and the cardinality cap. (Export into a real receiver, Phoenix:
tests/test_otel_phoenix.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from entropy_sentinel.client import Sentinel
from entropy_sentinel.otel import EVALUATION_NAME, OTHER, EvaluationSpans
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.replay_upstream import load_recorded
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import SMOLLM2_FIXTURES
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]


@pytest.fixture
def service(smollm2_model: Path, tmp_path: Path) -> Iterator[ThreadedServer]:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'sentinel.db'}",
        model_path=smollm2_model,
        evaluate_every=3600.0,
    )
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


def test_a_hand_recorded_response_gets_its_span_under_the_callers(service: ThreadedServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    chat = load_recorded(SMOLLM2_FIXTURES)["chat"][0]
    with Sentinel(service.url, otel=EvaluationSpans(tracer_provider=provider)) as sentinel:
        with provider.get_tracer("app").start_as_current_span("job") as parent:
            trace_id = sentinel.record(chat, slice={"domain": "math"}, model="smol")
        assert sentinel.flush(30)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    ours = spans["chat smol"]
    assert ours.parent is not None
    assert ours.parent.span_id == parent.get_span_context().span_id
    attrs = dict(ours.attributes or {})
    assert attrs["entropy_sentinel.trace_id"] == trace_id
    assert attrs["entropy_sentinel.slice.domain"] == "math"
    assert attrs["gen_ai.response.id"] == chat["id"]
    assert ours.start_time is not None and ours.start_time > 1_600_000_000 * 10**9
    [event] = ours.events
    ev = dict(event.attributes or {})
    assert event.name == "gen_ai.evaluation.result"
    assert ev["gen_ai.evaluation.name"] == EVALUATION_NAME
    assert ev["gen_ai.evaluation.score.value"] == attrs["entropy_sentinel.p_correct"]
    assert ev["gen_ai.response.id"] == chat["id"]


def test_slice_values_beyond_the_cap_are_exported_as_other() -> None:
    exporter = InMemorySpanExporter()
    spans = EvaluationSpans(exporter=exporter, max_slice_values=3)
    for i in range(6):
        spans.emit(
            trace_id=f"t{i}",
            p=0.5,
            slice={"customer": f"c{i % 5}", "domain": "math"},
            model="m",
            meta={},
            start=1_700_000_000.0,
        )
    assert spans.force_flush()
    got = [dict(s.attributes or {}) for s in exporter.get_finished_spans()]
    assert [a["entropy_sentinel.slice.customer"] for a in got] == [
        "c0",
        "c1",
        "c2",
        OTHER,
        OTHER,
        "c0",
    ]
    assert {a["entropy_sentinel.slice.domain"] for a in got} == {"math"}
    spans.shutdown()
