"""Response (and small request) models of the HTTP API, for validation and the OpenAPI schema.

Numbers that can be undefined (an estimate of an empty slice) are ``null`` in JSON,
never NaN. Times are RFC 3339 text in UTC.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AlertOut",
    "AlertsOut",
    "EstimateRecord",
    "EstimatesOut",
    "Health",
    "IngestOut",
    "IngestRejection",
    "IngestTrace",
    "IntervalOut",
    "LabelIn",
    "LabelsIn",
    "LabelsOut",
    "ModelOut",
    "PrioritiesOut",
    "RecalibrateIn",
    "RecalibrateOut",
    "ReferenceOut",
    "SlicePriorityOut",
    "SlicesOut",
]


class IngestTrace(BaseModel):
    index: int = Field(description="Position of the record in the request (0-based).")
    id: str = Field(description="Trace id (generated when the record had none).")
    status: str = Field(description="`stored` (new) or `duplicate` (id already stored).")
    p_correct: float | None = Field(description="P(correct) for stored traces.")


class IngestRejection(BaseModel):
    index: int
    id: str | None
    field: str | None = Field(description="JSON path of the offending field.")
    reason: str


class IngestOut(BaseModel):
    records: int
    accepted: int
    duplicates: int
    rejected: int
    traces: list[IngestTrace]
    rejections: list[IngestRejection]


class IntervalOut(BaseModel):
    estimate: float | None
    lower: float | None
    upper: float | None


class ReferenceOut(IntervalOut):
    n: int


class EstimateRecord(BaseModel):
    slice: dict[str, str] = Field(description="{} for all traffic.")
    window_start: str
    window_end: str
    n: int
    estimate: float | None = Field(description="Estimated accuracy (mean P(correct)).")
    lower: float | None
    upper: float | None
    n_labelled: int
    labelled_accuracy: float | None
    label_corrected: IntervalOut | None
    reference: ReferenceOut | None
    change: float | None = Field(description="Estimate minus the reference estimate.")
    change_z: float | None = Field(description="The change in sampling standard errors.")


class EstimatesOut(BaseModel):
    by: str
    window: str | None
    since: str
    until: str
    reference: str | None
    level: float
    model_sd: float
    scorer_id: int
    records: list[EstimateRecord]


class SlicesOut(BaseModel):
    since: str
    until: str
    dimensions: dict[str, dict[str, int]] = Field(
        description="dimension -> value -> traces in the range."
    )


class ModelOut(BaseModel):
    scorer_id: int
    estimator_sha256: str
    entropy_mode: str
    features: list[str]
    model_sd: float
    calibration: dict[str, Any] | None
    note: str
    card: dict[str, Any]
    rescore_pending: int


class AlertOut(BaseModel):
    id: int
    rule: str
    slice: dict[str, str]
    status: str
    opened_at: str
    resolved_at: str | None
    evidence: dict[str, Any]
    last_evidence: dict[str, Any]
    notified: bool
    notify_error: str | None


class AlertsOut(BaseModel):
    rules: list[str]
    alerts: list[AlertOut]


class SlicePriorityOut(BaseModel):
    rank: int
    dimension: str
    value: str
    n: int
    n_unlabelled: int
    n_labelled: int
    estimate: float | None
    lower: float | None
    upper: float | None
    gap: float | None
    share: float | None
    uncertainty: float | None
    priority: float | None
    allocated: int


class LabelRequestOut(BaseModel):
    trace_id: str
    slice_rank: int
    dimension: str
    value: str
    timestamp: str
    p_correct: float
    slice: dict[str, str]
    meta: dict[str, Any]


class PrioritiesOut(BaseModel):
    by: str
    budget: int
    target: float | None
    since: str
    until: str
    slices: list[SlicePriorityOut]
    requests: list[LabelRequestOut]


class LabelIn(BaseModel):
    id: str = Field(max_length=256)
    correct: bool | int | str | None = Field(
        description="true/false, 1/0, yes/no, correct/wrong; empty or null: skipped."
    )
    source: str | None = Field(default=None, max_length=128)


class LabelsIn(BaseModel):
    labels: list[LabelIn] = Field(max_length=100_000)
    source: str = Field(default="api", max_length=128, description="Who labelled.")


class LabelsOut(BaseModel):
    labelled: int
    unchanged: int
    blank: int
    unknown: list[str]
    rejections: list[str]


class RecalibrateIn(BaseModel):
    method: str = Field(default="isotonic", description="`isotonic` or `sigmoid`.")
    min_labels: int = Field(default=50, ge=2)
    force: bool = Field(default=False, description="Activate even if it does not help.")


class RecalibrateOut(BaseModel):
    method: str
    n_labels: int
    brier_before: float
    brier_after: float
    ece_before: float
    ece_after: float
    folds: int
    improves: bool
    activated_scorer_id: int | None
    rescored: int


class Health(BaseModel):
    status: str = Field(description="`ok`, or `degraded` with the reasons.")
    version: str
    database: str
    writer: str
    pending_traces: int
    rescore_pending: int
    scorer_id: int | None
    problems: list[str] = Field(description="Why the service is degraded (HTTP 503).")
    warnings: list[str] = Field(description="What needs attention; the service is still ok.")
    storage: dict[str, Any] = Field(
        description="SQLite: free_bytes, wal_bytes, wal_backlog_bytes, wal_file_bytes."
    )
