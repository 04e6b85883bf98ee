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
    "DesignOut",
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
    "ModelEntryOut",
    "ModelOut",
    "ModelsOut",
    "PrioritiesOut",
    "RecalibrateIn",
    "RecalibrateOut",
    "ReferenceOut",
    "SlicePriorityOut",
    "SlicesOut",
    "TraceOut",
]


class IngestTrace(BaseModel):
    index: int = Field(description="Position of the record in the request (0-based).")
    id: str = Field(description="Trace id (generated when the record had none).")
    status: str = Field(description="`stored` (new) or `duplicate` (id already stored).")
    p_correct: float | None = Field(
        description="P(correct) for stored traces; null while the trace waits for an "
        "estimator of its model."
    )
    model: str = Field(description="The model key the trace is stored under.")


class IngestRejection(BaseModel):
    index: int
    id: str | None
    field: str | None = Field(description="JSON path of the offending field.")
    reason: str


class IngestOut(BaseModel):
    records: int
    accepted: int
    duplicates: int
    waiting: int = Field(description="Stored without P(correct): no estimator for the model.")
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
    model: str | None = Field(description="The model, when models were asked for; null: all.")
    other_model: bool = Field(
        description="Some traces were scored by an estimator fitted on another model's "
        "traces (or on traces naming no model)."
    )
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


class ScorerOut(BaseModel):
    model: str
    scorer_id: int
    model_sd: float
    fitted_on: str | None = Field(description="The model its training traces named.")
    other_model: bool


class EstimatesOut(BaseModel):
    by: str
    window: str | None
    since: str
    until: str
    reference: str | None
    level: float
    model_sd: float | None = Field(description="The estimator's error, when one model is read.")
    scorer_id: int | None
    models: list[ScorerOut] = Field(description="The estimators whose numbers are in it.")
    no_estimator: list[str] = Field(description="Models asked for that have no estimator.")
    records: list[EstimateRecord]


class SlicesOut(BaseModel):
    since: str
    until: str
    dimensions: dict[str, dict[str, int]] = Field(
        description="dimension -> value -> traces in the range."
    )


class ModelOut(BaseModel):
    model: str
    fitted_on: str | None
    other_model: bool
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
    model: str
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
    model: str
    prompt: Any = Field(
        default=None, description="Stored prompt (text or chat messages): `text` scope only."
    )
    answer: str | None = Field(default=None, description="Stored answer: `text` scope only.")
    inclusion_probability: float | None = Field(
        default=None, description="Probability the design drew this response (when it keeps one)."
    )
    design_id: str | None = Field(default=None, description="The labelling design it belongs to.")


class DesignOut(BaseModel):
    """A stored labelling design: its responses, how many are labelled, skipped, pending."""

    id: str
    size: int
    labelled: int
    skipped: int
    pending: int


class PrioritiesOut(BaseModel):
    by: str
    budget: int
    target: float | None
    since: str
    until: str
    slices: list[SlicePriorityOut]
    requests: list[LabelRequestOut]
    design: DesignOut | None = Field(
        default=None, description="The labelling design the requests belong to, if stored."
    )


class LabelIn(BaseModel):
    id: str = Field(max_length=256)
    correct: bool | int | str | None = Field(
        default=None,
        description="true/false, 1/0, yes/no, correct/wrong; empty or null: not labelled yet "
        "(counted as `blank`).",
    )
    skipped: bool = Field(
        default=False,
        description="The annotator skipped this item (no `correct`): recorded on the trace "
        "and counted as `skipped`; no estimate changes.",
    )
    source: str | None = Field(default=None, max_length=128)


class LabelsIn(BaseModel):
    labels: list[LabelIn] = Field(max_length=100_000)
    source: str = Field(default="api", max_length=128, description="Who labelled.")


class LabelsOut(BaseModel):
    labelled: int
    unchanged: int
    skipped: int
    blank: int
    unknown: list[str]
    rejections: list[str]


class RecalibrateIn(BaseModel):
    model: str | None = Field(
        default=None, max_length=256, description="Model; required when several are served."
    )
    method: str = Field(default="isotonic", description="`isotonic` or `sigmoid`.")
    min_labels: int = Field(default=50, ge=2)
    force: bool = Field(default=False, description="Activate even if it does not help.")


class RecalibrateOut(BaseModel):
    model: str
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


class EstimatorOut(BaseModel):
    scorer_id: int
    estimator_sha256: str
    fitted_on: str | None
    other_model: bool
    family: str | None
    entropy_mode: str
    model_sd: float
    cv_auroc: float | None
    recalibrated: bool


class TraceCountsOut(BaseModel):
    scored: int
    waiting: int = Field(description="Stored unscored until an estimator is registered.")
    refused: int = Field(description="Waiting, refused by the registered estimator.")
    expired: int = Field(description="Kept unscored: their steps passed the retention limit.")


class ModelEntryOut(BaseModel):
    name: str = Field(description="The model key (`''`: traces that named no model).")
    aliases: list[str]
    serving: bool = Field(description="New traces of it are scored on arrival.")
    estimator: EstimatorOut | None
    traces: TraceCountsOut


class ModelsOut(BaseModel):
    default_model: str = Field(description="The key of traces that name no model.")
    serves_every_model: bool = Field(
        description="An estimator without a model name scores models without their own."
    )
    models: list[ModelEntryOut]


class TraceOut(BaseModel):
    id: str
    model: str
    status: str = Field(description="`scored`, `waiting`, `refused` or `expired`.")
    refused_reason: str | None
    timestamp: str
    received_at: str
    slice: dict[str, str]
    n_tokens: int
    k: int
    p_correct: float | None
    p_raw: float | None
    scorer_id: int | None
    label: float | None
    label_source: str | None
    meta: dict[str, Any]
    text: str = Field(description="`stored`, `none`, or `hidden` (the key lacks `text`).")
    prompt: Any
    answer: str | None
