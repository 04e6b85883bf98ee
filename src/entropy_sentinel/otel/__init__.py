"""OpenTelemetry export of P(correct): one span per evaluated response, over OTLP/HTTP.

``pip install 'entropy-sentinel[otel]'`` (the OpenTelemetry SDK and its OTLP/HTTP
exporter). The service exports what it scores when ``otel_endpoint`` is set
(``sentinel serve --otel-endpoint URL``, ``SENTINEL_OTEL_ENDPOINT``, or the settings
file); the SDK when a `Sentinel` is given ``otel=EvaluationSpans(...)``. See
docs/integrations.md for the attributes and what we chose where the GenAI semantic
conventions are silent.
"""

from entropy_sentinel.otel.phoenix import PhoenixAnnotations
from entropy_sentinel.otel.spans import EVALUATION_NAME, OTHER, EvaluationSpans

__all__ = ["EVALUATION_NAME", "OTHER", "EvaluationSpans", "PhoenixAnnotations"]
