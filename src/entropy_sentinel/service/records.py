"""Value objects passed between ingest, scoring and storage.

`ScoredTraces` is a column-oriented batch of validated, scored traces ready to be
written: one entry per trace in every field (arrays are ``(n,)`` or ``(n, 11)``).
`WriteOutcome` says which of them the database took and which were already there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import FloatArray

__all__ = ["ScoredTraces", "ScorerInfo", "WriteOutcome"]


@dataclass(frozen=True, eq=False)
class ScoredTraces:
    """Validated traces with their features and P(correct), ready to store.

    Attributes:
        trace_ids: unique ids (at most 256 characters).
        ts: event times, epoch seconds (UTC), ``(n,)``.
        received_at: when the service received them, epoch seconds.
        slices: slice labels per trace (dimension -> value).
        n_tokens: generated tokens per trace, ``(n,)``.
        k: top-k width per trace (most alternatives at any step; 0: precomputed entropies).
        entropy_mode: the entropy mode the features were computed in.
        features: the 11 entropy-profile features, ``(n, 11)``, `FEATURE_NAMES` order.
        extra_features: the estimator's other inputs per trace ({name: value}) or None.
        p_raw: P(correct) from the estimator, ``(n,)`` in [0, 1].
        p: P(correct) after the scorer's calibration (equal to ``p_raw`` without one).
        scorer_id: the scorer (``scorers.id``) whose aggregates count these traces.
        labels: 1.0 correct, 0.0 wrong, NaN unlabelled, ``(n,)``.
        meta: free-form metadata per trace.
        raw: the raw record per trace (compressed JSON) when stored, else None.
    """

    trace_ids: Sequence[str]
    ts: FloatArray
    received_at: float
    slices: Sequence[Mapping[str, str]]
    n_tokens: npt.NDArray[np.int64]
    k: npt.NDArray[np.int64]
    entropy_mode: str
    features: FloatArray
    extra_features: Sequence[Mapping[str, float] | None]
    p_raw: FloatArray
    p: FloatArray
    scorer_id: int
    labels: FloatArray
    meta: Sequence[Mapping[str, Any]]
    raw: Sequence[bytes | None]

    def __len__(self) -> int:
        return len(self.trace_ids)


@dataclass(frozen=True)
class WriteOutcome:
    """What the database did with a `ScoredTraces`: stored rows and duplicate ids.

    An id repeated within one `Storage.write` call is stored once, from its first
    occurrence; it is then in ``stored`` (and, for a later batch, ``duplicates`` too).
    """

    stored: frozenset[str]
    duplicates: frozenset[str]


@dataclass(frozen=True)
class ScorerInfo:
    """A row of ``scorers``: an estimator, or a recalibration of one.

    Attributes:
        id: database id.
        estimator_sha256: SHA-256 of the estimator artifact file.
        entropy_mode: the estimator's entropy mode.
        features: the estimator's input feature names.
        model_sd: estimator-error standard deviation used in intervals (fraction).
        card: the estimator's model card (metadata).
        calibration: the recalibration map applied to its P (None for the bare estimator).
        base_id: for a recalibration, the scorer it recalibrates.
        created_at: epoch seconds.
        note: free text (e.g. how the recalibration was fitted).
    """

    id: int
    estimator_sha256: str
    entropy_mode: str
    features: tuple[str, ...]
    model_sd: float
    card: Mapping[str, Any]
    calibration: Mapping[str, Any] | None
    base_id: int | None
    created_at: float
    note: str
