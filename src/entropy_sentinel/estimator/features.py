"""Feature sets for the correctness estimator, and the trace signature they depend on.

A feature set names the columns of the matrix ``X`` a `CorrectnessEstimator`
is fitted on (docs/definitions.md):

=====================  ==============================================================
``profile``            the 11-D entropy profile (`FEATURE_NAMES`), nats
``profile10``          the profile without ``h_sea`` (the paper's 10-D set)
``sea``                ``h_sea`` alone
``profile+baselines``  the profile, then the logprob baseline scores that are not
                       already profile columns: `BASELINE_FEATURES` (needs logprobs)
=====================  ==============================================================

``lntp`` and ``perplexity`` are left out of ``profile+baselines`` because they are
exact monotone transforms of ``nll_avg`` (``exp(-nll_avg)``, ``exp(nll_avg)``);
``mean_entropy``, ``max_entropy`` and ``sea`` are profile columns already.

The numbers in ``X`` depend on where the per-step entropies came from: computed
from the top-k logprobs a server returned (and then on ``k`` and the entropy
mode) or precomputed (e.g. full-vocabulary entropies). `TraceSignature` records
that, so that an estimator fitted on one kind of traces refuses the other with
an `ArtifactMismatchError` instead of returning numbers on a different scale.

>>> from entropy_sentinel import read_traces
>>> b = read_traces([{"id": "a", "token_entropy": [0.5, 1.5]}])
>>> featurize(b, "profile10").shape, feature_names("sea")
((1, 10), ('h_sea',))
>>> trace_signature(b)
TraceSignature(source='precomputed', k=0, legacy=False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from entropy_sentinel._typing import BoolArray, FloatArray
from entropy_sentinel.errors import ArtifactMismatchError, ConfigError
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.scores import baseline_scores
from entropy_sentinel.steps import StepStats, check_mode
from entropy_sentinel.traces.batch import TraceBatch

__all__ = [
    "BASELINE_FEATURES",
    "FEATURE_SETS",
    "K_TOLERANCE",
    "LEGACY_TOLERANCE",
    "FeatureSet",
    "TraceSignature",
    "check_feature_set",
    "feature_names",
    "featurize",
    "trace_signature",
]

FeatureSet = Literal["profile", "profile10", "sea", "profile+baselines"]
FEATURE_SETS: tuple[str, ...] = get_args(FeatureSet)

BASELINE_FEATURES: tuple[str, ...] = (
    "nll_avg",
    "nll_max",
    "nll_sum",
    "mtp",
    "top2_margin",
    "length",
    "tail_mass",
)
"""Baseline scores appended to the profile by the ``profile+baselines`` feature set."""

_NAMES: dict[str, tuple[str, ...]] = {
    "profile": FEATURE_NAMES,
    "profile10": FEATURE_NAMES[:10],
    "sea": ("h_sea",),
    "profile+baselines": FEATURE_NAMES + BASELINE_FEATURES,
}
_COLUMNS: dict[str, list[int]] = {
    "profile": list(range(11)),
    "profile10": list(range(10)),
    "sea": [FEATURE_NAMES.index("h_sea")],
}

LEGACY_TOLERANCE = 0.8
"""Version 1's rule: a trace whose widest step has at least this fraction of ``k``."""

K_TOLERANCE = 0.75
"""A trace whose record does not state its ``k`` matches the training ``k`` when its
widest step has at least this fraction of it: servers return fewer alternatives than
asked on some steps (llama-cpp-python merges alternatives that decode to the same
string: 15-20 per step for top_logprobs=20 in the recorded SmolLM2 answers)."""


def check_feature_set(name: str) -> FeatureSet:
    """Return ``name`` if it is a known feature set, else raise `ConfigError`."""
    if name not in FEATURE_SETS:
        raise ConfigError(f"feature set {name!r} is unknown; use one of {list(FEATURE_SETS)}")
    return name  # type: ignore[return-value]


def feature_names(feature_set: str) -> tuple[str, ...]:
    """Column names of ``X`` for ``feature_set``, in order."""
    return _NAMES[check_feature_set(feature_set)]


def featurize(
    traces: TraceBatch | StepStats,
    feature_set: str = "profile",
    mode: str = "topk",
    *,
    precision: str = "float32",
    profile: FloatArray | None = None,
) -> FloatArray:
    """The feature matrix ``(n_traces, len(feature_names(feature_set)))``, float64.

    Args:
        traces: a `TraceBatch`, or its `StepStats` (its entropy mode must be ``mode``).
        feature_set: one of `FEATURE_SETS`.
        mode: entropy mode (``topk``, ``topk_renorm``, ``topk_tail``).
        precision: as for `entropy_profile`.
        profile: the entropy profile of these traces, ``(n_traces, 11)``, when the
            caller has computed it already (`entropy_profile` of the same `StepStats`):
            it is used instead of being computed again.

    Raises:
        ConfigError: unknown feature set or mode; ``profile+baselines`` on traces
            that carry only precomputed entropies (their logprob scores are unknown).
        ArtifactMismatchError: a `StepStats` computed in another entropy mode.
    """
    check_feature_set(feature_set)
    check_mode(mode)
    if isinstance(traces, StepStats):
        if traces.mode != mode:
            raise ArtifactMismatchError(
                f"the step statistics were computed in entropy mode {traces.mode!r}, but the "
                f"features need mode {mode!r}; build StepStats(batch, {mode!r})"
            )
        stats = traces
    else:
        stats = StepStats(traces, mode, precision=precision)
    if profile is None:
        profile = entropy_profile(stats)
    elif profile.shape != (len(stats.batch), len(FEATURE_NAMES)):
        raise ConfigError(
            f"profile has shape {profile.shape}, but these {len(stats.batch)} traces need "
            f"({len(stats.batch)}, {len(FEATURE_NAMES)}): pass entropy_profile() of them"
        )
    if feature_set != "profile+baselines":
        return np.ascontiguousarray(profile[:, _COLUMNS[feature_set]])
    scores = baseline_scores(stats, BASELINE_FEATURES)
    extra = np.column_stack([scores[name] for name in BASELINE_FEATURES])
    missing = np.isnan(extra).any(axis=1)
    if missing.any():
        first = stats.batch.ids[int(np.flatnonzero(missing)[0])]
        raise ConfigError(
            f"feature set 'profile+baselines' needs logprobs, but {int(missing.sum())} "
            f"trace(s) (first: {first!r}) carry only precomputed entropies; use "
            "features='profile' for such traces"
        )
    return np.hstack([profile, extra])


@dataclass(frozen=True, slots=True)
class TraceSignature:
    """Where the training traces' per-step entropies come from.

    Attributes:
        source: ``"logprobs"`` (computed from the returned top-k alternatives) or
            ``"precomputed"`` (given as ``token_entropy``, e.g. full-vocabulary).
        k: the number of top logprobs the training traces were asked for (the widest
            `TraceBatch.trace_k` among them; 0 for precomputed).

    ``k`` is a property of each trace, not of a batch (`TraceBatch.trace_k`): a trace
    is comparable with the training traces when its entropies come from the same source
    and, for logprobs, its ``k`` is the training ``k`` or wider (wider traces are cut to
    the training ``k`` exactly, `conform`). Narrower steps are normal (llama-cpp-python
    merges alternatives that decode alike; answers may be a token long), so a trace
    whose record does not state its ``k`` is refused only when its widest step has fewer
    than `K_TOLERANCE` of the training ``k`` alternatives; a trace whose record states a
    smaller ``k`` than the training one is refused.
    """

    source: Literal["logprobs", "precomputed"]
    k: int
    legacy: bool = False
    """True for the signature of an estimator from a version-1 artifact, whose ``k`` is the
    widest step of its training batch (which counts an appended sampled token, so 21 for
    llama-cpp-python's top-20): its traces are judged as version 1 judged them, each by its
    own widest step, between `LEGACY_TOLERANCE` of ``k`` and ``k``, and never cut."""

    def refused(self, batch: TraceBatch) -> BoolArray:
        """Per trace: True where the estimator cannot score it (see the class docstring)."""
        has = batch.has_logprobs
        if self.source == "precomputed":
            return np.asarray(has, dtype=bool)
        if self.legacy:
            widest = batch.widest_step
            bad = (widest > self.k) | (widest < math.ceil(LEGACY_TOLERANCE * self.k))
            return np.asarray(~has | bad, dtype=bool)
        stated = batch.requested_k
        narrow = np.where(
            stated > 0, stated < self.k, batch.inferred_k < math.ceil(K_TOLERANCE * self.k)
        )
        return np.asarray(~has | narrow, dtype=bool)

    def why(self, batch: TraceBatch, refused: BoolArray | None = None) -> str:
        """The reason the refused traces of ``batch`` cannot be scored ('' if none is)."""
        refused = self.refused(batch) if refused is None else refused
        if not refused.any():
            return ""
        idx = np.flatnonzero(refused)
        first = batch.ids[int(idx[0])]
        has = batch.has_logprobs[idx]
        if self.source == "precomputed" or not has.all():
            other = "logprobs" if self.source == "precomputed" else "precomputed entropies"
            return (
                f"the estimator was fitted on traces with {self._describe()}, but "
                f"{idx.shape[0]} trace(s) (first: {first!r}) carry {other}; their entropies "
                "are on another scale. Fit an estimator on traces like these."
            )
        k = int(batch.trace_k[idx[0]])
        return (
            f"the estimator was fitted on top-{self.k} logprobs, but {idx.shape[0]} trace(s) "
            f"(first: {first!r}, top-{k}) carry fewer alternatives per step; truncated "
            f"entropies from another k are not comparable. Request top_logprobs={self.k}, or "
            f"fit on top-{k} traces."
        )

    def check(self, batch: TraceBatch) -> None:
        """Raise `ArtifactMismatchError` naming the traces the estimator cannot score."""
        if len(batch):
            reason = self.why(batch)
            if reason:
                raise ArtifactMismatchError(reason)

    def conform(self, batch: TraceBatch) -> TraceBatch:
        """``batch`` with steps wider than ``k`` cut to the ``k`` most probable alternatives
        (`TraceBatch.truncate_topk`: exactly what a top-``k`` request returns)."""
        if self.source != "logprobs" or self.k == 0 or self.legacy:
            return batch
        return batch.truncate_topk(self.k)

    def _describe(self) -> str:
        if self.source == "logprobs":
            return f"top-{self.k} logprobs"
        return "precomputed entropies"


def trace_signature(batch: TraceBatch) -> TraceSignature:
    """The `TraceSignature` of a batch; `ConfigError` if it mixes sources."""
    has = batch.has_logprobs
    if has.all() and len(batch):
        return TraceSignature("logprobs", int(batch.trace_k.max()))
    if not has.any():
        return TraceSignature("precomputed", 0)
    n_pre = int((~has).sum())
    first = batch.ids[int(np.flatnonzero(~has)[0])]
    raise ConfigError(
        f"the traces mix logprobs and precomputed entropies ({n_pre} of {len(batch)} carry "
        f"only token_entropy, first: {first!r}); their entropies are on different scales. "
        "Fit on one kind of traces."
    )
