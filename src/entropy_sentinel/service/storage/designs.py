"""Stored labelling designs: the rows of ``designs`` and ``design_items``, and the two
questions the label path asks about them inside its own transaction.

A design (`entropy_sentinel.service.prioritize` draws it) is one row of ``designs``
(model, slice dimension, time range, budget, seed, a summary: the target and each
slice's allocation) and one row of
``design_items`` per drawn response: its trace, slice value, inclusion probability and
status (``pending`` until labelled or skipped). A trace drawn by several designs (a
closed one, then a new one) answers with the newest.

* `inclusion_of`: the inclusion probability a label for each trace carries (absent: the
  trace is no design's item, its label is plain).
* `set_status`: mark items labelled or skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from entropy_sentinel.service.storage.tables import DESIGN_STATUSES, design_items, designs

__all__ = [
    "DesignCounts",
    "DesignRow",
    "close_design",
    "design_counts",
    "inclusion_of",
    "insert_design",
    "open_design",
    "set_status",
]

_IN_CHUNK = 500


@dataclass(frozen=True)
class DesignRow:
    """One stored design (times epoch seconds)."""

    id: int
    model: str
    scorer_id: int
    dimension: str
    since: float
    until: float
    budget: int
    minimum: int
    seed: int
    level: float
    summary: Mapping[str, Any]
    created_at: float
    closed_at: float | None


@dataclass(frozen=True)
class DesignCounts:
    """Items of a design: drawn (``size``) and how many are labelled, skipped, pending."""

    size: int = 0
    labelled: int = 0
    skipped: int = 0
    pending: int = 0


def inclusion_of(conn: sa.Connection, trace_pks: Sequence[int]) -> dict[int, float]:
    """Per trace that some design drew, its inclusion probability in the newest one."""
    out: dict[int, tuple[int, float]] = {}
    pks = list(dict.fromkeys(trace_pks))
    for start in range(0, len(pks), _IN_CHUNK):
        rows = conn.execute(
            sa.select(
                design_items.c.trace_pk, design_items.c.design_id, design_items.c.inclusion
            ).where(design_items.c.trace_pk.in_(pks[start : start + _IN_CHUNK]))
        ).all()
        for r in rows:
            if r.trace_pk not in out or r.design_id > out[r.trace_pk][0]:
                out[int(r.trace_pk)] = (int(r.design_id), float(r.inclusion))
    return {pk: pi for pk, (_, pi) in out.items()}


def set_status(
    conn: sa.Connection,
    trace_pks: Iterable[int],
    status: str,
    *,
    when: float,
    only_pending: bool = False,
) -> None:
    """Set the status of every design item of these traces (of pending ones only, with
    ``only_pending``: a skip does not undo a label)."""
    if status not in DESIGN_STATUSES:
        raise ValueError(f"status {status!r} is not one of {DESIGN_STATUSES}")
    pks = list(dict.fromkeys(trace_pks))
    for start in range(0, len(pks), _IN_CHUNK):
        query = sa.update(design_items).where(
            design_items.c.trace_pk.in_(pks[start : start + _IN_CHUNK])
        )
        if only_pending:
            query = query.where(design_items.c.status == "pending")
        conn.execute(query.values(status=status, updated_at=when))


def insert_design(
    conn: sa.Connection,
    *,
    model: str,
    scorer_id: int,
    dimension: str,
    since: float,
    until: float,
    budget: int,
    minimum: int,
    seed: int,
    level: float,
    summary: Mapping[str, Any],
    items: Sequence[tuple[int, str, float]],
) -> int:
    """Store a design and its drawn items ``(trace pk, slice value, inclusion)``; its id."""
    design_id = conn.execute(
        designs.insert().returning(designs.c.id),
        {
            "model": model,
            "scorer_id": scorer_id,
            "dimension": dimension,
            "since": since,
            "until": until,
            "budget": budget,
            "minimum": minimum,
            "seed": seed,
            "level": level,
            "summary": json.dumps(summary, separators=(",", ":"), allow_nan=False),
            "created_at": time.time(),
        },
    ).scalar_one()
    if items:
        conn.execute(
            design_items.insert(),
            [
                {"design_id": design_id, "trace_pk": pk, "value": v, "inclusion": pi}
                for pk, v, pi in items
            ],
        )
    return int(design_id)


def open_design(conn: sa.Connection, model: str, dimension: str) -> DesignRow | None:
    """The newest design of (model, dimension) that is not closed, or None."""
    row = conn.execute(
        sa.select(designs)
        .where(
            designs.c.model == model,
            designs.c.dimension == dimension,
            designs.c.closed_at.is_(None),
        )
        .order_by(designs.c.id.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else _row(row)


def close_design(conn: sa.Connection, design_id: int, when: float) -> None:
    conn.execute(
        sa.update(designs)
        .where(designs.c.id == design_id, designs.c.closed_at.is_(None))
        .values(closed_at=when)
    )


def design_counts(conn: sa.Connection, design_id: int) -> DesignCounts:
    rows = conn.execute(
        sa.select(design_items.c.status, sa.func.count())
        .where(design_items.c.design_id == design_id)
        .group_by(design_items.c.status)
    ).all()
    counts = {str(status): int(n) for status, n in rows}
    return DesignCounts(
        size=sum(counts.values()),
        labelled=counts.get("labelled", 0),
        skipped=counts.get("skipped", 0),
        pending=counts.get("pending", 0),
    )


def _row(r: Any) -> DesignRow:
    return DesignRow(
        id=int(r.id),
        model=r.model,
        scorer_id=int(r.scorer_id),
        dimension=r.dimension,
        since=float(r.since),
        until=float(r.until),
        budget=int(r.budget),
        minimum=int(r.minimum),
        seed=int(r.seed),
        level=float(r.level),
        summary=json.loads(r.summary),
        created_at=float(r.created_at),
        closed_at=None if r.closed_at is None else float(r.closed_at),
    )
