"""Value objects passed between ingest, scoring and storage.

`ScoredTraces` is a column-oriented batch of validated, scored traces ready to be
written: one entry per trace in every field (arrays are ``(n,)`` or ``(n, 11)``).
A batch without a scorer holds *waiting* traces (their model has no estimator yet):
NaN features and P, and their per-step arrays in ``steps``.
`WriteOutcome` says which of them the database took and which were already there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.estimator.intervals import SliceFinisher
from entropy_sentinel.model_names import fitted_model
from entropy_sentinel.service.storage.buckets import TraceTerms

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
        p_classifier: the estimator's smooth classifier P (what designs draw with).
        seen: whether each trace's slice value had a calibration offset.
        cal: that offset's part ``p (1 - p) sd(b)`` (0 where not seen).
        w: ``(n, 11)`` whitened profiles, rows of NaN where not known (an estimator
            without a shift reference).
        scorer_id: the scorer (``scorers.id``) whose aggregates count these traces; None
            for traces waiting for an estimator of their model (features and P are NaN).
        labels: 1.0 correct, 0.0 wrong, NaN unlabelled, ``(n,)``.
        meta: free-form metadata per trace.
        raw: the raw record per trace (compressed JSON) when stored, else None.
        models: the model key per trace (default ``""``: the traces that named none).
        steps: per waiting trace, its per-step arrays (`pack_steps`), else None.
        texts: per trace, ``(prompt JSON, answer)`` to store (``store_text``), else None.
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
    scorer_id: int | None
    labels: FloatArray
    meta: Sequence[Mapping[str, Any]]
    raw: Sequence[bytes | None]
    models: Sequence[str] = field(default=())
    steps: Sequence[bytes | None] = field(default=())
    texts: Sequence[tuple[str | None, str | None] | None] = field(default=())
    p_classifier: FloatArray | None = None
    seen: npt.NDArray[np.bool_] | None = None
    cal: FloatArray | None = None
    w: FloatArray | None = None

    def __post_init__(self) -> None:
        n = len(self.trace_ids)
        defaults = {"models": ("",) * n, "steps": (None,) * n, "texts": (None,) * n}
        for name, default in defaults.items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)
            elif len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one entry per trace ({n})")
        arrays = {  # without them: the estimator's P, not seen, shift unknown
            "p_classifier": self.p_raw,
            "seen": np.zeros(n, dtype=bool),
            "cal": np.zeros(n),
            "w": np.full((n, 11), np.nan),
        }
        for name, array in arrays.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, array)
            elif len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one entry per trace ({n})")

    def terms(self) -> TraceTerms:
        """What each trace's contribution to the stored sums needs (`TraceTerms`)."""
        assert self.seen is not None
        assert self.cal is not None
        assert self.w is not None
        return TraceTerms(
            np.asarray(self.p, dtype=np.float64),
            np.asarray(self.labels, dtype=np.float64),
            np.full(len(self), np.nan),  # labels given at ingest are plain
            np.asarray(self.seen, dtype=bool),
            np.asarray(self.cal, dtype=np.float64),
            np.asarray(self.w, dtype=np.float64),
        )

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
    """A row of ``scorers``: an estimator serving one model, or a recalibration of it.

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
        model: the model key whose traces it scores (``""``: the traces naming none).
        finisher: how its estimator finishes a slice's sums (`SliceFinisher`); None when
            not known (registered before it was kept and not served since): such a
            scorer's slices get the honest worst case (`finisher_of`).
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
    model: str = ""
    finisher: SliceFinisher | None = None

    @property
    def fitted_on(self) -> str | None:
        """The model the estimator's training traces named (its card), or None."""
        return fitted_model(self.card)

    @property
    def other_model(self) -> bool:
        """True when the estimator was not fitted on this model's traces: its card names
        another model, or names none while it scores a named model."""
        return (self.fitted_on or "") != self.model
