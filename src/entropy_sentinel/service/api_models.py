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
    estimate: float | None = Field(
        description="Label-free estimated accuracy (mean P(correct)), the model's estimator "
        "finishing the slice's sums (docs/estimator.md)."
    )
    lower: float | None = Field(
        description="Lower end of its interval: sampling, calibration and transfer error."
    )
    upper: float | None
    sampling_sd: float | None = Field(
        description="Sampling part: Poisson-binomial sd of the realised accuracy given P."
    )
    calibration_sd: float | None = Field(
        description="Calibration part (sd): the uncertainty of the calibration offsets of "
        "slice values seen in training."
    )
    transfer_half_width: float | None = Field(
        description="Transfer part (a half-width at the level): the unseen fraction times "
        "the transfer relation's half-width for the shift."
    )
    unseen_fraction: float | None = Field(
        description="Fraction of responses whose slice value had no calibration in training."
    )
    shift: float | None = Field(
        description="Shift score of those responses (0.5: like the training traces, 1: "
        "nothing alike); null when all had calibration, or when it is unknown."
    )
    shift_word: str = Field(
        description="The shift in plain words: 'seen in training', 'new, looks like "
        "training', 'new, somewhat unlike training', 'unlike the training data: label "
        "some'; '' when unknown."
    )
    n_labelled: int = Field(description="Labels in the slice: designed and plain.")
    n_plain: int = Field(
        description="Of them, labels given outside a labelling design (a simple random "
        "sample of the slice, as far as the estimate knows)."
    )
    labelled_accuracy: float | None = Field(
        description="The design-weighted (Hajek) accuracy of the labelled responses."
    )
    lambda_: float | None = Field(
        alias="lambda",
        description="The power of the label-corrected estimate (PPI++: how much the model's "
        "P is trusted, 0 to 1); null without labels, and for several models together.",
    )
    label_corrected: IntervalOut | None = Field(
        description="The label-corrected estimate and interval (labels and the label-free "
        "estimate combined); null without labels."
    )
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
    model_sd: float | None = Field(
        description="The classifier's in-distribution error (its card), when one model is "
        "read; informational: the intervals are made of the parts in each record."
    )
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
    n_unlabelled: int = Field(description="Unlabelled traces: the design's candidates.")
    n_labelled: int
    estimate: float | None = Field(description="Label-free estimate of the candidates.")
    lower: float | None
    upper: float | None
    shift: float | None
    shift_word: str
    gap: float | None = Field(description="max(0, target - estimate).")
    share: float | None = Field(description="The slice's part of all candidates.")
    uncertainty: float | None = Field(description="The interval's half-width.")
    priority: float | None = Field(
        description="Allocation weight: uncertainty times the square root of n_unlabelled."
    )
    allocated: int = Field(description="Expected labels the budget gives the slice.")
    drawn: int = Field(description="Responses the design drew in it.")


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
    design_id: int | None = Field(description="The labelling design that drew it.")
    inclusion_probability: float | None = Field(
        description="The probability the design drew it with: its label is weighted by the inverse."
    )
    status: str = Field(description="`pending`, `labelled` or `skipped`.")


class DesignOut(BaseModel):
    """A stored labelling design: its drawn responses, how many are labelled, skipped,
    pending."""

    id: int
    size: int = Field(description="Responses drawn.")
    labelled: int
    skipped: int = Field(description="Skipped by annotators: missing labels.")
    pending: int
    seed: int
    created_at: str


class PrioritiesOut(BaseModel):
    by: str
    budget: int
    target: float | None
    since: str
    until: str
    design: DesignOut | None = Field(
        description="The open labelling design the requests belong to (null: nothing to "
        "draw in the range)."
    )
    slices: list[SlicePriorityOut]
    requests: list[LabelRequestOut]


class LabelIn(BaseModel):
    id: str = Field(max_length=256)
    correct: bool | int | str | None = Field(
        default=None,
        description="true/false, 1/0, yes/no, correct/wrong; empty or null: not labelled yet "
        "(counted as `blank`).",
    )
    skipped: bool = Field(
        default=False,
        description="The annotator skipped this item (no `correct`): a pending item of a "
        "labelling design becomes `skipped`; counted as `skipped`; no estimate changes.",
    )
    source: str | None = Field(default=None, max_length=128)


class LabelsIn(BaseModel):
    labels: list[LabelIn] = Field(max_length=100_000)
    source: str = Field(default="api", max_length=128, description="Who labelled.")


class LabelsOut(BaseModel):
    labelled: int = Field(description="Labels stored (new or changed).")
    designed: int = Field(
        description="Of them, labels of responses a labelling design drew: they carry its "
        "inclusion probability."
    )
    plain: int = Field(
        description="Of them, labels of other traces: counted as a simple random sample of "
        "their slice."
    )
    unchanged: int
    skipped: int = Field(description="Items recorded as skipped.")
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
