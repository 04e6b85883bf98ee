"""`Scorer`: the loaded estimator, the scorer it counts traces in, and rescoring.

For a batch of validated traces, `Scorer.score` computes the per-step entropies once
(`StepStats` in the estimator's entropy mode), the 11 profile features that are
stored with every trace, the estimator's own input ``X`` (its `featurize`, given that
profile so that it is not computed twice), P(correct) from the
estimator (``p_raw``), and ``p`` after the active recalibration, if any. The trace
signature (entropy source and top-k width) is checked per trace (`Scorer.mismatch`)
before, so one odd trace cannot make a whole group fail the estimator's check.

Which scorer counts new traces: the *active* one (``sentinel_meta``) when it belongs
to this estimator (the bare estimator or a recalibration of it), else this
estimator's own bare scorer (another instance runs another model: traces stay
separate until one of them rescores). At start, `Scorer.load` registers the
estimator and activates it unless the active scorer already belongs to it (a
restart keeps a recalibration).

`Scorer.rescore_pending` moves traces counted by other scorers to the active one:
same estimator, new calibration -> ``p = g(p_raw)``, no features needed; another
estimator with the same entropy mode -> P recomputed from the stored features.
Traces whose top-k width or source the estimator refuses stay where they are.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import SentinelError
from entropy_sentinel.estimator import CorrectnessEstimator, feature_names
from entropy_sentinel.estimator.features import TraceSignature
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.service.recalibration import apply_calibration
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch
from entropy_sentinel.traces.parse import Parsed
from entropy_sentinel.traces.read import assemble

__all__ = ["Scorer", "Scores", "file_sha256", "trace_k"]

log = logging.getLogger("entropy_sentinel.service.scoring")

_K_TOLERANCE = 0.8  # the estimator's own tolerance for the top-k width (features module)
_REFRESH_SECONDS = 2.0


@dataclass(frozen=True, eq=False)
class Scores:
    """Scores of one batch; arrays have one row per trace."""

    features: FloatArray  # (n, 11) profile, FEATURE_NAMES order
    extra: Sequence[Mapping[str, float] | None]  # the estimator's non-profile inputs
    p_raw: FloatArray
    p: FloatArray
    scorer_id: int
    entropy_mode: str


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trace_k(trace: Parsed) -> int:
    """Top-k width of one parsed trace (`TraceBatch.trace_k`; 0: precomputed entropies)."""
    return int(assemble([trace]).trace_k[0])


class Scorer:
    """Scores traces with one estimator (see the module docstring).

    Thread-safe: the service's writer thread scores, the maintenance task rescores.
    """

    def __init__(self, estimator: CorrectnessEstimator, sha256: str, storage: Storage) -> None:
        self.estimator = estimator
        self.sha256 = sha256
        self.storage = storage
        # the columns of X: the feature set's, then any blend members' scores
        self.names: tuple[str, ...] = tuple(
            getattr(estimator, "input_names", feature_names(estimator.features))
        )
        self.extra_names = tuple(n for n in self.names if n not in FEATURE_NAMES)
        self.signature: TraceSignature | None = getattr(estimator, "signature_", None)
        self.base = storage.register_scorer(
            estimator_sha256=sha256,
            entropy_mode=estimator.entropy_mode,
            features=self.names,
            model_sd=float(estimator.model_sd_),
            card=estimator.card_,
        )
        self._lock = threading.Lock()
        self._current = self.base
        self._checked_at = -np.inf

    @classmethod
    def load(cls, path: str | Path, storage: Storage) -> Scorer:
        """Load an artifact, register it, and activate it (see the module docstring)."""
        estimator = CorrectnessEstimator.load(path)
        scorer = cls(estimator, file_sha256(path), storage)
        active = storage.active_scorer()
        if active is None or active.estimator_sha256 != scorer.sha256:
            if active is not None:
                log.warning(
                    "model changed: estimates now use %s (sha256 %s...); traces scored by "
                    "scorer %d (sha256 %s...) are rescored in the background where their "
                    "features allow",
                    path,
                    scorer.sha256[:12],
                    active.id,
                    active.estimator_sha256[:12],
                )
            storage.activate(scorer.base.id)
        scorer.refresh(force=True)
        return scorer

    # ----------------------------------------------------------- scorer choice
    def refresh(self, *, force: bool = False) -> ScorerInfo:
        """The scorer new traces are counted in (re-read at most every 2 s)."""
        with self._lock:
            now = time.monotonic()
            if force or now - self._checked_at >= _REFRESH_SECONDS:
                active = self.storage.active_scorer()
                if active is not None and active.estimator_sha256 == self.sha256:
                    self._current = active
                else:
                    self._current = self.base
                self._checked_at = now
            return self._current

    # ------------------------------------------------------------------ scoring
    def mismatch(self, trace: Parsed) -> str | None:
        """Why the estimator refuses this trace (entropy source or top-k width), or None."""
        sig = self.signature
        if sig is None:
            return None
        return sig.why(assemble([trace])) or None

    def check(self, traces: Sequence[Parsed]) -> tuple[list[str | None], list[int]]:
        """`mismatch` and `trace_k` of many traces at once (one batch, not one per trace)."""
        if not traces:
            return [], []
        batch = assemble(list(traces))
        ks = batch.trace_k.tolist()
        sig = self.signature
        if sig is None:
            return [None] * len(traces), ks
        refused = sig.refused(batch).tolist()
        return [self.mismatch(t) if r else None for t, r in zip(traces, refused, strict=True)], ks

    def score(self, traces: Sequence[Parsed], counted_in: ScorerInfo | None = None) -> Scores:
        """Features and P(correct) of ``traces`` (each accepted by `mismatch`).

        ``counted_in``: the scorer whose calibration applies (default: `refresh`).
        """
        scorer = self.refresh() if counted_in is None else counted_in
        return self._score_batch(assemble(list(traces)), scorer)

    def _score_batch(self, batch: TraceBatch, scorer: ScorerInfo) -> Scores:
        est = self.estimator
        if self.signature is not None:
            batch = self.signature.conform(batch)  # wider traces cut to the estimator's k
        stats = StepStats(batch, est.entropy_mode)
        profile = entropy_profile(stats)
        X = est.featurize(stats, profile=profile)  # the profile is reused, not recomputed
        p_raw = np.ascontiguousarray(est.predict_proba(X)[:, 1], dtype=np.float64)
        extra: list[Mapping[str, float] | None] = [None] * len(batch)
        if self.extra_names:
            cols = [self.names.index(n) for n in self.extra_names]
            extra = [dict(zip(self.extra_names, row.tolist(), strict=True)) for row in X[:, cols]]
        return Scores(
            features=profile,
            extra=extra,
            p_raw=p_raw,
            p=apply_calibration(scorer.calibration, p_raw),
            scorer_id=scorer.id,
            entropy_mode=est.entropy_mode,
        )

    # ---------------------------------------------------------------- rescoring
    def _predict_from_columns(
        self, features: FloatArray, extras: Sequence[Mapping[str, float] | None], _p: FloatArray
    ) -> FloatArray:
        cols = []
        for name in self.names:
            if name in FEATURE_NAMES:
                cols.append(features[:, FEATURE_NAMES.index(name)])
            else:
                cols.append(
                    np.array([np.nan if e is None else e.get(name, np.nan) for e in extras])
                )
        X = np.column_stack(cols)
        bad = np.isnan(X).any(axis=1)
        p = np.full(X.shape[0], np.nan)
        if (~bad).any():
            p[~bad] = self.estimator.predict_proba(X[~bad])[:, 1]
        if bad.any():
            raise SentinelError(
                f"{int(bad.sum())} stored traces lack the inputs {list(self.extra_names)} this "
                "estimator needs; they cannot be rescored"
            )
        return p

    def rescore_pending(self, *, limit: int = 2000, max_chunks: int | None = None) -> int:
        """Move traces of other scorers to the active one; returns how many moved."""
        active = self.storage.active_scorer()
        if active is None or active.estimator_sha256 != self.sha256:
            return 0  # another model is active: its own instance rescores
        moved = 0
        for sources, rescorer, k_range in self._plans(active):
            chunks = 0
            while max_chunks is None or chunks < max_chunks:
                n = self.storage.rescore(
                    active.id,
                    sources,
                    rescorer,
                    calibrate=partial(apply_calibration, active.calibration),
                    k_range=k_range,
                    limit=limit,
                )
                moved += n
                chunks += 1
                if n < limit:
                    break
        return moved

    def pending(self) -> int:
        """Traces that `rescore_pending` would still move."""
        active = self.storage.active_scorer()
        if active is None or active.estimator_sha256 != self.sha256:
            return 0
        return sum(self.storage.pending_rescore(s, k) for s, _, k in self._plans(active))

    def _plans(self, active: ScorerInfo) -> list[tuple[list[int], Any, tuple[int, int] | None]]:
        same, other = [], []
        for s in self.storage.scorers():
            if s.id == active.id or s.entropy_mode != active.entropy_mode:
                continue
            if s.estimator_sha256 == self.sha256:
                same.append(s.id)
            elif not self.extra_names or tuple(s.features) == self.names:
                other.append(s.id)
        plans: list[tuple[list[int], Any, tuple[int, int] | None]] = []
        if same:
            plans.append((same, None, None))
        if other:
            sig = self.signature
            if sig is None:
                k_range = None
            elif sig.source == "precomputed":
                k_range = (0, 0)
            else:
                k_range = (int(np.ceil(_K_TOLERANCE * sig.k)), sig.k)
            plans.append((other, self._predict_from_columns, k_range))
        return plans
