"""`Storage`: every write to the monitoring database, each one transaction.

* `Storage.write` stores scored traces and adds their contributions to the
  per-bucket aggregates in the same transaction, so aggregates and traces never
  disagree, even after a crash. Trace ids are unique: a trace whose id is already
  stored is reported as a duplicate and counted once (client retries are safe).
* `Storage.apply_labels` attaches labels and moves the label sums of the
  aggregates (a changed label takes its old contribution out): a label for a response
  drawn by a labelling design carries its inclusion probability (a *designed* label),
  any other is *plain*; `Storage.record_skips` records items an annotator skipped.
* `Storage.rescore` moves traces from older scorers to the active one, in chunks,
  recomputing their terms and counting them in the new scorer's aggregates.
* `Storage.score_waiting` scores traces that waited for an estimator of their model
  (from their stored per-step arrays) and counts them in its aggregates;
  `expire_waiting` and `expire_texts` enforce the retention limits.
* The scorer registry, per model: `register_scorer`, `activate`, `active_scorer`,
  `model_names`; what is stored per model: `model_counts`; one trace: `trace`.
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
from entropy_sentinel.estimator.intervals import SliceFinisher
from entropy_sentinel.estimator.sentinel import TraceScores
from entropy_sentinel.service.json_limits import load_stored
from entropy_sentinel.service.records import ScoredTraces, ScorerInfo, WriteOutcome
from entropy_sentinel.service.storage.buckets import (
    TERM_COLUMNS,
    TraceTerms,
    bucket_rows,
    pack_w,
)
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.designs import inclusion_of, set_status
from entropy_sentinel.service.storage.tables import (
    ALL,
    FEATURE_COLUMNS,
    SUM_COLUMNS,
    models,
    scorers,
    sentinel_meta,
    slice_buckets,
    trace_payloads,
    trace_slices,
    trace_steps,
    trace_texts,
    traces,
)

__all__ = [
    "SKIPPED",
    "LabelOutcome",
    "ModelCounts",
    "Rescorer",
    "SkipOutcome",
    "Storage",
    "WaitingScorer",
    "WaitingScores",
    "dumps",
]

_IN_CHUNK = 500  # ids per IN (...) list: under every driver's parameter limit

Rescorer = Callable[
    [
        npt.NDArray[np.float64],
        Sequence[Mapping[str, float] | None],
        Sequence[Mapping[str, str]],
    ],
    TraceScores,
]
"""``(features (n, 11), extra features per trace, slices) -> the estimator's scores``
(``p`` is the new ``p_raw``; ``w`` rows of NaN where not known)."""

SKIPPED = "skipped"
"""``label_source`` of an unlabelled trace an annotator skipped (`Storage.record_skips`)."""


@dataclass(frozen=True, eq=False)
class WaitingScores:
    """What a `WaitingScorer` made of some waiting traces (one row per trace given).

    ``refused[i]`` is the reason the estimator cannot score trace ``i`` ('' if it can);
    the other fields are meaningful where it is ''.
    """

    features: npt.NDArray[np.float64]  # (n, 11)
    extra: Sequence[Mapping[str, float] | None]
    scores: TraceScores  # the estimator's; scores.p is p_raw
    entropy_mode: str
    refused: Sequence[str]


WaitingScorer = Callable[[Sequence[tuple[str, bytes, Mapping[str, str]]]], WaitingScores]
"""``[(trace id, stored steps, slice), ...] -> WaitingScores`` (`Storage.score_waiting`)."""


@dataclass(frozen=True)
class ModelCounts:
    """Traces stored for one model: counted by its active scorer, waiting for an
    estimator, refused by the registered one (another top-k width or source), and
    expired (kept without their steps by the retention limit: never scored)."""

    scored: int = 0
    waiting: int = 0
    refused: int = 0
    expired: int = 0


def dumps(obj: Any) -> str:
    """Compact JSON text (NaN is refused: it is not JSON)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True)
class LabelOutcome:
    """Result of `Storage.apply_labels`: ids labelled, unchanged, and unknown; of the
    labelled, those drawn by a labelling design (their label carries its inclusion
    probability) and the plain ones."""

    labelled: tuple[str, ...]
    unchanged: tuple[str, ...]
    unknown: tuple[str, ...]
    designed: tuple[str, ...] = ()

    @property
    def plain(self) -> tuple[str, ...]:
        designed = set(self.designed)
        return tuple(t for t in self.labelled if t not in designed)


@dataclass(frozen=True)
class SkipOutcome:
    """Result of `Storage.record_skips`: ids recorded as skipped (``designed``: those that
    are items of a labelling design), already labelled (unchanged), unknown."""

    skipped: tuple[str, ...]
    labelled: tuple[str, ...]
    unknown: tuple[str, ...]
    designed: tuple[str, ...] = ()


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
        model: str = "",
        finisher: SliceFinisher | None = None,
    ) -> ScorerInfo:
        """The scorer for this estimator (and calibration) serving ``model``, created on
        first use. ``finisher``: how the estimator finishes a slice's sums; a scorer
        registered before it was kept gets it now (same estimator, same finisher)."""
        cal_text = None if calibration is None else dumps(calibration)
        fin_text = None if finisher is None else dumps(finisher.to_dict())
        with self.db.write.begin() as conn:
            query = sa.select(scorers.c.id).where(
                scorers.c.model == model,
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
                        "model": model,
                        "estimator_sha256": estimator_sha256,
                        "entropy_mode": entropy_mode,
                        "features": dumps(list(features)),
                        "model_sd": float(model_sd),
                        "card": dumps(card),
                        "calibration": cal_text,
                        "base_id": base_id,
                        "created_at": time.time(),
                        "note": note,
                        "finisher": fin_text,
                    },
                ).scalar_one()
            elif fin_text is not None:
                conn.execute(
                    sa.update(scorers)
                    .where(scorers.c.id == existing, scorers.c.finisher.is_(None))
                    .values(finisher=fin_text)
                )
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

    def active_scorer(self, model: str = "") -> ScorerInfo | None:
        """The scorer the estimates of ``model`` use, or None before one was registered."""
        with self.db.read.connect() as conn:
            value = conn.execute(
                sa.select(models.c.active_scorer_id).where(models.c.name == model)
            ).scalar_one_or_none()
        return None if value is None else self.scorer(int(value))

    def active_scorers(self) -> list[ScorerInfo]:
        """The active scorer of every model that has one, by model name."""
        with self.db.read.connect() as conn:
            rows = conn.execute(
                sa.select(scorers)
                .join(models, models.c.active_scorer_id == scorers.c.id)
                .order_by(models.c.name)
            ).all()
        return [_scorer_info(r) for r in rows]

    def activate(self, scorer_id: int) -> None:
        """Make ``scorer_id`` the one its model's new traces are counted in and its
        estimates read."""
        model = self.scorer(scorer_id).model
        stmt = self._insert(models)
        with self.db.write.begin() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[models.c.name],
                    set_={"active_scorer_id": stmt.excluded.active_scorer_id},
                ),
                [{"name": model, "active_scorer_id": scorer_id, "created_at": time.time()}],
            )

    def model_names(self) -> list[str]:
        """Every model key the database knows: with a scorer, or with stored traces
        waiting for one."""
        with self.db.read.connect() as conn:
            named = set(conn.execute(sa.select(models.c.name)).scalars())
            named.update(
                conn.execute(
                    sa.select(traces.c.model).where(traces.c.scorer_id.is_(None)).distinct()
                ).scalars()
            )
        return sorted(named)

    def model_counts(self) -> dict[str, ModelCounts]:
        """Per model key, the traces stored for it (see `ModelCounts`)."""
        out: dict[str, dict[str, int]] = {}
        with self.db.read.connect() as conn:
            scored = conn.execute(
                sa.select(models.c.name, sa.func.sum(slice_buckets.c.n))
                .join(slice_buckets, slice_buckets.c.scorer_id == models.c.active_scorer_id)
                .where(slice_buckets.c.dimension == ALL)
                .group_by(models.c.name)
            ).all()
            for name, n in scored:
                out.setdefault(name, {})["scored"] = int(n or 0)
            state = sa.case(
                (trace_steps.c.trace_pk.is_(None), "expired"),
                (trace_steps.c.refused_by.is_not(None), "refused"),
                else_="waiting",
            ).label("state")
            waiting = conn.execute(
                sa.select(traces.c.model, state, sa.func.count())
                .select_from(traces.outerjoin(trace_steps, trace_steps.c.trace_pk == traces.c.id))
                .where(traces.c.scorer_id.is_(None))
                .group_by(traces.c.model, sa.literal_column("state"))
            ).all()
            for name, kind, n in waiting:
                out.setdefault(name, {})[kind] = int(n)
        return {name: ModelCounts(**counts) for name, counts in sorted(out.items())}

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
        scored = batch.scorer_id is not None
        row: dict[str, Any] = {
            "trace_id": batch.trace_ids[i],
            "model": batch.models[i],
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
            "p_classifier": _num_or_none(batch.p_classifier, i) if scored else None,
            "seen": bool(batch.seen[i]) if scored and batch.seen is not None else None,
            "cal": _num_or_none(batch.cal, i) if scored else None,
            "w": pack_w(batch.w[i]) if scored and batch.w is not None else None,
            "label_pi": None,
            "p_raw": float(batch.p_raw[i]) if scored else None,
            "p": float(batch.p[i]) if scored else None,
            "scorer_id": batch.scorer_id,
            "label": None if math.isnan(batch.labels[i]) else float(batch.labels[i]),
            "label_source": None if math.isnan(batch.labels[i]) else "ingest",
            "labelled_at": None if math.isnan(batch.labels[i]) else batch.received_at,
            "meta": dumps(dict(batch.meta[i])) if batch.meta[i] else None,
        }
        feats = batch.features[i]
        for j, name in enumerate(FEATURE_COLUMNS):
            row[name] = float(feats[j]) if scored else None
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
        step_rows: list[dict[str, Any]] = []
        text_rows: list[dict[str, Any]] = []
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
            steps = batch.steps[i]
            if batch.scorer_id is None and steps is not None:
                step_rows.append({"trace_pk": pk, "steps": steps, "received_at": batch.received_at})
            text = batch.texts[i]
            if text is not None:
                text_rows.append(
                    {
                        "trace_pk": pk,
                        "prompt": text[0],
                        "answer": text[1],
                        "stored_at": batch.received_at,
                    }
                )
            if batch.scorer_id is not None:
                by_scorer.setdefault(batch.scorer_id, []).append((b, i))
        if slice_rows:
            conn.execute(trace_slices.insert(), slice_rows)
        if payload_rows:
            conn.execute(trace_payloads.insert(), payload_rows)
        if step_rows:
            conn.execute(trace_steps.insert(), step_rows)
        if text_rows:
            conn.execute(trace_texts.insert(), text_rows)
        # scorer by scorer in id order (each scorer's rows sorted by `_merge_rows`): every
        # writer locks aggregate rows in one global order, so instances cannot deadlock
        for scorer_id, members in sorted(by_scorer.items()):
            parts = []
            for b in sorted({b for b, _ in members}):
                rows = [i for bb, i in members if bb == b]
                batch = batches[b]
                ts = np.asarray(batch.ts, dtype=np.float64)[rows]
                parts.append(
                    bucket_rows(
                        scorer_id,
                        (ts // self.bucket).astype(np.int64) * self.bucket,
                        [batch.slices[i] for i in rows],
                        batch.terms().take(rows),
                    )
                )
            self._add_to_buckets(conn, _merge_rows(*parts))

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

        A label for a response some labelling design drew carries that design's
        inclusion probability (``label_pi``: a *designed* label, and the item is marked
        labelled); any other label is *plain*. A trace labelled before gets the new label
        (its old contribution to the label sums is taken out); the same label from the
        same source again is "unchanged".
        """
        wanted: dict[str, float] = {}
        for tid, y in labels:
            if y not in (0.0, 1.0):
                raise ConfigError(f"label {y!r} for {tid!r} must be 1 (correct) or 0 (wrong)")
            wanted[tid] = float(y)
        when = time.time() if at is None else at
        labelled: list[str] = []
        unchanged: list[str] = []
        designed: list[str] = []
        found: set[str] = set()
        ids = list(wanted)
        try:
            with self.db.write.begin() as conn:
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    query = sa.select(*TERM_COLUMNS, traces.c.trace_id, traces.c.label_source)
                    query = query.where(traces.c.trace_id.in_(chunk))
                    if self.db.dialect == "postgresql":  # a concurrent relabel waits
                        query = query.with_for_update()
                    rows = conn.execute(query).all()
                    pi_of = inclusion_of(conn, [r.id for r in rows])
                    changed = []
                    for row in rows:
                        found.add(row.trace_id)
                        y = wanted[row.trace_id]
                        pi = pi_of.get(row.id)
                        if pi is not None:
                            designed.append(row.trace_id)
                        same_pi = (row.label_pi is None) == (pi is None)
                        if row.label == y and row.label_source == source and same_pi:
                            unchanged.append(row.trace_id)
                        else:
                            changed.append(row)
                            labelled.append(row.trace_id)
                    self._relabel(conn, changed, wanted, pi_of, source, when)
                    set_status(conn, list(pi_of), "labelled", when=when)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not store labels: {_short(exc)}") from exc
        unknown = tuple(t for t in ids if t not in found)
        fresh = set(labelled)
        return LabelOutcome(
            tuple(labelled), tuple(unchanged), unknown, tuple(t for t in designed if t in fresh)
        )

    def _relabel(
        self,
        conn: sa.Connection,
        rows: Sequence[Any],
        wanted: Mapping[str, float],
        pi_of: Mapping[int, float],
        source: str,
        when: float,
    ) -> None:
        if not rows:
            return
        by_scorer: dict[int, list[Any]] = {}
        for row in rows:
            if row.scorer_id is not None:  # a waiting trace is in no aggregate yet
                by_scorer.setdefault(row.scorer_id, []).append(row)
        for scorer_id, group in sorted(by_scorer.items()):
            buckets = [r.bucket for r in group]
            slices = [json.loads(r.slice) for r in group]
            old = TraceTerms.from_rows(group)
            new = old.with_labels(
                [wanted[r.trace_id] for r in group],
                [pi_of.get(r.id, math.nan) for r in group],
            )
            # take the trace out with its old label and back in with the new one: the
            # other sums cancel, the label sums move
            out = bucket_rows(scorer_id, buckets, slices, old, sign=-1.0)
            into = bucket_rows(scorer_id, buckets, slices, new)
            self._add_to_buckets(conn, _merge_rows(out, into))
        conn.execute(
            sa.update(traces)
            .where(traces.c.id == sa.bindparam("pk"))
            .values(
                label=sa.bindparam("y"),
                label_pi=sa.bindparam("pi"),
                label_source=sa.bindparam("src"),
                labelled_at=sa.bindparam("at"),
            ),
            [
                {
                    "pk": r.id,
                    "y": wanted[r.trace_id],
                    "pi": pi_of.get(r.id),
                    "src": source,
                    "at": when,
                }
                for r in rows
            ],
        )

    def record_skips(self, ids: Iterable[str], *, at: float | None = None) -> SkipOutcome:
        """Record that an annotator skipped these traces: a pending design item becomes
        ``skipped`` (the design then misses it), and an unlabelled trace is marked
        (`SKIPPED` in ``label_source``, no label, so no estimate moves). A labelled trace
        keeps its label (reported as labelled); ids not stored are unknown."""
        wanted = list(dict.fromkeys(ids))
        when = time.time() if at is None else at
        skipped: list[str] = []
        labelled: list[str] = []
        designed: list[str] = []
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
                    if not fresh:
                        continue
                    items = inclusion_of(conn, [r.id for r in fresh])
                    designed.extend(r.trace_id for r in fresh if r.id in items)
                    set_status(conn, list(items), "skipped", when=when, only_pending=True)
                    conn.execute(
                        sa.update(traces)
                        .where(traces.c.id.in_([r.id for r in fresh]))
                        .values(label_source=SKIPPED, labelled_at=when)
                    )
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not store skips: {_short(exc)}") from exc
        known = set(skipped) | set(labelled)
        unknown = tuple(t for t in wanted if t not in known)
        return SkipOutcome(tuple(skipped), tuple(labelled), unknown, tuple(designed))

    # -------------------------------------------------------------- rescoring
    def rescore(
        self,
        target_id: int,
        sources: Sequence[int],
        rescorer: Rescorer | None,
        *,
        calibrate: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
        k_range: tuple[int, int] | None = None,
        stale_only: bool = False,
        limit: int = 2000,
    ) -> int:
        """Move up to ``limit`` traces counted by ``sources`` to scorer ``target_id``.

        Each moved trace gets the estimator's scores ``rescorer(features, extra_features,
        slices)`` (its ``p`` the new ``p_raw``; with ``rescorer`` None the stored terms
        are kept: same estimator, new calibration) and ``p = calibrate(p_raw)``, and moves
        (with its label) from its old scorer's aggregates to the target's, in one
        transaction. ``k_range`` (inclusive) limits the move to traces whose top-k width
        the estimator accepts; ``stale_only`` to traces stored without their per-trace
        terms (``p_classifier`` NULL: an upgraded database), which may already be counted
        by the target (they are then rescored in place). Returns how many moved; 0 means
        nothing is left.
        """
        if not sources:
            return 0
        feature_cols = [traces.c[name] for name in FEATURE_COLUMNS]
        query = (
            sa.select(
                *TERM_COLUMNS,
                traces.c.p_raw,
                traces.c.p_classifier,
                traces.c.extra_features,
                *feature_cols,
            )
            .where(*self._rescore_filter(sources, k_range, stale_only))
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
                slices = [json.loads(r.slice) for r in rows]
                old = TraceTerms.from_rows(rows)
                if rescorer is not None:
                    feats = np.array([[getattr(r, n) for n in FEATURE_COLUMNS] for r in rows])
                    extras = [
                        None if r.extra_features is None else json.loads(r.extra_features)
                        for r in rows
                    ]
                    est = rescorer(feats, extras, slices)
                    p_raw, p_cls = est.p, est.p_classifier
                    new = TraceTerms(calibrate(p_raw), old.y, old.pi, est.seen, est.cal, est.w)
                else:
                    p_raw = np.array([r.p_raw for r in rows], dtype=np.float64)
                    p_cls = np.array(
                        [math.nan if r.p_classifier is None else r.p_classifier for r in rows]
                    )
                    new = TraceTerms(calibrate(p_raw), old.y, old.pi, old.seen, old.cal, old.w)
                _set_scores(
                    conn,
                    [_scores_params(r.id, i, p_raw, p_cls, new) for i, r in enumerate(rows)],
                    scorer_id=target_id,
                )
                buckets = [r.bucket for r in rows]
                moves = [bucket_rows(target_id, buckets, slices, new)]
                old_scorer = np.array([r.scorer_id for r in rows])
                for source in np.unique(old_scorer).tolist():
                    mine = np.flatnonzero(old_scorer == source)
                    moves.append(
                        bucket_rows(
                            int(source),
                            [buckets[i] for i in mine],
                            [slices[i] for i in mine],
                            old.take(mine),
                            sign=-1.0,
                        )
                    )
                self._add_to_buckets(conn, _merge_rows(*moves))
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not rescore traces: {_short(exc)}") from exc
        return len(rows)

    def pending_rescore(
        self,
        sources: Sequence[int],
        k_range: tuple[int, int] | None = None,
        *,
        stale_only: bool = False,
    ) -> int:
        """Traces `rescore` with the same arguments has left to move."""
        if not sources:
            return 0
        with self.db.read.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(traces)
                    .where(*self._rescore_filter(sources, k_range, stale_only))
                ).scalar_one()
            )

    @staticmethod
    def _rescore_filter(
        sources: Sequence[int], k_range: tuple[int, int] | None, stale_only: bool = False
    ) -> list[sa.ColumnElement[bool]]:
        where: list[sa.ColumnElement[bool]] = [traces.c.scorer_id.in_(list(sources))]
        if k_range is not None:
            where.append(traces.c.k.between(k_range[0], k_range[1]))
        if stale_only:
            where.append(traces.c.p_classifier.is_(None))
        return where

    # ------------------------------------------------------- waiting traces
    def score_waiting(
        self,
        target: ScorerInfo,
        names: Sequence[str],
        score: WaitingScorer,
        *,
        calibrate: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
        limit: int = 500,
    ) -> tuple[int, int]:
        """Score up to ``limit`` traces waiting under the model keys ``names`` and count
        them in scorer ``target`` (their model key becomes ``target.model``), in one
        transaction.

        ``score`` computes features and the estimator's scores from the stored steps and
        slices; ``p = calibrate(p_raw)``. A trace the estimator refuses keeps waiting,
        marked with its estimator (not retried by it) and the reason. Returns ``(scored, refused)``;
        ``(0, 0)`` means nothing is left.
        """
        if not names:
            return 0, 0
        sha = target.estimator_sha256
        query = (
            sa.select(
                traces.c.id,
                traces.c.trace_id,
                traces.c.bucket,
                traces.c.slice,
                traces.c.label,
                traces.c.label_pi,
                trace_steps.c.steps,
            )
            .join(trace_steps, trace_steps.c.trace_pk == traces.c.id)
            .where(*self._waiting_filter(names, sha))
            .order_by(traces.c.id)
            .limit(limit)
        )
        if self.db.dialect == "postgresql":
            query = query.with_for_update(of=traces, skip_locked=True)
        try:
            with self.db.write.begin() as conn:
                rows = conn.execute(query).all()
                if not rows:
                    return 0, 0
                out = score([(r.trace_id, r.steps, json.loads(r.slice)) for r in rows])
                ok = [i for i, why in enumerate(out.refused) if not why]
                bad = [i for i, why in enumerate(out.refused) if why]
                if bad:
                    conn.execute(
                        sa.update(trace_steps)
                        .where(trace_steps.c.trace_pk == sa.bindparam("pk"))
                        .values(refused_by=sha, refused_reason=sa.bindparam("why")),
                        [{"pk": rows[i].id, "why": out.refused[i][:2000]} for i in bad],
                    )
                if ok:
                    self._count_scored(conn, target, [rows[i] for i in ok], out, ok, calibrate)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not score waiting traces: {_short(exc)}") from exc
        return len(ok), len(bad)

    def _count_scored(
        self,
        conn: sa.Connection,
        target: ScorerInfo,
        rows: Sequence[Any],
        out: WaitingScores,
        idx: Sequence[int],
        calibrate: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]],
    ) -> None:
        at = np.asarray(idx, dtype=np.intp)
        est = out.scores
        p_raw = np.asarray(est.p[at], dtype=np.float64)
        y = np.array([math.nan if r.label is None else r.label for r in rows], dtype=np.float64)
        pi = np.array([math.nan if r.label_pi is None else r.label_pi for r in rows])
        terms = TraceTerms(calibrate(p_raw), y, pi, est.seen[at], est.cal[at], est.w[at])
        p_cls = est.p_classifier[at]
        params = []
        for i, (r, j) in enumerate(zip(rows, idx, strict=True)):
            extra = out.extra[j]
            params.append(
                {
                    **_scores_params(r.id, i, p_raw, p_cls, terms),
                    "extra": None if extra is None else dumps(dict(extra)),
                    **{f"f_{n}": float(out.features[j, c]) for c, n in enumerate(FEATURE_COLUMNS)},
                }
            )
        _set_scores(
            conn,
            params,
            extra_features=sa.bindparam("extra"),
            scorer_id=target.id,
            model=target.model,
            entropy_mode=out.entropy_mode,
            **{n: sa.bindparam(f"f_{n}") for n in FEATURE_COLUMNS},
        )
        pks = [r.id for r in rows]
        for start in range(0, len(pks), _IN_CHUNK):
            conn.execute(
                trace_steps.delete().where(
                    trace_steps.c.trace_pk.in_(pks[start : start + _IN_CHUNK])
                )
            )
        self._add_to_buckets(
            conn,
            bucket_rows(
                target.id, [r.bucket for r in rows], [json.loads(r.slice) for r in rows], terms
            ),
        )

    def pending_waiting(self, names: Sequence[str], estimator_sha256: str) -> int:
        """Waiting traces under ``names`` that `score_waiting` would still try."""
        if not names:
            return 0
        with self.db.read.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(traces.join(trace_steps, trace_steps.c.trace_pk == traces.c.id))
                    .where(*self._waiting_filter(names, estimator_sha256))
                ).scalar_one()
            )

    def waiting_models(self) -> list[str]:
        """Model keys with traces waiting (with their steps) for an estimator."""
        with self.db.read.connect() as conn:
            return sorted(
                conn.execute(
                    sa.select(traces.c.model)
                    .join(trace_steps, trace_steps.c.trace_pk == traces.c.id)
                    .where(traces.c.scorer_id.is_(None))
                    .distinct()
                ).scalars()
            )

    @staticmethod
    def _waiting_filter(names: Sequence[str], sha: str) -> list[sa.ColumnElement[bool]]:
        return [
            traces.c.scorer_id.is_(None),
            traces.c.model.in_(list(names)),
            sa.or_(trace_steps.c.refused_by.is_(None), trace_steps.c.refused_by != sha),
        ]

    # -------------------------------------------------------------- retention
    def expire_waiting(self, *, max_traces: int, max_age: float, now: float) -> int:
        """Drop the steps of waiting traces beyond the newest ``max_traces`` or older than
        ``max_age`` seconds (the traces stay, *expired*: never scored); returns how many."""
        return self._expire(trace_steps, trace_steps.c.received_at, max_traces, now - max_age)

    def expire_texts(self, *, max_traces: int, max_age: float, now: float) -> int:
        """Delete stored texts beyond the newest ``max_traces`` or older than ``max_age``
        seconds; returns how many."""
        return self._expire(trace_texts, trace_texts.c.stored_at, max_traces, now - max_age)

    def _expire(self, table: sa.Table, at: sa.Column[Any], keep: int, before: float) -> int:
        pk = table.c.trace_pk
        try:
            with self.db.write.begin() as conn:
                n = conn.execute(table.delete().where(at < before)).rowcount or 0
                cutoff = conn.execute(
                    sa.select(pk).order_by(pk.desc()).offset(keep).limit(1)
                ).scalar_one_or_none()
                if cutoff is not None:
                    n += conn.execute(table.delete().where(pk <= cutoff)).rowcount or 0
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(f"could not apply the retention limit: {_short(exc)}") from exc
        return int(n)

    # ------------------------------------------------------------------ reads
    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """One stored trace (None if unknown): its model, slice, times, P, label, meta and
        ``status``: ``scored``, ``waiting``, ``refused`` or ``expired``."""
        query = (
            sa.select(
                traces,
                trace_steps.c.trace_pk.label("has_steps"),
                trace_steps.c.refused_reason,
            )
            .outerjoin(trace_steps, trace_steps.c.trace_pk == traces.c.id)
            .where(traces.c.trace_id == trace_id)
        )
        with self.db.read.connect() as conn:
            r = conn.execute(query).one_or_none()
        if r is None:
            return None
        if r.scorer_id is not None:
            status = "scored"
        elif r.has_steps is None:
            status = "expired"
        else:
            status = "refused" if r.refused_reason else "waiting"
        return {
            "id": r.trace_id,
            "model": r.model,
            "status": status,
            "refused_reason": r.refused_reason,
            "ts": float(r.ts),
            "received_at": float(r.received_at),
            "slice": load_stored(r.slice, {}),
            "n_tokens": int(r.n_tokens),
            "k": int(r.k),
            "p_correct": None if r.p is None else float(r.p),
            "p_raw": None if r.p_raw is None else float(r.p_raw),
            "scorer_id": r.scorer_id,
            "label": r.label,
            "label_source": r.label_source,
            "meta": load_stored(r.meta, {}),  # never fails on what an older version stored
        }

    def texts(self, trace_ids: Sequence[str]) -> dict[str, tuple[Any, str | None]]:
        """Stored ``(prompt, answer)`` per trace id (ids without stored text are absent);
        the prompt decoded from JSON (text or chat messages)."""
        out: dict[str, tuple[Any, str | None]] = {}
        ids = list(dict.fromkeys(trace_ids))
        with self.db.read.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                rows = conn.execute(
                    sa.select(traces.c.trace_id, trace_texts.c.prompt, trace_texts.c.answer)
                    .join(trace_texts, trace_texts.c.trace_pk == traces.c.id)
                    .where(traces.c.trace_id.in_(ids[start : start + _IN_CHUNK]))
                ).all()
                for r in rows:
                    out[r.trace_id] = (load_stored(r.prompt), r.answer)
        return out


def _scores_params(
    pk: int, i: int, p_raw: npt.NDArray[np.float64], p_cls: Any, terms: TraceTerms
) -> dict[str, Any]:
    """Bound values of `_set_scores` for row ``i`` of a rescored chunk."""
    return {
        "pk": pk,
        "pr": float(p_raw[i]),
        "pc": float(terms.p[i]),
        "pk_cls": _num_or_none(p_cls, i),
        "sn": bool(terms.seen[i]),
        "cl": float(terms.cal[i]),
        "wb": pack_w(terms.w[i]),
    }


def _set_scores(conn: sa.Connection, params: list[dict[str, Any]], **values: Any) -> None:
    """Store each trace's new scores and terms (`_scores_params`), and ``values``."""
    conn.execute(
        sa.update(traces)
        .where(traces.c.id == sa.bindparam("pk"))
        .values(
            p_raw=sa.bindparam("pr"),
            p=sa.bindparam("pc"),
            p_classifier=sa.bindparam("pk_cls"),
            seen=sa.bindparam("sn"),
            cal=sa.bindparam("cl"),
            w=sa.bindparam("wb"),
            **values,
        ),
        params,
    )


def _num_or_none(values: Any, i: int) -> float | None:
    """``values[i]`` as a float, None for NaN (or no values)."""
    if values is None:
        return None
    x = float(values[i])
    return None if math.isnan(x) else x


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
        model=row.model,
        finisher=None
        if row.finisher is None
        else SliceFinisher.from_dict(json.loads(row.finisher)),
    )


def _short(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).splitlines()[0][:300]
