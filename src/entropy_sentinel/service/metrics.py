"""Prometheus metrics of one service instance (``GET /metrics``).

Each app has its own `CollectorRegistry` (several apps in one process, as in tests,
do not collide). Label values come from fixed sets or from configuration (rule
names, route templates), never from raw request data, except the per-slice gauges,
which are capped at ``metrics_max_slices`` slices (largest first).

Names (all prefixed ``sentinel_``):

====================================  =====================================================
``traces_stored_total``               traces written (new ids)
``traces_duplicate_total``            traces whose id was already stored (not counted again)
``traces_rejected_total{reason}``     rejected traces: ``invalid`` (record), ``model``
                                      (estimator refused it), ``scoring`` (scoring failed)
``traces_waiting_total``              traces stored without P(correct): no estimator for
                                      their model yet (scored once one is registered)
``model_traces{model,state}``         stored traces per model: ``scored``, ``waiting``,
                                      ``refused``, ``expired`` (at most
                                      ``metrics_max_slices`` models)
``waiting_expired_total``             waiting traces whose steps the retention limit
                                      dropped (kept, never scored)
``texts_expired_total``               stored prompt/answer texts the retention limit deleted
``ingest_requests_total{outcome}``    ingest requests: ``ok``, ``rejected`` (all records
                                      bad), ``error`` (body refused), ``unavailable``
``http_request_duration_seconds``     latency per ``method``, ``route`` (template), ``status``
``write_duration_seconds``            one group commit (scoring + transaction)
``write_group_traces``                traces per group commit
``write_queue_traces``                traces waiting to be written
``auth_failures_total{reason}``       refused requests: ``missing``, ``invalid``, ``scope``,
                                      ``not_loopback``
``slice_estimate{model,dimension,value}``  estimated accuracy over ``metrics_window``
``slice_estimate_lower/upper{...}``   its interval (the estimator's own, as ``/v1/estimates``)
``slice_label_corrected{...}``        its label-corrected estimate (slices with labels)
``slice_shift{...}``                  the shift score of its responses without calibration
                                      (slices with such responses and a known shift)
``slice_unseen_fraction{...}``        the fraction of its responses without calibration
``slice_traces{model,dimension,value}``  traces in it
``alerts_open``                       open alert episodes
``alerts_raised_total{rule}``         episodes opened
``webhook_failures_total``            failed webhook deliveries (retried)
``rescore_pending_traces``            traces waiting to be rescored by the active model
====================================  =====================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from entropy_sentinel.estimator.intervals import SliceInterval

__all__ = ["Metrics", "SliceGauge"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


class SliceGauge(NamedTuple):
    """One slice's numbers for the gauges."""

    model: str
    dimension: str
    value: str
    numbers: SliceInterval


class Metrics:
    """The metrics of one app (see the module docstring)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.traces_stored = Counter(
            "sentinel_traces_stored", "Traces written to the database.", registry=r
        )
        self.traces_duplicate = Counter(
            "sentinel_traces_duplicate",
            "Traces whose id was already stored (acknowledged, not counted again).",
            registry=r,
        )
        self.traces_rejected = Counter(
            "sentinel_traces_rejected", "Rejected traces by reason.", ["reason"], registry=r
        )
        self.traces_waiting = Counter(
            "sentinel_traces_waiting",
            "Traces stored without P(correct): no estimator for their model yet.",
            registry=r,
        )
        self.model_traces = Gauge(
            "sentinel_model_traces",
            "Stored traces per model: scored, waiting (for an estimator), refused, expired.",
            ["model", "state"],
            registry=r,
        )
        self.waiting_expired = Counter(
            "sentinel_waiting_expired",
            "Waiting traces whose steps the retention limit dropped (never scored).",
            registry=r,
        )
        self.texts_expired = Counter(
            "sentinel_texts_expired",
            "Stored prompt/answer texts deleted by the retention limit.",
            registry=r,
        )
        self.ingest_requests = Counter(
            "sentinel_ingest_requests", "Ingest requests by outcome.", ["outcome"], registry=r
        )
        self.http_latency = Histogram(
            "sentinel_http_request_duration_seconds",
            "HTTP request latency.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_seconds = Histogram(
            "sentinel_write_duration_seconds",
            "Duration of one group commit (scoring and transaction).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.write_group = Histogram(
            "sentinel_write_group_traces",
            "Traces per group commit.",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.queue_traces = Gauge(
            "sentinel_write_queue_traces", "Traces waiting to be written.", registry=r
        )
        self.auth_failures = Counter(
            "sentinel_auth_failures", "Refused requests by reason.", ["reason"], registry=r
        )
        labels = ["model", "dimension", "value"]
        self.slice_estimate = Gauge(
            "sentinel_slice_estimate",
            "Estimated accuracy of a slice over the metrics window (fraction).",
            labels,
            registry=r,
        )
        self.slice_lower = Gauge(
            "sentinel_slice_estimate_lower", "Lower end of its interval.", labels, registry=r
        )
        self.slice_upper = Gauge(
            "sentinel_slice_estimate_upper", "Upper end of its interval.", labels, registry=r
        )
        self.slice_corrected = Gauge(
            "sentinel_slice_label_corrected",
            "Label-corrected estimated accuracy of a slice (slices with labels).",
            labels,
            registry=r,
        )
        self.slice_shift = Gauge(
            "sentinel_slice_shift",
            "Shift score of a slice's responses without calibration (0.5 like training, 1 unlike).",
            labels,
            registry=r,
        )
        self.slice_unseen = Gauge(
            "sentinel_slice_unseen_fraction",
            "Fraction of a slice's responses whose slice value had no calibration in training.",
            labels,
            registry=r,
        )
        self.slice_traces = Gauge(
            "sentinel_slice_traces", "Traces of a slice in the metrics window.", labels, registry=r
        )
        self.alerts_open = Gauge("sentinel_alerts_open", "Open alert episodes.", registry=r)
        self.alerts_raised = Counter(
            "sentinel_alerts_raised", "Alert episodes opened, by rule.", ["rule"], registry=r
        )
        self.webhook_failures = Counter(
            "sentinel_webhook_failures", "Failed webhook deliveries (retried).", registry=r
        )
        self.rescore_pending = Gauge(
            "sentinel_rescore_pending_traces",
            "Traces waiting to be rescored by the active model.",
            registry=r,
        )
        for reason in ("invalid", "model", "scoring"):
            self.traces_rejected.labels(reason)
        for outcome in ("ok", "rejected", "error", "unavailable"):
            self.ingest_requests.labels(outcome)
        for reason in ("missing", "invalid", "scope", "not_loopback"):
            self.auth_failures.labels(reason)

    def set_slices(self, rows: Sequence[SliceGauge]) -> None:
        """Replace the per-slice gauges with these slices' numbers."""
        gauges = (
            self.slice_estimate,
            self.slice_lower,
            self.slice_upper,
            self.slice_traces,
            self.slice_corrected,
            self.slice_shift,
            self.slice_unseen,
        )
        for gauge in gauges:
            gauge.clear()
        for row in rows:
            key = (row.model, row.dimension, row.value)
            iv = row.numbers
            self.slice_traces.labels(*key).set(iv.n)
            self.slice_estimate.labels(*key).set(iv.estimate)
            self.slice_lower.labels(*key).set(iv.lower)
            self.slice_upper.labels(*key).set(iv.upper)
            self.slice_unseen.labels(*key).set(iv.unseen_fraction)
            if math.isfinite(iv.ppi_estimate):
                self.slice_corrected.labels(*key).set(iv.ppi_estimate)
            if math.isfinite(iv.shift):
                self.slice_shift.labels(*key).set(iv.shift)

    def set_models(self, counts: dict[str, dict[str, int]], limit: int) -> None:
        """Replace the per-model trace gauges (the ``limit`` models with most traces)."""
        self.model_traces.clear()
        ranked = sorted(counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        for model, states in ranked[:limit]:
            for state, n in states.items():
                self.model_traces.labels(model, state).set(n)
