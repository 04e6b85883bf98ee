"""Labelling priorities: the open labelling *design* of a model and slice dimension.

A design says which responses to label so that the label-corrected estimates stay
unbiased: the library's own (`entropy_sentinel.estimator.design.plan`, what
`SentinelEstimator.design` calls), on the model's stored traces:

* **Candidates**: the model's unlabelled traces in ``[since, until)`` (counted by its
  active scorer), each with its slice value in ``by`` (``*``: all traffic).
* **Budget over slices** (`allocate`): at least ``minimum`` per slice, the rest in
  proportion to each slice's label-free interval half-width (of its candidates,
  finished by the model's estimator) times the square root of its size.
* **Responses within a slice**: drawn independently (Poisson sampling, seeded) with
  inclusion probabilities proportional to ``sqrt(P (1 - P))`` of the classifier's
  smooth P (``p_classifier``), mixed half and half with uniform (active inference,
  Zrnic and Candes 2024). Each drawn response is stored with its inclusion
  probability: a label for it carries that probability into the sums (a *designed*
  label, Hajek-weighted by ``1 / pi``); labels for other traces are *plain*.

`priorities` creates the design or returns the open one: one design is open per
(model, dimension); it is returned (its range, budget and seed, not the request's) while
any of its items is pending, and a new one is drawn when none is left or when asked
(``new``), closing the old. Its labels keep counting after it closes. Drawing reads
every unlabelled trace of the range once.

The export (CSV or JSONL) has one row per response with an empty ``correct`` column
for the annotator; ``sentinel labels import`` reads the same file back.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.design import plan
from entropy_sentinel.estimator.slices import word_of
from entropy_sentinel.service.estimates import slice_stats
from entropy_sentinel.service.json_limits import load_stored
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.slice_numbers import SliceSums, finish_slice
from entropy_sentinel.service.storage.buckets import TraceTerms
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.designs import (
    DesignCounts,
    DesignRow,
    close_design,
    design_counts,
    insert_design,
    open_design,
)
from entropy_sentinel.service.storage.tables import ALL, design_items, trace_slices, traces
from entropy_sentinel.timeutil import format_instant

__all__ = ["DesignInfo", "LabelRequest", "Priorities", "SlicePriority", "prioritize"]

_DESIGN_LOCK = 7_301_964_114  # pg_advisory_xact_lock key: one design drawn at a time
_MINIMUM = 5


@dataclass(frozen=True)
class SlicePriority:
    """One slice of a design (accuracies are fractions in [0, 1]).

    Attributes:
        rank: by ``priority``, highest first.
        n, n_labelled, n_unlabelled: traces of the slice in the range when the design was
            drawn; the unlabelled ones were its candidates.
        estimate, lower, upper: the label-free estimate and interval of the candidates.
        shift, shift_word: their shift score and its word.
        gap: ``max(0, target - estimate)``.
        share: the slice's part of all candidates.
        uncertainty: the interval's half-width (what the allocation weighs).
        priority: the allocation weight, ``uncertainty * sqrt(n_unlabelled)``.
        allocated: expected labels given to the slice (`allocate`).
        drawn: responses drawn in it.
    """

    rank: int
    dimension: str
    value: str
    n: int
    n_unlabelled: int
    n_labelled: int
    estimate: float
    lower: float
    upper: float
    shift: float
    shift_word: str
    gap: float
    share: float
    uncertainty: float
    priority: float
    allocated: int
    drawn: int


@dataclass(frozen=True)
class LabelRequest:
    """One drawn response to label: its trace, slice, P(correct), its inclusion
    probability in the design and its status, and, where the service stores text and
    the caller may see it, its prompt and answer."""

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
    design_id: int | None = None
    inclusion_probability: float | None = None
    status: str = "pending"


@dataclass(frozen=True)
class DesignInfo:
    """A design's identity and progress."""

    id: int
    size: int
    labelled: int
    skipped: int
    pending: int
    seed: int
    created_at: float


@dataclass(frozen=True)
class Priorities:
    """A design: its ranked slices and the responses to label."""

    by: str
    budget: int
    target: float
    since: float
    until: float
    slices: tuple[SlicePriority, ...]
    requests: tuple[LabelRequest, ...]
    design: DesignInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        design = None
        if self.design is not None:
            design = {
                **asdict(self.design),
                "created_at": format_instant(self.design.created_at),
            }
        return {
            "by": self.by,
            "budget": self.budget,
            "target": _num(self.target),
            "since": format_instant(self.since),
            "until": format_instant(self.until),
            "design": design,
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
        columns = [
            "id",
            "correct",
            "model",
            "slice_rank",
            "dimension",
            "value",
            "timestamp",
            "p_correct",
            "design_id",
            "inclusion_probability",
            "status",
            "slice",
            "meta",
        ]
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
                "design_id": r.design_id,
                "inclusion_probability": r.inclusion_probability,
                "status": r.status,
                "slice": json.dumps(r.slice, ensure_ascii=False),
                "meta": json.dumps(r.meta, ensure_ascii=False),
            }
            for r in self.requests
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
    minimum: int = _MINIMUM,
    new: bool = False,
    status: str = "pending",
) -> Priorities:
    """The open design of (``scorer.model``, ``by``), drawn now when there is none with
    pending items (or with ``new``); see the module docstring.

    Args:
        scorer: the model's active scorer (its traces are the candidates).
        by: slice dimension, or ``*`` for all traffic.
        budget: expected number of labels of a new design.
        since, until: the range of a new design, epoch seconds.
        target: accuracy the ``gap`` is measured from (default: the all-traffic estimate).
        level: interval level of the half-widths.
        seed: the draw's seed (same traces, same seed: same design).
        minimum: labels per slice before the rest is shared out.
        new: close the open design and draw a new one.
        status: which requests to list: ``pending`` (default) or ``all``.
    """
    if budget < 1:
        raise ConfigError(f"budget={budget!r} must be >= 1 (responses to label)")
    if target is not None and not 0.0 <= target <= 1.0:
        raise ConfigError(f"target={target!r} must be an accuracy in [0, 1]")
    if minimum < 0:
        raise ConfigError(f"minimum={minimum!r} must be >= 0")
    if status not in ("pending", "all"):
        raise ConfigError(f"status={status!r}: use 'pending' or 'all'")
    if not by:
        raise ConfigError("`by` must name a slice dimension (or '*' for all traffic)")
    with db.write.begin() as conn:
        if db.dialect == "postgresql":  # instances draw one design at a time
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_DESIGN_LOCK})"))
        row = open_design(conn, scorer.model, by)
        if row is not None and (new or design_counts(conn, row.id).pending == 0):
            close_design(conn, row.id, time.time())
            row = None
        if row is None:
            drawn = _draw(conn, db, scorer, by, budget, since, until, target, level, seed, minimum)
            if isinstance(drawn, Priorities):
                return drawn  # nothing to draw: nothing stored
            row = drawn
        counts = design_counts(conn, row.id)
    return _answer(db, scorer, row, counts, status)


def _draw(
    conn: sa.Connection,
    db: Database,
    scorer: ScorerInfo,
    by: str,
    budget: int,
    since: float,
    until: float,
    target: float | None,
    level: float,
    seed: int,
    minimum: int,
) -> DesignRow | Priorities:
    """Draw and store a new design (module docstring); when nothing is drawn (no
    candidates, or a draw that chose none), the empty answer, stored nowhere."""
    cand = _candidates(conn, scorer, by, since, until)
    values = sorted(set(cand.values))
    half: dict[tuple[str | None, ...], float] = {}
    numbers = {}
    for v in values:
        idx = np.flatnonzero(np.asarray(cand.values, dtype=object) == v)
        terms = cand.terms.take(idx)
        flat = terms.contributions().sum(axis=0)
        iv = finish_slice(scorer, SliceSums.from_columns(flat), level)
        numbers[v] = (iv, idx.size)
        half[(v,)] = (iv.upper - iv.lower) / 2.0
    design = plan(
        cand.ids,
        [(v,) for v in cand.values],
        cand.p_classifier,
        half,
        budget,
        minimum=minimum,
        seed=seed,
    )
    totals = slice_stats(db, scorer.id, by, since, until)
    overall = slice_stats(db, scorer.id, ALL, since, until).get(ALL, SliceSums(SliceStats()))
    tgt = finish_slice(scorer, overall, level).estimate if target is None else target
    n_cand = len(cand.ids)
    slices = []
    for v in values:
        iv, size = numbers[v]
        h = half[(v,)]
        total = totals.get(v)
        n = total.stats.n if total is not None else size
        slices.append(
            {
                "value": v,
                "n": n,
                "n_unlabelled": size,
                "n_labelled": max(0, n - size),
                "estimate": _num(iv.estimate),
                "lower": _num(iv.lower),
                "upper": _num(iv.upper),
                "shift": _num(iv.shift),
                "shift_word": word_of(iv),
                "gap": _num(max(0.0, tgt - iv.estimate)) if math.isfinite(tgt) else 0.0,
                "share": size / n_cand if n_cand else 0.0,
                "uncertainty": _num(h),
                "priority": _num(h * math.sqrt(size)),
                "allocated": int(design.allocation.get((v,), 0)),
            }
        )
    chosen = np.flatnonzero(design.chosen)
    items = [(cand.pks[i], cand.values[i], float(design.inclusion[i])) for i in chosen.tolist()]
    summary = {"target": _num(tgt), "slices": slices}
    if not items:
        empty = DesignRow(0, scorer.model, scorer.id, by, since, until, budget, minimum, seed,
                          level, summary, time.time(), None)  # fmt: skip
        answer = _answer_of(empty, DesignCounts(), [])
        return dataclasses.replace(answer, design=None)
    design_id = insert_design(
        conn,
        model=scorer.model,
        scorer_id=scorer.id,
        dimension=by,
        since=since,
        until=until,
        budget=budget,
        minimum=minimum,
        seed=seed,
        level=level,
        summary=summary,
        items=items,
    )
    row = open_design(conn, scorer.model, by)
    assert row is not None
    assert row.id == design_id
    return row


@dataclass(frozen=True)
class _Candidates:
    pks: list[int]
    ids: list[str]
    values: list[str]
    p_classifier: np.ndarray
    terms: TraceTerms


def _candidates(
    conn: sa.Connection, scorer: ScorerInfo, by: str, since: float, until: float
) -> _Candidates:
    """The model's unlabelled traces in the range, in storage order, with their terms."""
    # a bucket belongs to the range when it starts in it: [since, until)
    lo, hi = int(since), math.ceil(until)
    cols = [
        traces.c.id,
        traces.c.trace_id,
        traces.c.p,
        traces.c.p_classifier,
        traces.c.label,
        traces.c.label_pi,
        traces.c.seen,
        traces.c.cal,
        traces.c.w,
    ]
    if by == ALL:
        query = sa.select(*cols, sa.literal(ALL).label("value")).where(
            traces.c.bucket >= lo, traces.c.bucket < hi
        )
    else:
        query = (
            sa.select(*cols, trace_slices.c.value)
            .join(trace_slices, trace_slices.c.trace_pk == traces.c.id)
            .where(
                trace_slices.c.dimension == by,
                trace_slices.c.bucket >= lo,
                trace_slices.c.bucket < hi,
            )
        )
    query = query.where(traces.c.label.is_(None), traces.c.scorer_id == scorer.id)
    rows = conn.execute(query.order_by(traces.c.id)).all()
    p_cls = np.array(
        [r.p if r.p_classifier is None else r.p_classifier for r in rows], dtype=np.float64
    )
    return _Candidates(
        pks=[int(r.id) for r in rows],
        ids=[r.trace_id for r in rows],
        values=[str(r.value) for r in rows],
        p_classifier=p_cls,
        terms=TraceTerms.from_rows(rows),
    )


def _answer(
    db: Database, scorer: ScorerInfo, row: DesignRow, counts: DesignCounts, status: str
) -> Priorities:
    """A stored design as `Priorities`."""
    with db.read.connect() as conn:
        query = (
            sa.select(
                design_items.c.value,
                design_items.c.inclusion,
                design_items.c.status,
                traces.c.trace_id,
                traces.c.ts,
                traces.c.p,
                traces.c.slice,
                traces.c.meta,
            )
            .join(traces, traces.c.id == design_items.c.trace_pk)
            .where(design_items.c.design_id == row.id)
        )
        if status == "pending":
            query = query.where(design_items.c.status == "pending")
        items = conn.execute(query).all()
        drawn = conn.execute(
            sa.select(design_items.c.value).where(design_items.c.design_id == row.id)
        ).scalars()
        return _answer_of(row, counts, items, list(drawn), model=scorer.model)


def _answer_of(
    row: DesignRow,
    counts: DesignCounts,
    items: Sequence[Any],
    drawn_values: list[str] | None = None,
    *,
    model: str = "",
) -> Priorities:
    """`Priorities` of a design from its row, counts and items (see `_answer`)."""
    summary = row.summary
    drawn: dict[str, int] = {}
    for v in drawn_values or []:
        drawn[v] = drawn.get(v, 0) + 1
    ranked = sorted(
        summary.get("slices", []),
        key=lambda s: (-(s.get("priority") or 0.0), str(s.get("value"))),
    )
    rank_of: dict[str, int] = {}
    slices = []
    for rank, s in enumerate(ranked, start=1):
        rank_of[s["value"]] = rank
        slices.append(
            SlicePriority(
                rank=rank,
                dimension=row.dimension,
                value=str(s["value"]),
                n=int(s.get("n") or 0),
                n_unlabelled=int(s.get("n_unlabelled") or 0),
                n_labelled=int(s.get("n_labelled") or 0),
                estimate=_float(s.get("estimate")),
                lower=_float(s.get("lower")),
                upper=_float(s.get("upper")),
                shift=_float(s.get("shift")),
                shift_word=str(s.get("shift_word") or ""),
                gap=_float(s.get("gap")),
                share=_float(s.get("share")),
                uncertainty=_float(s.get("uncertainty")),
                priority=_float(s.get("priority")),
                allocated=int(s.get("allocated") or 0),
                drawn=drawn.get(s["value"], 0),
            )
        )
    requests = sorted(
        (
            LabelRequest(
                trace_id=r.trace_id,
                slice_rank=rank_of.get(r.value, 0),
                dimension=row.dimension,
                value=r.value,
                timestamp=format_instant(r.ts),
                p_correct=float(r.p),
                slice=load_stored(r.slice, {}),
                meta=load_stored(r.meta, {}),
                model=model,
                design_id=row.id,
                inclusion_probability=float(r.inclusion),
                status=r.status,
            )
            for r in items
        ),
        key=lambda q: (q.slice_rank, q.timestamp, q.trace_id),
    )
    info = DesignInfo(
        id=row.id,
        size=counts.size,
        labelled=counts.labelled,
        skipped=counts.skipped,
        pending=counts.pending,
        seed=row.seed,
        created_at=row.created_at,
    )
    return Priorities(
        by=row.dimension,
        budget=row.budget,
        target=_float(summary.get("target")),
        since=row.since,
        until=row.until,
        slices=tuple(slices),
        requests=tuple(requests),
        design=info,
    )


def _float(x: Any) -> float:
    return math.nan if x is None else float(x)


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None
