"""Check that the stored aggregates equal a recount from the stored traces.

The ingest path updates ``slice_buckets`` in the same transaction as ``traces``, so
after any crash the two must agree exactly (up to float rounding). `check_aggregates`
recomputes every (scorer, dimension, value, bucket) sum (every flat `SliceStats` field
and ``n_shift_unknown``) from each trace's stored terms (`TraceTerms`: P, label and its
inclusion probability, seen, calibration part, whitened profile) and lists each
difference; the crash test and the load benchmark run it, and operators can
(``sentinel report --check``). It reads every trace: run it off-peak on big databases.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from entropy_sentinel.service.storage.buckets import TERM_COLUMNS, TraceTerms, bucket_rows
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.tables import SUM_COLUMNS, slice_buckets, traces

__all__ = ["ConsistencyReport", "check_aggregates"]

_CHUNK = 20_000


@dataclass(frozen=True)
class ConsistencyReport:
    """Result of `check_aggregates`: traces read, aggregate rows compared, differences."""

    traces: int
    rows: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_aggregates(
    db: Database, *, rel_tol: float = 1e-9, abs_tol: float = 1e-6
) -> ConsistencyReport:
    """Recount every aggregate from the traces and compare (see the module docstring)."""
    expected: dict[tuple[int, str, int, str], np.ndarray] = {}
    n_traces = 0
    last = -1
    with db.read.connect() as conn:
        while True:
            rows = conn.execute(
                sa.select(*TERM_COLUMNS)
                .where(traces.c.id > last, traces.c.scorer_id.is_not(None))  # waiting: no P
                .order_by(traces.c.id)
                .limit(_CHUNK)
            ).all()
            if not rows:
                break
            last = rows[-1].id
            n_traces += len(rows)
            by_scorer: dict[int, list[Any]] = {}
            for r in rows:
                by_scorer.setdefault(r.scorer_id, []).append(r)
            for scorer_id, group in by_scorer.items():
                for row in bucket_rows(
                    scorer_id,
                    [r.bucket for r in group],
                    [json.loads(r.slice) for r in group],
                    TraceTerms.from_rows(group),
                ):
                    key = (row["scorer_id"], row["dimension"], row["bucket"], row["value"])
                    values = np.array([row[c] for c in SUM_COLUMNS], dtype=np.float64)
                    expected[key] = expected.get(key, 0.0) + values
        stored = {
            (r.scorer_id, r.dimension, r.bucket, r.value): np.array(
                [getattr(r, c) for c in SUM_COLUMNS], dtype=np.float64
            )
            for r in conn.execute(sa.select(slice_buckets))
        }
    problems = []
    for key in sorted(set(expected) | set(stored)):
        want = expected.get(key)
        got = stored.get(key)
        if want is None or got is None:
            # rescoring takes traces out of their old scorer's rows, leaving zeros
            if got is not None and np.allclose(got, 0.0, rtol=0.0, atol=abs_tol):
                continue
            problems.append(f"{key}: stored {_fmt(got)}, recount {_fmt(want)}")
            continue
        for name, w, g in zip(SUM_COLUMNS, want, got, strict=True):
            if not math.isclose(w, g, rel_tol=rel_tol, abs_tol=abs_tol):
                problems.append(f"{key} {name}: stored {g!r}, recount {w!r}")
    return ConsistencyReport(n_traces, len(stored), tuple(problems))


def _fmt(values: np.ndarray | None) -> str:
    if values is None:
        return "nothing"
    return "{" + ", ".join(f"{c}={v:g}" for c, v in zip(SUM_COLUMNS, values, strict=True)) + "}"
