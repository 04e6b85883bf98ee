"""`EvaluationSpans`: one OpenTelemetry span per evaluated response, with its P(correct).

Each span describes the model call (GenAI semantic conventions, development status):

* name ``"{gen_ai.operation.name} {gen_ai.request.model}"``, kind ``CLIENT``, from the
  call's start to its end when known (the SDK knows both; the service knows the event
  time of the trace, so its spans start and end there);
* the call's ``gen_ai.*`` attributes: those the SDK wrapper stored in the trace's
  ``meta.gen_ai`` (request parameters, response id and model, finish reasons, token
  usage), else what the trace says (``gen_ai.request.model`` from its model,
  ``gen_ai.operation.name`` ``chat`` for proxied chat and SDK traces);
* ``entropy_sentinel.trace_id``, ``entropy_sentinel.p_correct`` and one
  ``entropy_sentinel.slice.<dimension>`` per slice dimension;
* one event ``gen_ai.evaluation.result`` with ``gen_ai.evaluation.name`` =
  ``entropy_sentinel.p_correct``, ``gen_ai.evaluation.score.value`` = P(correct) in
  [0, 1], ``gen_ai.evaluation.explanation``, ``gen_ai.response.id`` (the upstream's id),
  and our trace id and slice as above.

**Cardinality.** Each slice dimension exports at most ``max_slice_values`` distinct
values (100 by default): later new values are exported as ``_OTHER`` (the fallback
value the conventions use for ``error.type``), and a warning is logged once per
dimension. Traces are counted and stored as usual; only the exported attribute is
bucketed.

**Off the request path.** Spans go to a `BatchSpanProcessor` (its own thread and
bounded queue, ``max_queue`` spans; what does not fit is dropped by it and counted in
its log), which sends them with the OTLP/HTTP exporter (``OTEL_EXPORTER_OTLP_*``
environment variables, e.g. headers, apply as usual).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

__all__ = ["EVALUATION_NAME", "OTHER", "EvaluationSpans"]

log = logging.getLogger("entropy_sentinel.otel")

EVALUATION_NAME = "entropy_sentinel.p_correct"
"""``gen_ai.evaluation.name`` of our evaluation."""

OTHER = "_OTHER"
"""The exported value of a slice value beyond the cardinality cap."""

_EXPLANATION = (
    "estimated probability that the answer is correct, from the entropy of its top-k "
    "logprobs (entropy-sentinel; no label used)"
)
_OPERATIONS = {"chat/completions": "chat", "completions": "text_completion"}
_SCALARS = (str, bool, int, float)


class _Head(msgspec.Struct):
    id: str | None = None
    slice: dict[str, str] = {}
    model: str | None = None
    meta: dict[str, Any] = {}
    timestamp: float | None = None


_HEAD = msgspec.json.Decoder(_Head)


class EvaluationSpans:
    """Turns evaluated responses into spans and exports them (see the module docstring).

    Args:
        endpoint: the OTLP/HTTP traces endpoint, e.g. ``http://127.0.0.1:6006/v1/traces``
            (Phoenix); ignored when ``tracer_provider`` is given.
        tracer_provider: an application's own provider to add the spans to (the SDK case:
            they then go wherever the application's spans go).
        exporter: a span exporter instead of OTLP/HTTP to ``endpoint`` (tests, consoles).
        service_name: ``service.name`` of the provider this creates.
        max_slice_values: distinct values exported per slice dimension (the rest:
            ``_OTHER``).
        max_queue: spans waiting to be exported at most.
        phoenix: also post P(correct) as span annotations to this Arize Phoenix
            (its base URL; `entropy_sentinel.otel.phoenix.PhoenixAnnotations`), so its UI
            shows them as evaluations.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        exporter: SpanExporter | None = None,
        service_name: str = "entropy-sentinel",
        max_slice_values: int = 100,
        max_queue: int = 2048,
        phoenix: str | None = None,
    ) -> None:
        self._own: TracerProvider | None = None
        if tracer_provider is None:
            if exporter is None:
                if not endpoint:
                    raise ValueError("give the OTLP/HTTP endpoint, a tracer_provider or exporter")
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                exporter = OTLPSpanExporter(endpoint=endpoint)
            self._own = TracerProvider(resource=Resource.create({"service.name": service_name}))
            self._own.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=max_queue))
            tracer_provider = self._own
        if phoenix:
            from entropy_sentinel.otel.phoenix import PhoenixAnnotations

            annotations = BatchSpanProcessor(PhoenixAnnotations(phoenix), max_queue_size=max_queue)
            tracer_provider.add_span_processor(annotations)
        from entropy_sentinel import __version__

        self.tracer = tracer_provider.get_tracer("entropy_sentinel", __version__)
        self.max_slice_values = max_slice_values
        self._values: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- emit
    def emit(
        self,
        *,
        trace_id: str,
        p: float,
        slice: Mapping[str, str],
        model: str | None,
        meta: Mapping[str, Any],
        start: float,
        end: float | None = None,
        context: Any = None,
    ) -> None:
        """Export the span of one evaluated response (times in epoch seconds)."""
        attrs = self._call_attributes(trace_id, model, meta)
        name = f"{attrs['gen_ai.operation.name']} {attrs.get('gen_ai.request.model', '')}"
        ours: dict[str, Any] = {"entropy_sentinel.trace_id": trace_id}
        for dim, value in slice.items():
            ours[f"entropy_sentinel.slice.{dim}"] = self._capped(dim, value)
        start_ns = int(start * 1e9)
        end_ns = int((end if end is not None and end >= start else start) * 1e9)
        span = self.tracer.start_span(
            name.strip(),
            context=context,
            kind=SpanKind.CLIENT,
            attributes={**attrs, **ours, "entropy_sentinel.p_correct": float(p)},
            start_time=start_ns,
        )
        event: dict[str, Any] = {
            "gen_ai.evaluation.name": EVALUATION_NAME,
            "gen_ai.evaluation.score.value": float(p),
            "gen_ai.evaluation.explanation": _EXPLANATION,
            **ours,
        }
        if "gen_ai.response.id" in attrs:
            event["gen_ai.response.id"] = attrs["gen_ai.response.id"]
        span.add_event("gen_ai.evaluation.result", event, timestamp=end_ns)
        span.end(end_time=end_ns)

    def emit_stored(self, stored: Iterable[tuple[Any, float]]) -> None:
        """The service's hook: ``(Incoming, P)`` of each trace the pipeline stored."""
        for item, p in stored:
            tr = item.trace
            self.emit(
                trace_id=tr.id,
                p=p,
                slice=tr.slice,
                model=tr.model,
                meta=tr.meta,
                start=item.ts,
                end=_end(tr.meta, item.ts),
            )

    def emit_records(self, batch: Sequence[Any], results: Mapping[str, float | None]) -> None:
        """The SDK's hook: the `Pending` records of a batch and the service's P per id
        (a record with several choices has one trace per choice: ``<id>/<index>``)."""
        by_id = {p.id: p for p in batch}
        for key, prob in results.items():
            pending = by_id.get(key) or by_id.get(key.rpartition("/")[0])
            if prob is None or pending is None:
                continue  # a duplicate: exported when it was stored
            head = _HEAD.decode(pending.payload())
            times = pending.call
            start = times.start if times is not None else head.timestamp
            self.emit(
                trace_id=key,
                p=prob,
                slice=head.slice,
                model=head.model,
                meta=head.meta,
                start=start if start is not None else time.time(),
                end=times.end if times is not None else None,
                context=times.context if times is not None else None,
            )

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Export what is queued now (the provider this created; True otherwise)."""
        if self._own is None:
            return True
        return bool(self._own.force_flush(int(timeout * 1000)))

    def shutdown(self) -> None:
        """Export what is queued and stop (the provider this created)."""
        if self._own is not None:
            self._own.shutdown()

    # ---------------------------------------------------------------- helpers
    def _capped(self, dim: str, value: str) -> str:
        with self._lock:
            seen = self._values.setdefault(dim, set())
            if value in seen:
                return value
            if len(seen) < self.max_slice_values:
                seen.add(value)
                return value
            if OTHER not in seen:
                seen.add(OTHER)
                log.warning(
                    "otel: slice dimension %r has more than %d values; further values are "
                    "exported as %r",
                    dim,
                    self.max_slice_values,
                    OTHER,
                )
        return OTHER

    @staticmethod
    def _call_attributes(
        trace_id: str, model: str | None, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        given = meta.get("gen_ai")
        if isinstance(given, Mapping):
            for key, value in given.items():
                if isinstance(key, str) and key.startswith("gen_ai.") and _attribute(value):
                    out[key] = value
        proxy = meta.get("proxy")
        if "gen_ai.operation.name" not in out:
            route = proxy.get("route") if isinstance(proxy, Mapping) else None
            out["gen_ai.operation.name"] = _OPERATIONS.get(str(route), "chat")
        if isinstance(proxy, Mapping):
            out.setdefault("gen_ai.provider.name", "openai")
            if isinstance(proxy.get("model"), str):
                out.setdefault("gen_ai.request.model", proxy["model"])
        if model:
            out.setdefault("gen_ai.request.model", model)
        rid = meta.get("response_id")
        upstream = proxy.get("upstream_id") if isinstance(proxy, Mapping) else None
        if isinstance(rid, str):
            out.setdefault("gen_ai.response.id", rid)
        elif isinstance(upstream, str):  # the proxy keeps the upstream's id beside its own
            out.setdefault("gen_ai.response.id", upstream)
        return out


def _attribute(value: Any) -> bool:
    """An OpenTelemetry attribute value: a scalar, or a list of one scalar type."""
    if isinstance(value, _SCALARS):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, type(value[0])) for v in value)
        and isinstance(value[0], _SCALARS)
    )


def _end(meta: Mapping[str, Any], start: float) -> float:
    """A trace's end time when its meta says how long the call took, else its start."""
    sdk = meta.get("sdk")
    took = sdk.get("seconds") if isinstance(sdk, Mapping) else None
    return start + float(took) if isinstance(took, int | float) and took >= 0 else start
