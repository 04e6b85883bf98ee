"""`Scorer`: the loaded estimator of one model, the scorer it counts traces in, rescoring.

A `Scorer` holds one model's `SentinelEstimator` (`load_estimator`: version-1
artifacts are migrated) and scores batches with its own `score`, so the service
computes exactly the library's per-response numbers. For a batch of validated traces,
`Scorer.score` computes the per-step entropies once (`StepStats` in the estimator's
entropy mode), the 11 profile features and the classifier's other inputs (both stored
with every trace), and, through `SentinelEstimator.score_inputs`, the estimator's
`TraceScores`: ``p_raw`` (its P(correct), before any recalibration), ``p_classifier``
(the smooth classifier P labelling designs draw with), ``seen`` and ``cal`` (the slice
value's calibration offset and its part) and ``w`` (the whitened profile, NaN when the
estimator has no shift reference); ``p`` is ``p_raw`` after the active recalibration,
if any. Each trace's signature (entropy source and top-k width) is checked alone
(`Scorer.mismatch`, `TraceSignature.why`) before, so one odd trace cannot make a
whole group fail; wider traces are cut to the estimator's k (`TraceSignature.conform`).

A `Scorer` serves one model key (``model``; ``""``: the traces that named none).
Which scorer counts the model's new traces: the model's *active* one (``models``
table) when it belongs to this estimator (the bare estimator or a recalibration of
it), else this estimator's own bare scorer (another instance runs another estimator
for the model: traces stay separate until one of them rescores). At start,
`Scorer.load` registers the estimator for the model (with its `SliceFinisher`, how it
finishes a slice's sums) and activates it unless the model's active scorer already
belongs to it (a restart keeps a recalibration).

`Scorer.rescore_pending` brings the model's stored traces to the active scorer:

* traces of this estimator stored before the service kept the per-trace terms
  (``p_classifier`` NULL: an upgraded database) are rescored in place from their
  stored features and slice values;
* same estimator, new calibration -> ``p = g(p_raw)``, nothing else changes;
* another estimator with the same entropy mode -> every term recomputed from the
  stored features and slice values (`SentinelEstimator.score_inputs`); traces whose
  top-k width or source it refuses stay where they are;
* the model's *waiting* traces (stored before it had an estimator) are scored from
  their stored per-step arrays (`score_steps`), exactly as at ingest.
"""

from __future__ import annotations

import dataclasses
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
import numpy.typing as npt

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import SentinelError
from entropy_sentinel.estimator import SentinelEstimator, TraceScores
from entropy_sentinel.estimator.artifact import load_estimator, read_card
from entropy_sentinel.estimator.features import TraceSignature
from entropy_sentinel.model_names import fitted_model
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.service.recalibration import apply_calibration
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.storage.store import Storage, WaitingScores
from entropy_sentinel.service.waiting import unpack_steps
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
    est: TraceScores  # the estimator's per-trace outputs (w: NaN rows when unknown)
    p: FloatArray  # est.p after the scorer's recalibration
    scorer_id: int
    entropy_mode: str

    @property
    def p_raw(self) -> FloatArray:
        """The estimator's P(correct), before any recalibration."""
        return self.est.p


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
    """Scores the traces of one model with one estimator (see the module docstring).

    Thread-safe: the service's writer thread scores, the maintenance task rescores.
    """

    def __init__(
        self,
        estimator: SentinelEstimator,
        sha256: str,
        storage: Storage,
        model: str = "",
        *,
        path: str | Path | None = None,
        card: Mapping[str, Any] | None = None,
    ) -> None:
        self.estimator = estimator
        self.sha256 = sha256
        self.storage = storage
        self.model = model
        self.path = None if path is None else Path(path)
        # the artifact's card (`read_card`): it records the model the training traces named
        self.card = dict(card) if card is not None else dict(estimator.card_)
        self.fitted_on = fitted_model(self.card)
        clf = estimator.classifier_
        # the columns of X: the feature set's, then any blend members' scores
        self.names: tuple[str, ...] = tuple(clf.input_names)
        self.extra_names = tuple(n for n in self.names if n not in FEATURE_NAMES)
        self.signature: TraceSignature | None = getattr(clf, "signature_", None)
        self.knows_shift = estimator.shift_ is not None
        self.base = storage.register_scorer(
            estimator_sha256=sha256,
            entropy_mode=estimator.entropy_mode,
            features=self.names,
            model_sd=float(clf.model_sd_),
            card=self.card,
            model=model,
            finisher=estimator.finisher(),
        )
        self._lock = threading.Lock()
        self._current = self.base
        self._checked_at = -np.inf

    @classmethod
    def load(cls, path: str | Path, storage: Storage, model: str = "") -> Scorer:
        """Load an artifact, register it for ``model``, and activate it (module docstring)."""
        estimator = load_estimator(path)
        card = read_card(path)
        return cls(estimator, file_sha256(path), storage, model, path=path, card=card).activate()

    def activate(self) -> Scorer:
        """Activate this estimator for its model unless the model's active scorer already
        belongs to it (a restart keeps a recalibration); returns self."""
        active = self.storage.active_scorer(self.model)
        if active is None or active.estimator_sha256 != self.sha256:
            if active is not None:
                log.warning(
                    "estimator changed for model %r: estimates now use %s (sha256 %s...); "
                    "traces scored by scorer %d (sha256 %s...) are rescored in the background "
                    "where their features allow",
                    self.model,
                    self.path,
                    self.sha256[:12],
                    active.id,
                    active.estimator_sha256[:12],
                )
            self.storage.activate(self.base.id)
        self.refresh(force=True)
        return self

    # ----------------------------------------------------------- scorer choice
    def refresh(self, *, force: bool = False) -> ScorerInfo:
        """The scorer new traces are counted in (re-read at most every 2 s)."""
        with self._lock:
            now = time.monotonic()
            if force or now - self._checked_at >= _REFRESH_SECONDS:
                active = self.storage.active_scorer(self.model)
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
        # the profile is reused, not recomputed
        X = est.classifier_.featurize(stats, profile=profile)
        extra: list[Mapping[str, float] | None] = [None] * len(batch)
        if self.extra_names:
            cols = [self.names.index(n) for n in self.extra_names]
            extra = [dict(zip(self.extra_names, row.tolist(), strict=True)) for row in X[:, cols]]
        scores = self._own(est.score_inputs(X, profile, batch.slice_values(est.slice_dim)))
        return Scores(
            features=profile,
            extra=extra,
            est=scores,
            p=apply_calibration(scorer.calibration, scores.p),
            scorer_id=scorer.id,
            entropy_mode=est.entropy_mode,
        )

    def _own(self, scores: TraceScores) -> TraceScores:
        """The estimator's scores as stored: ``w`` NaN (not known) without a shift
        reference, where the library puts zeros that its finish never reads."""
        if self.knows_shift:
            return scores
        return dataclasses.replace(scores, w=np.full(scores.w.shape, np.nan))

    def score_steps(self, items: Sequence[tuple[str, bytes, Mapping[str, str]]]) -> WaitingScores:
        """Features and scores of waiting traces from their stored steps and slices (the
        `Storage.score_waiting` callback): exactly what ingest would have computed."""
        parsed = [
            dataclasses.replace(unpack_steps(tid, data), slice=dict(slice_))
            for tid, data, slice_ in items
        ]
        batch = assemble(parsed)
        refused = np.zeros(len(parsed), dtype=bool)
        reasons = [""] * len(parsed)
        if self.signature is not None and len(batch):
            refused = self.signature.refused(batch)
            for i in np.flatnonzero(refused).tolist():
                reasons[i] = self.signature.why(batch.subset(np.array([i])))
        n = len(parsed)
        features = np.full((n, len(FEATURE_NAMES)), np.nan)
        out = _blank(n)
        extra: list[Mapping[str, float] | None] = [None] * n
        ok = np.flatnonzero(~refused)
        if ok.size:
            sc = self._score_batch(batch.subset(ok), self.base)
            features[ok] = sc.features
            out = _put(out, ok, sc.est)
            for row, i in enumerate(ok.tolist()):
                extra[i] = sc.extra[row]
        return WaitingScores(features, extra, out, self.estimator.entropy_mode, reasons)

    # ---------------------------------------------------------------- rescoring
    def _score_columns(
        self,
        features: FloatArray,
        extras: Sequence[Mapping[str, float] | None],
        slices: Sequence[Mapping[str, str]],
    ) -> TraceScores:
        """The estimator's scores of stored traces from their stored columns (the
        `Storage.rescore` callback): the classifier's inputs rebuilt in its column order."""
        cols = []
        for name in self.names:
            if name in FEATURE_NAMES:
                cols.append(features[:, FEATURE_NAMES.index(name)])
            else:
                cols.append(
                    np.array([np.nan if e is None else e.get(name, np.nan) for e in extras])
                )
        X = np.column_stack(cols) if cols else np.zeros((features.shape[0], 0))
        bad = np.isnan(X).any(axis=1) | np.isnan(features).any(axis=1)
        if bad.any():
            raise SentinelError(
                f"{int(bad.sum())} stored traces lack the inputs {list(self.names)} this "
                "estimator needs; they cannot be rescored"
            )
        dim = self.estimator.slice_dim
        values = [s.get(dim) for s in slices]
        return self._own(self.estimator.score_inputs(X, features, values))

    def rescore_pending(
        self,
        *,
        limit: int = 2000,
        max_chunks: int | None = None,
        names: Sequence[str] | None = None,
    ) -> int:
        """Move the model's traces of other scorers to the active one, and score its
        waiting traces (stored under ``names``: the model key and its aliases; default:
        the key); returns how many moved or were scored."""
        active = self.storage.active_scorer(self.model)
        if active is None or active.estimator_sha256 != self.sha256:
            return 0  # another estimator is active for the model: its own instance rescores
        moved = self._score_waiting(active, names or [self.model], limit, max_chunks)
        for plan in self._plans(active):
            chunks = 0
            while max_chunks is None or chunks < max_chunks:
                n = self.storage.rescore(
                    active.id,
                    plan.sources,
                    plan.rescorer,
                    calibrate=partial(apply_calibration, active.calibration),
                    k_range=plan.k_range,
                    stale_only=plan.stale_only,
                    limit=limit,
                )
                moved += n
                chunks += 1
                if n < limit:
                    break
        return moved

    def _score_waiting(
        self, active: ScorerInfo, names: Sequence[str], limit: int, max_chunks: int | None
    ) -> int:
        scored = chunks = 0
        calibrate = partial(apply_calibration, active.calibration)
        while max_chunks is None or chunks < max_chunks:
            n, refused = self.storage.score_waiting(
                active, names, self.score_steps, calibrate=calibrate, limit=min(limit, 500)
            )
            scored += n
            chunks += 1
            if refused:
                log.warning(
                    "%d waiting traces of model %r cannot be scored by its estimator (top-k "
                    "width or entropy source); they keep waiting (GET /v1/traces/ID says why)",
                    refused,
                    self.model,
                    extra={"model": self.model},
                )
            if n + refused < min(limit, 500):
                break
        if scored:
            log.info(
                "scored %d waiting traces of model %r",
                scored,
                self.model,
                extra={"model": self.model},
            )
        return scored

    def pending(self, names: Sequence[str] | None = None) -> int:
        """Traces that `rescore_pending` would still move or score."""
        active = self.storage.active_scorer(self.model)
        if active is None or active.estimator_sha256 != self.sha256:
            return 0
        moving = sum(
            self.storage.pending_rescore(p.sources, p.k_range, stale_only=p.stale_only)
            for p in self._plans(active)
        )
        return moving + self.storage.pending_waiting(names or [self.model], self.sha256)

    def _plans(self, active: ScorerInfo) -> list[_Plan]:
        same, other = [], []
        for s in self.storage.scorers():
            if s.id == active.id or s.entropy_mode != active.entropy_mode:
                continue
            if s.model != active.model:
                continue  # another model's traces: never scored by this estimator
            if s.estimator_sha256 == self.sha256:
                same.append(s.id)
            elif not self.extra_names or tuple(s.features) == self.names:
                other.append(s.id)
        # first the traces of this estimator stored without their per-trace terms (an
        # upgraded database), rescored from their columns; then recalibrations; then
        # other estimators' traces
        plans = [_Plan([active.id, *same], self._score_columns, None, stale_only=True)]
        if same:
            plans.append(_Plan(same, None, None))
        if other:
            sig = self.signature
            if sig is None:
                k_range = None
            elif sig.source == "precomputed":
                k_range = (0, 0)
            else:
                k_range = (int(np.ceil(_K_TOLERANCE * sig.k)), sig.k)
            plans.append(_Plan(other, self._score_columns, k_range))
        return plans


@dataclass(frozen=True)
class _Plan:
    """Traces to bring to the active scorer: those counted by ``sources`` (within
    ``k_range``; only those without per-trace terms with ``stale_only``), rescored by
    ``rescorer`` (None: same estimator, only the calibration changes)."""

    sources: list[int]
    rescorer: Any
    k_range: tuple[int, int] | None
    stale_only: bool = False


def _blank(n: int) -> TraceScores:
    """Scores of ``n`` traces not scored (NaN)."""
    nan = np.full(n, np.nan)
    blank = np.zeros(n, dtype=bool)
    return TraceScores(nan, nan.copy(), blank, nan.copy(), np.full((n, 11), np.nan))


def _put(into: TraceScores, rows: npt.NDArray[np.intp], part: TraceScores) -> TraceScores:
    """``into`` with the rows ``rows`` taken from ``part``."""
    out = {}
    for f in dataclasses.fields(TraceScores):
        a = np.array(getattr(into, f.name), copy=True)
        a[rows] = getattr(part, f.name)
        out[f.name] = a
    return TraceScores(**out)
