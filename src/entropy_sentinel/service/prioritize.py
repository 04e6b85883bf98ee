"""Labelling priorities: which slices to label next, and which responses within them.

**Slices.** For each value ``s`` of the ``by`` dimension in the time range, with
``n_s`` traces (``N`` in all), estimated accuracy ``A_s`` (label-corrected when the
slice has at least two labels, else label-free) and interval half-width ``u_s``::

    gap_s      = max(0, target - A_s)       target: the all-traffic estimate (or given)
    priority_s = (n_s / N) * u_s * (gap_s + u_s)

Traffic share weights impact; ``u_s`` is what labels shrink; ``gap_s + u_s`` is how far
below target the slice may plausibly be. A slice confidently above target keeps a
small priority (``share * u^2``), so no slice is never checked. Slices are ranked by
priority, and the budget is split in proportion to it (largest remainders, no slice
given more unlabelled traces than it has; what one cannot take goes to the next).

**Responses.** Within a slice, a simple random sample without replacement of its
unlabelled traces in the range (seeded: the same call gives the same list). Uniform
sampling is deliberate: the label-corrected (prediction-powered) estimate the
service reports is unbiased only when a slice's labelled traces are a uniform sample
of it. Uncertainty-weighted choices (active testing) would need inverse-probability
weights that the stored aggregates do not carry. A slice needs two labels for a
label-corrected interval.

The export (CSV or JSONL) has one row per response with an empty ``correct`` column
for the annotator; ``sentinel labels import`` reads the same file back.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.estimates import slice_stats
from entropy_sentinel.service.json_limits import load_stored
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.tables import ALL, trace_slices, traces
from entropy_sentinel.timeutil import format_instant

__all__ = ["LabelRequest", "Priorities", "SlicePriority", "prioritize"]

_MIN_LABELS_FOR_PPI = 2
_IN_CHUNK = 500


@dataclass(frozen=True)
class SlicePriority:
    """One slice's ranking inputs and its share of the budget (fractions in [0, 1])."""

    rank: int
    dimension: str
    value: str
    n: int
    n_unlabelled: int
    n_labelled: int
    estimate: float
    lower: float
    upper: float
    gap: float
    share: float
    uncertainty: float
    priority: float
    allocated: int


@dataclass(frozen=True)
class LabelRequest:
    """One response to label: its trace, slice, P(correct), and, where the service
    stores text and the caller may see it, its prompt and answer."""

    trace_id: str
    slice_rank: int
    dimension: str
    value: str
    timestamp: str
    p_correct: float
    slice: dict[str, str]
    meta: dict[str, Any]
    model: str = ""
    prompt: Any = None
    answer: str | None = None


@dataclass(frozen=True)
class Priorities:
    """Ranked slices and the responses to label, for one budget."""

    by: str
    budget: int
    target: float
    since: float
    until: float
    slices: tuple[SlicePriority, ...]
    requests: tuple[LabelRequest, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "budget": self.budget,
            "target": _num(self.target),
            "since": format_instant(self.since),
            "until": format_instant(self.until),
            "slices": [
                {k: _num(v) if isinstance(v, float) else v for k, v in asdict(s).items()}
                for s in self.slices
            ],
            # built field by field: asdict would deep-copy (and recurse into) meta
            "requests": [
                {f.name: getattr(r, f.name) for f in fields(LabelRequest)} for r in self.requests
            ],
        }

    def requests_frame(self) -> pd.DataFrame:
        """One row per response, with an empty ``correct`` column for the annotator."""
        rows = [
            {
                "id": r.trace_id,
                "correct": "",
                "model": r.model,
                "slice_rank": r.slice_rank,
                "dimension": r.dimension,
                "value": r.value,
                "timestamp": r.timestamp,
                "p_correct": r.p_correct,
                "slice": json.dumps(r.slice, ensure_ascii=False),
                "meta": json.dumps(r.meta, ensure_ascii=False),
            }
            for r in self.requests
        ]
        columns = [
            "id",
            "correct",
            "model",
            "slice_rank",
            "dimension",
            "value",
            "timestamp",
            "p_correct",
            "slice",
            "meta",
        ]
        return pd.DataFrame(rows, columns=columns)


def prioritize(
    db: Database,
    scorer: ScorerInfo,
    *,
    by: str,
    budget: int,
    since: float,
    until: float,
    target: float | None = None,
    level: float = 0.95,
    seed: int = 0,
) -> Priorities:
    """Rank the slices of ``by`` in ``[since, until)`` and pick responses (module docstring)."""
    if budget < 1:
        raise ConfigError(f"budget={budget!r} must be >= 1 (responses to label)")
    if target is not None and not 0.0 <= target <= 1.0:
        raise ConfigError(f"target={target!r} must be an accuracy in [0, 1]")
    stats = slice_stats(db, scorer.id, by, since, until)
    overall = slice_stats(db, scorer.id, ALL, since, until).get(ALL, SliceStats())
    tgt = overall.estimate if target is None else target
    total = sum(s.n for s in stats.values())
    ranked: list[tuple[float, str, SliceStats, float, float, float]] = []
    for value, s in stats.items():
        labelled = s.n_labelled >= _MIN_LABELS_FOR_PPI
        iv = s.ppi_interval(level) if labelled else s.interval(level, scorer.model_sd)
        half = iv.half_width if math.isfinite(iv.half_width) else 0.5
        gap = max(0.0, tgt - iv.estimate) if math.isfinite(tgt) else 0.0
        share = s.n / total if total else 0.0
        ranked.append((share * half * (gap + half), value, s, gap, share, half))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    available = [s.n - s.n_labelled for _, _, s, *_ in ranked]
    alloc = _allocate(budget, np.array([r[0] for r in ranked]), np.array(available))
    slices = []
    for rank, ((priority, value, s, gap, share, half), k) in enumerate(
        zip(ranked, alloc.tolist(), strict=True), start=1
    ):
        labelled = s.n_labelled >= _MIN_LABELS_FOR_PPI
        iv = s.ppi_interval(level) if labelled else s.interval(level, scorer.model_sd)
        slices.append(
            SlicePriority(
                rank=rank,
                dimension=by,
                value=value,
                n=s.n,
                n_unlabelled=s.n - s.n_labelled,
                n_labelled=s.n_labelled,
                estimate=iv.estimate,
                lower=iv.lower,
                upper=iv.upper,
                gap=gap,
                share=share,
                uncertainty=half,
                priority=priority,
                allocated=int(k),
            )
        )
    rng = np.random.default_rng(seed)
    requests: list[LabelRequest] = []
    for sp in slices:
        if sp.allocated:
            requests.extend(_sample(db, scorer, sp, since, until, rng))
    return Priorities(by, budget, tgt, since, until, tuple(slices), tuple(requests))


def _allocate(budget: int, weights: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Split ``budget`` in proportion to ``weights``, capped by ``available``."""
    alloc = np.zeros(weights.shape[0], dtype=np.int64)
    left = min(budget, int(available.sum()))
    open_ = available > 0
    while left > 0 and open_.any():
        w = np.where(open_, weights, 0.0)
        if w.sum() <= 0:
            w = open_.astype(np.float64)  # all priorities zero: spread evenly
        share = w / w.sum() * left
        take = np.minimum(np.floor(share).astype(np.int64), available - alloc)
        rest = left - int(take.sum())
        order = np.argsort(-(share - np.floor(share)), kind="stable")
        for i in order:
            if rest == 0:
                break
            if open_[i] and alloc[i] + take[i] < available[i]:
                take[i] += 1
                rest -= 1
        if take.sum() == 0:
            break
        alloc += take
        left -= int(take.sum())
        open_ = alloc < available
    return alloc


def _sample(
    db: Database,
    scorer: ScorerInfo,
    sp: SlicePriority,
    since: float,
    until: float,
    rng: np.random.Generator,
) -> list[LabelRequest]:
    # a bucket belongs to the window when it starts in it: [since, until)
    lo, hi = int(since), math.ceil(until)
    if sp.dimension == ALL:
        query = sa.select(traces.c.id).where(traces.c.bucket >= lo, traces.c.bucket < hi)
    else:
        query = (
            sa.select(traces.c.id)
            .join(trace_slices, trace_slices.c.trace_pk == traces.c.id)
            .where(
                trace_slices.c.dimension == sp.dimension,
                trace_slices.c.value == sp.value,
                trace_slices.c.bucket >= lo,
                trace_slices.c.bucket < hi,
            )
        )
    query = query.where(traces.c.label.is_(None), traces.c.scorer_id == scorer.id)
    with db.read.connect() as conn:
        pks = np.array(sorted(r[0] for r in conn.execute(query)), dtype=np.int64)
        if pks.size == 0:
            return []
        chosen = rng.choice(pks, size=min(sp.allocated, pks.size), replace=False).tolist()
        cols = [traces.c.trace_id, traces.c.ts, traces.c.p, traces.c.slice, traces.c.meta]
        rows: list[Any] = []
        for start in range(0, len(chosen), _IN_CHUNK):
            part = chosen[start : start + _IN_CHUNK]
            rows.extend(conn.execute(sa.select(*cols).where(traces.c.id.in_(part))).all())
    rows.sort(key=lambda r: (r.ts, r.trace_id))
    return [
        LabelRequest(
            trace_id=r.trace_id,
            slice_rank=sp.rank,
            dimension=sp.dimension,
            value=sp.value,
            timestamp=format_instant(r.ts),
            p_correct=float(r.p),
            slice=load_stored(r.slice, {}),
            meta=load_stored(r.meta, {}),
            model=scorer.model,
        )
        for r in rows
    ]


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
