"""`Storage`: every write to the monitoring database, each one transaction.

* `Storage.write` stores scored traces and adds their contributions to the
  per-bucket aggregates in the same transaction, so aggregates and traces never
  disagree, even after a crash. Trace ids are unique: a trace whose id is already
  stored is reported as a duplicate and counted once (client retries are safe).
* `Storage.apply_labels` attaches labels and moves the label sums of the
  aggregates (a changed label takes its old contribution out).
* `Storage.rescore` moves traces from older scorers to the active one, in chunks,
  recomputing P and counting them in the new scorer's aggregates.
* The scorer registry: `register_scorer`, `activate`, `active_scorer`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.service.records import ScoredTraces, ScorerInfo, WriteOutcome
from entropy_sentinel.service.storage.buckets import bucket_rows
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.tables import (
    FEATURE_COLUMNS,
    SUM_COLUMNS,
    scorers,
    sentinel_meta,
    slice_buckets,
    trace_payloads,
    trace_slices,
    traces,
)

__all__ = ["SKIPPED", "LabelOutcome", "Rescorer", "SkipOutcome", "Storage", "dumps"]

_IN_CHUNK = 500  # ids per IN (...) list: under every driver's parameter limit

Rescorer = Callable[
    [npt.NDArray[np.float64], Sequence[Mapping[str, float] | None], npt.NDArray[np.float64]],
    npt.NDArray[np.float64],
]
"""``(features (n, 11), extra features per trace, p_raw (n,)) -> new p_raw (n,)``."""


def dumps(obj: Any) -> str:
    """Compact JSON text (NaN is refused: it is not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


SKIPPED = "skipped"
"""``label_source`` of an unlabelled trace an annotator skipped (`Storage.record_skips`)."""


@dataclass(frozen=True)
class LabelOutcome:
    """Result of `Storage.apply_labels`: ids labelled, unchanged, and unknown."""

    labelled: tuple[str, ...]
    unchanged: tuple[str, ...]
    unknown: tuple[str, ...]


@dataclass(frozen=True)
class SkipOutcome:
    """Result of `Storage.record_skips`: ids recorded as skipped, already labelled, unknown."""

    skipped: tuple[str, ...]
    labelled: tuple[str, ...]
    unknown: tuple[str, ...]


class Storage:
    """Writes and registry of one monitoring database (see the module docstring).

    Args:
        db: the open database.
        bucket: time grain in seconds; must match the one the database was created with.
    """

    def __init__(self, db: Database, bucket: int) -> None:
        self.db = db
        self.bucket = bucket
        stored = self.meta("bucket")
        if stored is None:
            self._set_meta_if_absent("bucket", str(bucket))
            stored = self.meta("bucket")
        if stored is not None and int(stored) != bucket:
            raise ConfigError(
                f"the database at {db!r} aggregates in {stored} s buckets, not {bucket} s; "
                f"set bucket = {stored} (or use a new database)"
            )

    @classmethod
    def attach(cls, db: Database) -> Storage:
        """Storage over an existing database, with the bucket width it was created with."""
        with db.read.connect() as conn:
            bucket = conn.execute(
                sa.select(sentinel_meta.c.value).where(sentinel_meta.c.key == "bucket")
            ).scalar_one_or_none()
        if bucket is None:
            raise StorageError(
                f"{db!r} has never been served: start `sentinel serve --db ...` on it first"
            )
        return cls(db, int(bucket))

    # ------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        with self.db.read.connect() as conn:
            return conn.execute(
                sa.select(sentinel_meta.c.value).where(sentinel_meta.c.key == key)
            ).scalar_one_or_none()

    def _set_meta_if_absent(self, key: str, value: str) -> None:
        with self.db.write.begin() as conn:
            conn.execute(
                self._insert(sentinel_meta).on_conflict_do_nothing(), [{"key": key, "value": value}]
            )

    def _set_meta(self, conn: sa.Connection, key: str, value: str) -> None:
        stmt = self._insert(sentinel_meta)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[sentinel_meta.c.key], set_={"value": stmt.excluded.value}
            ),
            [{"key": key, "value": value}],
        )

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (both have ``on_conflict_do_nothing/update``)."""
        return (sqlite.insert if self.db.dialect == "sqlite" else postgresql.insert)(table)

    # --------------------------------------------------------------- scorers
    def register_scorer(
        self,
        *,
        estimator_sha256: str,
        entropy_mode: str,
        features: Sequence[str],
        model_sd: float,
        card: Mapping[str, Any],
        calibration: Mapping[str, Any] | None = None,
        base_id: int | None = None,
        note: str = "",
    ) -> ScorerInfo:
        """The scorer for this estimator (and calibration), created on first use."""
        cal_text = None if calibration is None else dumps(calibration)
        with self.db.write.begin() as conn:
            query = sa.select(scorers.c.id).where(
                scorers.c.estimator_sha256 == estimator_sha256,
                scorers.c.entropy_mode == entropy_mode,
                scorers.c.calibration.is_(None)
                if cal_text is None
                else scorers.c.calibration == cal_text,
            )
            existing = conn.execute(query.order_by(scorers.c.id).limit(1)).scalar_one_or_none()
            if existing is None:
                existing = conn.execute(
                    scorers.insert().returning(scorers.c.id),
                    {
                        "estimator_sha256": estimator_sha256,
                        "entropy_mode": entropy_mode,
                        "features": dumps(list(features)),
                        "model_sd": float(model_sd),
                        "card": dumps(card),
                        "calibration": cal_text,
                        "base_id": base_id,
                        "created_at": time.time(),
                        "note": note,
                    },
                ).scalar_one()
        return self.scorer(int(existing))

    def scorer(self, scorer_id: int) -> ScorerInfo:
        with self.db.read.connect() as conn:
            row = conn.execute(sa.select(scorers).where(scorers.c.id == scorer_id)).one_or_none()
        if row is None:
            raise StorageError(f"scorer {scorer_id} does not exist")
        return _scorer_info(row)

    def scorers(self) -> list[ScorerInfo]:
        with self.db.read.connect() as conn:
            rows = conn.execute(sa.select(scorers).order_by(scorers.c.id)).all()
        return [_scorer_info(r) for r in rows]

    def active_scorer(self) -> ScorerInfo | None:
        """The scorer estimates use, or None before any model was registered."""
        value = self.meta("active_scorer")
        return None if value is None else self.scorer(int(value))

    def activate(self, scorer_id: int) -> None:
        """Make ``scorer_id`` the one new traces are counted in and estimates read."""
        self.scorer(scorer_id)  # exists
        with self.db.write.begin() as conn:
            self._set_meta(conn, "active_scorer", str(scorer_id))

    # ---------------------------------------------------------------- writes
    def write(self, batches: Sequence[ScoredTraces]) -> list[WriteOutcome]:
        """Store several batches in one transaction (group commit).

        A trace id seen earlier in the same call, or already in the database, is a
        duplicate: it is not stored again and not counted again.
        """
        rows: list[dict[str, Any]] = []
        owners: list[tuple[int, int]] = []  # (batch, position) of each row
        seen: set[str] = set()
        for b, batch in enumerate(batches):
            for i, tid in enumerate(batch.trace_ids):
                if tid in seen:
                    continue
                seen.add(tid)
                rows.append(self._trace_row(batch, i))
                owners.append((b, i))
        if not rows:
            return [WriteOutcome(frozenset(), frozenset(b.trace_ids)) for b in batches]
        try:
            with self.db.write.begin() as conn:
                stmt = (
                    self._insert(traces)
                    .on_conflict_do_nothing(index_elements=[traces.c.trace_id])
                    .returning(traces.c.id, traces.c.trace_id)
                )
                pk_of = {tid: pk for pk, tid in conn.execute(stmt, rows).all()}
                stored = [
                    (b, i)
                    for (b, i), row in zip(owners, rows, strict=True)
                    if row["trace_id"] in pk_of
                ]
                self._write_side_tables(conn, batches, stored, pk_of)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not store {len(rows)} traces: {_short(exc)}") from exc
        stored_in: list[set[str]] = [set() for _ in batches]
        for b, i in stored:
            stored_in[b].add(batches[b].trace_ids[i])
        return [
            WriteOutcome(frozenset(ok), frozenset(batch.trace_ids) - ok)
            for batch, ok in zip(batches, stored_in, strict=True)
        ]

    def _trace_row(self, batch: ScoredTraces, i: int) -> dict[str, Any]:
        ts = float(batch.ts[i])
        row: dict[str, Any] = {
            "trace_id": batch.trace_ids[i],
            "ts": ts,
            "bucket": int(ts // self.bucket) * self.bucket,
            "received_at": batch.received_at,
            "slice": dumps(dict(batch.slices[i])),
            "n_tokens": int(batch.n_tokens[i]),
            "k": int(batch.k[i]),
            "entropy_mode": batch.entropy_mode,
            "extra_features": None
            if batch.extra_features[i] is None
            else dumps(dict(batch.extra_features[i] or {})),
            "p_raw": float(batch.p_raw[i]),
            "p": float(batch.p[i]),
            "scorer_id": batch.scorer_id,
            "label": None if math.isnan(batch.labels[i]) else float(batch.labels[i]),
            "label_source": None if math.isnan(batch.labels[i]) else "ingest",
            "labelled_at": None if math.isnan(batch.labels[i]) else batch.received_at,
            "meta": dumps(dict(batch.meta[i])) if batch.meta[i] else None,
        }
        feats = batch.features[i]
        for j, name in enumerate(FEATURE_COLUMNS):
            row[name] = float(feats[j])
        return row

    def _write_side_tables(
        self,
        conn: sa.Connection,
        batches: Sequence[ScoredTraces],
        stored: list[tuple[int, int]],
        pk_of: Mapping[str, int],
    ) -> None:
        if not stored:
            return
        slice_rows: list[dict[str, Any]] = []
        payload_rows: list[dict[str, Any]] = []
        by_scorer: dict[int, list[tuple[int, int]]] = {}
        for b, i in stored:
            batch = batches[b]
            pk = pk_of[batch.trace_ids[i]]
            bucket = int(float(batch.ts[i]) // self.bucket) * self.bucket
            slice_rows.extend(
                {"trace_pk": pk, "dimension": d, "value": v, "bucket": bucket}
                for d, v in batch.slices[i].items()
            )
            raw = batch.raw[i]
            if raw is not None:
                payload_rows.append({"trace_pk": pk, "raw": raw})
            by_scorer.setdefault(batch.scorer_id, []).append((b, i))
        if slice_rows:
            conn.execute(trace_slices.insert(), slice_rows)
        if payload_rows:
            conn.execute(trace_payloads.insert(), payload_rows)
        for scorer_id, members in by_scorer.items():
            ts = np.array([batches[b].ts[i] for b, i in members], dtype=np.float64)
            self._add_to_buckets(
                conn,
                bucket_rows(
                    scorer_id,
                    (ts // self.bucket).astype(np.int64) * self.bucket,
                    [batches[b].slices[i] for b, i in members],
                    np.array([batches[b].p[i] for b, i in members], dtype=np.float64),
                    np.array([batches[b].labels[i] for b, i in members], dtype=np.float64),
                ),
            )

    def _add_to_buckets(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        stmt = self._insert(slice_buckets)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    slice_buckets.c.scorer_id,
                    slice_buckets.c.dimension,
                    slice_buckets.c.bucket,
                    slice_buckets.c.value,
                ],
                set_={c: slice_buckets.c[c] + stmt.excluded[c] for c in SUM_COLUMNS},
            ),
            rows,
        )

    # ---------------------------------------------------------------- labels
    def apply_labels(
        self, labels: Iterable[tuple[str, float]], *, source: str, at: float | None = None
    ) -> LabelOutcome:
        """Attach labels (1.0 correct, 0.0 wrong) to stored traces, in one transaction.

        A trace labelled before gets the new label (its old contribution to the label
        sums is taken out); the same label from the same source again is "unchanged".
        """
        wanted: dict[str, float] = {}
        for tid, y in labels:
            if y not in (0.0, 1.0):
                raise ConfigError(f"label {y!r} for {tid!r} must be 1 (correct) or 0 (wrong)")
            wanted[tid] = float(y)
        when = time.time() if at is None else at
        labelled: list[str] = []
        unchanged: list[str] = []
        found: set[str] = set()
        cols = [
            traces.c.id,
            traces.c.trace_id,
            traces.c.bucket,
            traces.c.slice,
            traces.c.p,
            traces.c.scorer_id,
            traces.c.label,
            traces.c.label_source,
        ]
        ids = list(wanted)
        try:
            with self.db.write.begin() as conn:
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    query = sa.select(*cols).where(traces.c.trace_id.in_(chunk))
                    if self.db.dialect == "postgresql":  # a concurrent relabel waits
                        query = query.with_for_update()
                    rows = conn.execute(query).all()
                    changed = []
                    for row in rows:
                        found.add(row.trace_id)
                        y = wanted[row.trace_id]
                        if row.label == y and row.label_source == source:
                            unchanged.append(row.trace_id)
                        else:
                            changed.append(row)
                            labelled.append(row.trace_id)
                    self._relabel(conn, changed, wanted, source, when)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not store labels: {_short(exc)}") from exc
        unknown = tuple(t for t in ids if t not in found)
        return LabelOutcome(tuple(labelled), tuple(unchanged), unknown)

    def record_skips(self, ids: Iterable[str], *, at: float | None = None) -> SkipOutcome:
        """Record that an annotator skipped these traces (`SKIPPED` in ``label_source``,
        the label left empty, so no estimate moves). A labelled trace keeps its label;
        ids not stored are "unknown". Interim: the labelling designs will keep skips with
        the design they belong to.
        """
        wanted = list(dict.fromkeys(ids))
        when = time.time() if at is None else at
        skipped: list[str] = []
        labelled: list[str] = []
        try:
            with self.db.write.begin() as conn:
                for start in range(0, len(wanted), _IN_CHUNK):
                    chunk = wanted[start : start + _IN_CHUNK]
                    rows = conn.execute(
                        sa.select(traces.c.id, traces.c.trace_id, traces.c.label).where(
                            traces.c.trace_id.in_(chunk)
                        )
                    ).all()
                    fresh = [r for r in rows if r.label is None]
                    labelled.extend(r.trace_id for r in rows if r.label is not None)
                    skipped.extend(r.trace_id for r in fresh)
                    if fresh:
                        conn.execute(
                            sa.update(traces)
                            .where(traces.c.id.in_([r.id for r in fresh]))
                            .values(label_source=SKIPPED, labelled_at=when)
                        )
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not store skips: {_short(exc)}") from exc
        known = set(skipped) | set(labelled)
        unknown = tuple(t for t in wanted if t not in known)
        return SkipOutcome(tuple(skipped), tuple(labelled), unknown)

    def _relabel(
        self,
        conn: sa.Connection,
        rows: Sequence[Any],
        wanted: Mapping[str, float],
        source: str,
        when: float,
    ) -> None:
        if not rows:
            return
        by_scorer: dict[int, list[Any]] = {}
        for row in rows:
            by_scorer.setdefault(row.scorer_id, []).append(row)
        for scorer_id, group in sorted(by_scorer.items()):
            buckets = [r.bucket for r in group]
            slices = [json.loads(r.slice) for r in group]
            p = np.array([r.p for r in group], dtype=np.float64)
            old = np.array([np.nan if r.label is None else r.label for r in group])
            new = np.array([wanted[r.trace_id] for r in group], dtype=np.float64)
            # take the trace out with its old label and back in with the new one: the
            # n and p sums cancel, the label sums move
            out = bucket_rows(scorer_id, buckets, slices, p, old, sign=-1.0)
            into = bucket_rows(scorer_id, buckets, slices, p, new)
            self._add_to_buckets(conn, _merge_rows(out, into))
        conn.execute(
            sa.update(traces)
            .where(traces.c.id == sa.bindparam("pk"))
            .values(
                label=sa.bindparam("y"),
                label_source=sa.bindparam("src"),
                labelled_at=sa.bindparam("at"),
            ),
            [{"pk": r.id, "y": wanted[r.trace_id], "src": source, "at": when} for r in rows],
        )

    # -------------------------------------------------------------- rescoring
    def rescore(
        self,
        target_id: int,
        sources: Sequence[int],
        rescorer: Rescorer | None,
        *,
        calibrate: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
        k_range: tuple[int, int] | None = None,
        limit: int = 2000,
    ) -> int:
        """Move up to ``limit`` traces counted by ``sources`` to scorer ``target_id``.

        Each moved trace gets ``p_raw = rescorer(features, extra_features, p_raw)`` (kept
        as is when ``rescorer`` is None: same estimator, new calibration) and
        ``p = calibrate(p_raw)``, and moves (with its label) from its old scorer's
        aggregates to the target's, in one transaction. ``k_range`` (inclusive) limits the move to
        traces whose top-k width the estimator accepts. Returns how many moved; 0
        means nothing is left.
        """
        if not sources:
            return 0
        feature_cols = [traces.c[name] for name in FEATURE_COLUMNS]
        query = (
            sa.select(
                traces.c.id,
                traces.c.bucket,
                traces.c.slice,
                traces.c.p_raw,
                traces.c.p,
                traces.c.scorer_id,
                traces.c.label,
                traces.c.extra_features,
                *feature_cols,
            )
            .where(*self._rescore_filter(sources, k_range))
            .order_by(traces.c.id)
            .limit(limit)
        )
        if self.db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        try:
            with self.db.write.begin() as conn:
                rows = conn.execute(query).all()
                if not rows:
                    return 0
                p_raw = np.array([r.p_raw for r in rows], dtype=np.float64)
                if rescorer is not None:
                    feats = np.array([[getattr(r, n) for n in FEATURE_COLUMNS] for r in rows])
                    extras = [
                        None if r.extra_features is None else json.loads(r.extra_features)
                        for r in rows
                    ]
                    p_raw = rescorer(feats, extras, p_raw)
                p = calibrate(p_raw)
                labels = np.array([np.nan if r.label is None else r.label for r in rows])
                conn.execute(
                    sa.update(traces)
                    .where(traces.c.id == sa.bindparam("pk"))
                    .values(p_raw=sa.bindparam("pr"), p=sa.bindparam("pc"), scorer_id=target_id),
                    [
                        {"pk": r.id, "pr": float(a), "pc": float(b)}
                        for r, a, b in zip(rows, p_raw, p, strict=True)
                    ],
                )
                buckets = [r.bucket for r in rows]
                slices = [json.loads(r.slice) for r in rows]
                moves = [bucket_rows(target_id, buckets, slices, p, labels)]
                old_p = np.array([r.p for r in rows], dtype=np.float64)
                old_scorer = np.array([r.scorer_id for r in rows])
                for source in np.unique(old_scorer).tolist():
                    mine = np.flatnonzero(old_scorer == source)
                    moves.append(
                        bucket_rows(
                            int(source),
                            [buckets[i] for i in mine],
                            [slices[i] for i in mine],
                            old_p[mine],
                            labels[mine],
                            sign=-1.0,
                        )
                    )
                self._add_to_buckets(conn, _merge_rows(*moves))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not rescore traces: {_short(exc)}") from exc
        return len(rows)

    def pending_rescore(
        self, sources: Sequence[int], k_range: tuple[int, int] | None = None
    ) -> int:
        """Traces `rescore` with the same arguments has left to move."""
        if not sources:
            return 0
        with self.db.read.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(traces)
                    .where(*self._rescore_filter(sources, k_range))
                ).scalar_one()
            )

    @staticmethod
    def _rescore_filter(
        sources: Sequence[int], k_range: tuple[int, int] | None
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = [traces.c.scorer_id.in_(list(sources))]
        if k_range is not None:
            where.append(traces.c.k.between(k_range[0], k_range[1]))
        return where


def _merge_rows(*parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum bucket rows with equal keys; sorted by key (lock order)."""
    acc: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            key = (row["scorer_id"], row["dimension"], row["bucket"], row["value"])
            if key in acc:
                for c in SUM_COLUMNS:
                    acc[key][c] += row[c]
            else:
                acc[key] = dict(row)
    return [acc[k] for k in sorted(acc)]


def _scorer_info(row: Any) -> ScorerInfo:
    return ScorerInfo(
        id=int(row.id),
        estimator_sha256=row.estimator_sha256,
        entropy_mode=row.entropy_mode,
        features=tuple(json.loads(row.features)),
        model_sd=float(row.model_sd),
        card=json.loads(row.card),
        calibration=None if row.calibration is None else json.loads(row.calibration),
        base_id=row.base_id,
        created_at=float(row.created_at),
        note=row.note,
    )


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0][:300]
