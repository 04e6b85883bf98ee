"""White-box baseline scores (docs/definitions.md), one registered reduction each.

Every score is a sequence-level number computed from the same per-step arrays
as the entropy profile (`StepStats`), and declares its orientation:

* ``"confidence"``: higher means the response is more likely correct;
* ``"uncertainty"``: higher means it is more likely wrong.

`confidence_of` turns any score into the confidence orientation, which is what
the accuracy estimators (ATC, DoC, average confidence) expect.

Scores that need logprobs are NaN for traces that only carry precomputed
entropies (``token_entropy`` records).

Registering a score is the decorator where it is defined; nothing else to edit::

    @score("nll_avg", "uncertainty", "mean negative logprob of the sampled tokens (nats)")
    def _nll_avg(s: StepStats) -> FloatArray: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.segments import segment_max, segment_mean, segment_min, segment_sum
from entropy_sentinel.steps import StepStats
from entropy_sentinel.traces.batch import TraceBatch

__all__ = [
    "PAPER_SCORES",
    "SCORES",
    "Orientation",
    "ScoreSpec",
    "baseline_scores",
    "confidence_of",
    "score",
]

Orientation = Literal["confidence", "uncertainty"]


@dataclass(frozen=True)
class ScoreSpec:
    """A registered baseline score."""

    name: str
    orientation: Orientation
    description: str
    needs_logprobs: bool
    compute: Callable[[StepStats], FloatArray]


SCORES: dict[str, ScoreSpec] = {}
"""Every registered score by name, in registration order."""


def score(
    name: str, orientation: Orientation, description: str, *, needs_logprobs: bool = True
) -> Callable[[Callable[[StepStats], FloatArray]], Callable[[StepStats], FloatArray]]:
    """Register a sequence-level score computed from `StepStats`."""
    if orientation not in ("confidence", "uncertainty"):
        raise ConfigError(f"orientation {orientation!r}: use 'confidence' or 'uncertainty'")

    def register(fn: Callable[[StepStats], FloatArray]) -> Callable[[StepStats], FloatArray]:
        if name in SCORES:
            raise ConfigError(f"score {name!r} is registered twice")
        SCORES[name] = ScoreSpec(name, orientation, description, needs_logprobs, fn)
        return fn

    return register


def _per_trace_mask(s: StepStats, values: FloatArray) -> FloatArray:
    """NaN for traces without logprobs."""
    values[~s.batch.has_logprobs] = np.nan
    return values


# ----------------------------------------------------------- the paper's nine
@score("mean_entropy", "uncertainty", "mean step entropy H(t) (nats)", needs_logprobs=False)
def _mean_entropy(s: StepStats) -> FloatArray:
    return segment_mean(s.entropy, s.offsets)


@score("max_entropy", "uncertainty", "largest step entropy (nats)", needs_logprobs=False)
def _max_entropy(s: StepStats) -> FloatArray:
    return segment_max(s.entropy, s.offsets)


@score("sea", "uncertainty", "sum of step entropies, SEA (nats)", needs_logprobs=False)
def _sea(s: StepStats) -> FloatArray:
    return segment_sum(s.entropy, s.offsets)


@score("nll_avg", "uncertainty", "mean negative logprob of the sampled tokens (nats)")
def _nll_avg(s: StepStats) -> FloatArray:
    return -segment_mean(s.batch.sampled_logprob, s.offsets)


@score("nll_max", "uncertainty", "largest negative logprob of a sampled token (nats)")
def _nll_max(s: StepStats) -> FloatArray:
    return -segment_min(s.batch.sampled_logprob, s.offsets)


@score("nll_sum", "uncertainty", "total negative logprob of the response (nats)")
def _nll_sum(s: StepStats) -> FloatArray:
    return -segment_sum(s.batch.sampled_logprob, s.offsets)


@score("lntp", "confidence", "length-normalised token probability, exp(mean logprob)")
def _lntp(s: StepStats) -> FloatArray:
    return np.exp(segment_mean(s.batch.sampled_logprob, s.offsets))


@score("mtp", "confidence", "minimum probability of a sampled token")
def _mtp(s: StepStats) -> FloatArray:
    return np.exp(segment_min(s.batch.sampled_logprob, s.offsets))


@score("perplexity", "uncertainty", "exp(mean negative logprob)")
def _perplexity(s: StepStats) -> FloatArray:
    return np.exp(-segment_mean(s.batch.sampled_logprob, s.offsets))


# ------------------------------------------------------------- beyond the paper
@score("top2_margin", "confidence", "mean gap between the two most likely returned tokens")
def _top2_margin(s: StepStats) -> FloatArray:
    p1, p2 = s.top_two
    return _per_trace_mask(s, segment_mean(np.nan_to_num(p1 - p2), s.offsets))


@score("length", "uncertainty", "number of generated tokens", needs_logprobs=False)
def _length(s: StepStats) -> FloatArray:
    return s.batch.lengths.astype(np.float64)


@score("tail_mass", "uncertainty", "mean probability mass outside the returned top-k")
def _tail_mass(s: StepStats) -> FloatArray:
    return _per_trace_mask(s, segment_mean(np.nan_to_num(s.tail_mass), s.offsets))


PAPER_SCORES: tuple[str, ...] = (
    "mean_entropy",
    "max_entropy",
    "sea",
    "nll_avg",
    "nll_max",
    "nll_sum",
    "lntp",
    "mtp",
    "perplexity",
)
"""The nine white-box scores the paper compares against."""


def baseline_scores(
    traces: TraceBatch | StepStats,
    names: tuple[str, ...] | None = None,
    *,
    mode: str = "topk",
    precision: str = "float32",
) -> dict[str, FloatArray]:
    """Compute baseline scores: ``{name: float64 array (n_traces,)}``.

    Args:
        traces: a `TraceBatch`, or its `StepStats` to share already computed steps
            (``StepStats(batch).share_passes()`` before the profile is computed from it
            also shares the pass over the top-k matrix).
        names: which scores (default: all of `SCORES`, in registration order).
        mode, precision: as for `entropy_profile` (entropy-based scores use them).

    >>> from entropy_sentinel import read_traces
    >>> b = read_traces([{"id": "a", "token_entropy": [0.5, 1.5]}])
    >>> s = baseline_scores(b, ("mean_entropy", "nll_avg"))
    >>> float(s["mean_entropy"][0]), bool(np.isnan(s["nll_avg"][0]))
    (1.0, True)
    """
    stats = (
        traces
        if isinstance(traces, StepStats)
        else StepStats(traces, mode, precision=precision).share_passes()
    )
    chosen = tuple(SCORES) if names is None else names
    unknown = [n for n in chosen if n not in SCORES]
    if unknown:
        raise ConfigError(f"unknown score(s) {unknown}; known: {list(SCORES)}")
    return {name: SCORES[name].compute(stats) for name in chosen}


def confidence_of(name: str, values: FloatArray) -> FloatArray:
    """Orient score ``name`` so that higher means more likely correct.

    Uncertainty scores are negated; confidence scores are returned unchanged.
    """
    if name not in SCORES:
        raise ConfigError(f"unknown score {name!r}; known: {list(SCORES)}")
    return values if SCORES[name].orientation == "confidence" else -values
