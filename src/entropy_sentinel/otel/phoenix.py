"""`PhoenixAnnotations`: P(correct) as Arize Phoenix span annotations, so Phoenix's UI
shows it as an evaluation of each call (its span events are not).

A span exporter, run by its own `BatchSpanProcessor` next to the OTLP one: for every
exported span that carries ``entropy_sentinel.p_correct`` it posts one annotation
(``POST {phoenix}/v1/span_annotations``: name ``entropy_sentinel.p_correct``, annotator
``CODE``, score = P(correct), the trace id and slice in its metadata). Phoenix holds an
annotation whose span it has not stored yet until the span arrives. The key, if the
Phoenix server has authentication on, comes from ``PHOENIX_API_KEY``.

Phoenix's REST API rather than its Python client (``arize-phoenix-client``): the client
would bring gRPC and the OpenInference packages into the ``otel`` extra for one POST.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["PhoenixAnnotations"]

log = logging.getLogger("entropy_sentinel.otel")

_P = "entropy_sentinel.p_correct"
_SLICE = "entropy_sentinel.slice."


class PhoenixAnnotations(SpanExporter):
    """Posts P(correct) of exported spans as Phoenix span annotations (module docstring).

    Args:
        url: Phoenix's base URL (``http://127.0.0.1:6006``).
        timeout: seconds per request.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        headers = {}
        key = os.environ.get("PHOENIX_API_KEY")
        if key:
            headers["authorization"] = f"Bearer {key}"
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        data = [a for a in map(_annotation, spans) if a is not None]
        if not data:
            return SpanExportResult.SUCCESS
        try:
            r = self._client.post(self.url + "/v1/span_annotations", json={"data": data})
        except httpx.HTTPError as exc:
            log.warning("otel: posting %d Phoenix annotations failed: %s", len(data), exc)
            return SpanExportResult.FAILURE
        if r.status_code >= 300:
            log.warning(
                "otel: Phoenix refused %d annotations: HTTP %d %s",
                len(data),
                r.status_code,
                r.text[:300],
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._client.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _annotation(span: ReadableSpan) -> dict[str, Any] | None:
    attrs = span.attributes or {}
    p = attrs.get(_P)
    if not isinstance(p, float) or span.context is None:
        return None
    return {
        "span_id": format(span.context.span_id, "016x"),
        "name": _P,
        "annotator_kind": "CODE",
        "result": {
            "score": p,
            "explanation": "estimated P(correct) from the entropy of the answer's logprobs",
        },
        "metadata": {
            "trace_id": attrs.get("entropy_sentinel.trace_id"),
            "slice": {k[len(_SLICE) :]: v for k, v in attrs.items() if k.startswith(_SLICE)},
        },
    }
