"""Prometheus metrics of the proxy, on the service's registry (``GET /metrics``).

====================================  =====================================================
``proxy_requests_total{route,         proxied requests: ``ok`` (2xx from the upstream),
outcome}``                            ``upstream_error`` (the upstream's non-2xx, passed
                                      back), ``timeout`` (504), ``unreachable`` (502),
                                      ``broken`` (the upstream stream broke off),
                                      ``disconnected`` (the client left mid-stream),
                                      ``refused`` (the proxy's own 4xx: key, slice, no
                                      upstream), ``too_large`` (over
                                      ``proxy_max_answer_bytes``), ``unstrippable`` (an
                                      answer with added logprobs that could not be read to
                                      remove them: withheld, 502); ``timeout`` also counts
                                      the answer deadline and a stream's idle and total
                                      limits
``proxy_upstream_seconds{route}``     time from forwarding to the upstream's headers
``proxy_traces_total{outcome}``       what recording did with an answer: ``stored``,
                                      ``duplicate``, ``rejected`` (the ingest rules or the
                                      estimator refused the trace; logged with the reason),
                                      ``failed`` (storage error; logged), ``dropped``
                                      (recorder down or stuck past
                                      ``proxy_record_wait``), ``skipped`` (no
                                      trace to record: not 2xx, or no logprobs asked)
``proxy_record_queue``                answers in flight to the recorder process
====================================  =====================================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ROUTES", "ProxyMetrics"]

ROUTES = ("chat/completions", "completions")
_REQUEST_OUTCOMES = (
    "ok",
    "upstream_error",
    "timeout",
    "unreachable",
    "broken",
    "disconnected",
    "refused",
    "too_large",
    "unstrippable",
)
_TRACE_OUTCOMES = ("stored", "duplicate", "rejected", "failed", "dropped", "skipped")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class ProxyMetrics:
    """The proxy's counters (see the module docstring), registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sentinel_proxy_requests",
            "Proxied requests by route and outcome.",
            ["route", "outcome"],
            registry=registry,
        )
        self.upstream_seconds = Histogram(
            "sentinel_proxy_upstream_seconds",
            "Time from forwarding a request to the upstream's response headers.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.traces = Counter(
            "sentinel_proxy_traces",
            "Proxied answers by what recording did with them.",
            ["outcome"],
            registry=registry,
        )
        self.queue = Gauge(
            "sentinel_proxy_record_queue",
            "Proxied answers waiting to be recorded.",
            registry=registry,
        )
        for route in ROUTES:
            self.upstream_seconds.labels(route)
            for outcome in _REQUEST_OUTCOMES:
                self.requests.labels(route, outcome)
        for outcome in _TRACE_OUTCOMES:
            self.traces.labels(outcome)
