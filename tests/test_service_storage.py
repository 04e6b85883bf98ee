"""Storage of the monitoring service, on SQLite and PostgreSQL (``postgres`` marker).

The invariant checked throughout: the per-bucket aggregates equal a recount from the
stored traces (`check_aggregates`), and estimates summed from buckets equal
`SliceStats` computed directly from the stored probabilities and labels.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError, StorageError
from entropy_sentinel.service.alerts import list_alerts
from entropy_sentinel.service.estimates import EstimateQuery, estimate, slice_stats, slice_values
from entropy_sentinel.service.recalibration import apply_calibration
from entropy_sentinel.service.records import ScorerInfo
from entropy_sentinel.service.storage.buckets import TraceTerms, bucket_rows
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import current_revision, head_revision, open_database
from entropy_sentinel.service.storage.store import SKIPPED, SkipOutcome, Storage
from entropy_sentinel.service.storage.tables import FEATURE_COLUMNS, metadata, traces
from tests.service_fixtures import T0, db_url, scored_traces

__all__ = ["db_url"]

BUCKET = 60
SHA = "a" * 64


def _storage(url: str) -> Storage:
    return Storage(open_database(url), BUCKET)


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    store = _storage(db_url)
    yield store
    store.db.dispose()


def _scorer(storage: Storage, calibration: dict[str, Any] | None = None) -> ScorerInfo:
    scorer = storage.register_scorer(
        estimator_sha256=SHA,
        entropy_mode="topk",
        features=["h_max"],
        model_sd=0.02,
        card={"family": "lr"},
        calibration=calibration,
    )
    if calibration is None:
        storage.activate(scorer.id)
    return scorer


def _stored(storage: Storage) -> list[Any]:
    with storage.db.read.connect() as conn:
        return list(conn.execute(sa.select(traces).order_by(traces.c.id)).all())


# ----------------------------------------------------------------- migrations
def test_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    db = open_database(db_url)
    with db.read.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    assert current_revision(db) == head_revision()
    db.dispose()
    again = open_database(db_url)  # idempotent: nothing left to apply
    assert current_revision(again) == head_revision()
    again.dispose()


def test_a_0001_database_upgrades_in_place_with_all_its_data(db_url: str) -> None:
    """A database written by the first schema (one estimator, no model names) keeps every
    trace, slice row, payload, aggregate and open alert, now as the model ``""``; on
    SQLite the copy of ``traces`` must not cascade-delete the rows that reference it."""
    db = open_database(db_url, revision="0001")
    assert current_revision(db) == "0001"
    n, t = 40, [T0 + 30 * i for i in range(40)]
    p = np.linspace(0.1, 0.9, n)
    labels = np.where(np.arange(n) % 5 == 0, 1.0, np.nan)
    slices = [{"domain": "ab"[i % 2]} for i in range(n)]
    buckets = [int(x // BUCKET) * BUCKET for x in t]
    old = sa.MetaData()
    tables = {
        name: sa.Table(name, old, autoload_with=db.read)
        for name in (
            "scorers",
            "sentinel_meta",
            "traces",
            "trace_slices",
            "trace_payloads",
            "slice_buckets",
            "alerts",
        )
    }
    with db.write.begin() as conn:
        conn.execute(
            tables["scorers"].insert(),
            {
                "estimator_sha256": SHA,
                "entropy_mode": "topk",
                "features": "[]",
                "model_sd": 0.02,
                "card": "{}",
                "created_at": T0,
            },
        )
        conn.execute(
            tables["sentinel_meta"].insert(),
            [{"key": "bucket", "value": "60"}, {"key": "active_scorer", "value": "1"}],
        )
        conn.execute(
            tables["traces"].insert(),
            [
                {
                    "trace_id": f"old-{i}",
                    "ts": t[i],
                    "bucket": buckets[i],
                    "received_at": T0,
                    "slice": json.dumps(slices[i]),
                    "n_tokens": 5,
                    "k": 20,
                    "entropy_mode": "topk",
                    **dict.fromkeys(FEATURE_COLUMNS, 0.5),
                    "p_raw": p[i],
                    "p": p[i],
                    "scorer_id": 1,
                    "label": None if math.isnan(labels[i]) else labels[i],
                    "meta": None,
                }
                for i in range(n)
            ],
        )
        conn.execute(
            tables["trace_slices"].insert(),
            [
                {
                    "trace_pk": i + 1,
                    "dimension": "domain",
                    "value": slices[i]["domain"],
                    "bucket": buckets[i],
                }
                for i in range(n)
            ],
        )
        conn.execute(
            tables["trace_payloads"].insert(), [{"trace_pk": i + 1, "raw": b"x"} for i in range(n)]
        )
        old_columns = set(tables["slice_buckets"].c.keys())
        conn.execute(
            tables["slice_buckets"].insert(),
            [
                {k: v for k, v in row.items() if k in old_columns}
                for row in bucket_rows(1, buckets, slices, TraceTerms.plain(p, labels))
            ],
        )
        conn.execute(
            tables["alerts"].insert(),
            {
                "rule": "low",
                "dimension": "domain",
                "value": "a",
                "opened_at": T0,
                "evidence": "{}",
                "last_evidence": "{}",
            },
        )
    db.dispose()

    db = open_database(db_url)  # what `sentinel serve` does at start
    try:
        assert current_revision(db) == head_revision()
        with db.read.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
            assert diff == []
            counts = {
                name: conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar()
                for name in ("traces", "trace_slices", "trace_payloads", "alerts")
            }
            assert counts == {"traces": n, "trace_slices": n, "trace_payloads": n, "alerts": 1}
            rows = conn.execute(sa.select(traces).order_by(traces.c.id)).all()
        assert {r.model for r in rows} == {""} and [r.p for r in rows] == pytest.approx(p)
        storage = Storage(db, BUCKET)
        active = storage.active_scorer("")
        assert active is not None and active.id == 1 and active.model == ""
        assert storage.meta("active_scorer") is None  # moved to the models table
        assert check_aggregates(db).ok
        stats = {k: v.stats for k, v in slice_stats(db, 1, "domain", T0, T0 + 3600).items()}
        assert stats["a"].estimate == pytest.approx(p[::2].mean())
        assert stats["a"].n_labelled == int((~np.isnan(labels[::2])).sum())
        [alert] = list_alerts(db)
        assert alert["model"] == "" and alert["status"] == "open"
    finally:
        db.dispose()


def test_concurrent_first_starts_migrate_once(db_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_database(db_url).dispose()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db = open_database(db_url)
    assert current_revision(db) == head_revision()
    db.dispose()


def test_database_refuses_what_would_lose_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        open_database("sqlite://")
    with pytest.raises(ConfigError, match="does not exist"):
        open_database(f"sqlite:///{tmp_path}/missing/dir/s.db")
    with pytest.raises(ConfigError, match="not supported"):
        open_database("mysql://localhost/x")
    url = f"sqlite:///{tmp_path}/s.db"
    db = open_database(url)
    Storage(db, 60)
    with pytest.raises(ConfigError, match="aggregates in 60 s buckets"):
        Storage(db, 300)
    db.dispose()


def test_unreachable_postgres_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot connect"):
        open_database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


# --------------------------------------------------------------------- writes
def test_write_stores_each_id_once_and_reports_duplicates(storage: Storage) -> None:
    scorer = _scorer(storage)
    first = scored_traces(scorer, [f"t{i}" for i in range(10)])
    [out] = storage.write([first])
    assert out.stored == frozenset(first.trace_ids) and not out.duplicates

    # a retry of t3..t5 plus new ids, and an id repeated across batches of one group
    again = scored_traces(scorer, ["t3", "t4", "t5", "n1", "n2"])
    other = scored_traces(scorer, ["n2", "n3"])
    out_a, out_b = storage.write([again, other])
    assert out_a.stored == {"n1", "n2"} and out_a.duplicates == {"t3", "t4", "t5"}
    assert out_b.stored == {"n3"} and out_b.duplicates == {"n2"}

    rows = _stored(storage)
    assert len(rows) == 13 and len({r.trace_id for r in rows}) == 13
    assert check_aggregates(storage.db).ok
    stats = slice_stats(storage.db, scorer.id, "domain", T0, T0 + BUCKET)["algebra"].stats
    direct = SliceStats.from_arrays([r.p for r in rows])
    assert stats.n == direct.n == 13
    assert stats.estimate == pytest.approx(direct.estimate, rel=1e-12)
    assert stats.sum_pq == pytest.approx(direct.sum_pq, rel=1e-12)


def test_slices_features_meta_and_labels_are_stored_as_given(storage: Storage) -> None:
    scorer = _scorer(storage)
    batch = scored_traces(
        scorer,
        ["a", "b"],
        slices=[{"domain": "chemistry", "customer": "acme"}, {}],
        labels=[1.0, np.nan],
        ts=[T0 + 5.25, T0 + 3600.5],
    )
    storage.write([batch])
    a, b = _stored(storage)
    assert a.slice == '{"domain":"chemistry","customer":"acme"}' and b.slice == "{}"
    assert (a.ts, a.bucket, b.bucket) == (T0 + 5.25, T0, T0 + 3600)
    assert [a.h_max, a.h_sea] == [batch.features[0, 0], batch.features[0, 10]]
    assert (a.label, a.label_source, b.label) == (1.0, "ingest", None)
    assert a.meta == '{"i":0}'
    values = slice_values(storage.db, scorer.id, T0, T0 + 7200)
    assert values == {"*": {"*": 2}, "domain": {"chemistry": 1}, "customer": {"acme": 1}}
    assert check_aggregates(storage.db).ok


# --------------------------------------------------------------------- labels
def test_labels_attach_replace_and_report_unknown_ids(storage: Storage) -> None:
    scorer = _scorer(storage)
    batch = scored_traces(scorer, [f"t{i}" for i in range(6)], p=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    storage.write([batch])
    out = storage.apply_labels([("t0", 1.0), ("t1", 0.0), ("ghost", 1.0)], source="alice")
    assert out.labelled == ("t0", "t1") and out.unknown == ("ghost",) and not out.unchanged
    out = storage.apply_labels([("t0", 1.0), ("t1", 1.0), ("t2", 0.0)], source="alice")
    assert out.unchanged == ("t0",) and set(out.labelled) == {"t1", "t2"}
    assert check_aggregates(storage.db).ok

    stats = slice_stats(storage.db, scorer.id, "*", T0, T0 + BUCKET)["*"].stats
    y = np.array([1.0, 1.0, 0.0, np.nan, np.nan, np.nan])
    direct = SliceStats.from_arrays(batch.p, y)
    assert (stats.n, stats.n_labelled, stats.sum_y) == (6, 3, 2.0)
    assert stats.ppi_interval().estimate == pytest.approx(direct.ppi_interval().estimate)
    assert stats.ppi_interval().lower == pytest.approx(direct.ppi_interval().lower)
    with pytest.raises(ConfigError, match="must be 1"):
        storage.apply_labels([("t0", 0.5)], source="alice")


def test_skips_are_recorded_without_moving_any_estimate(storage: Storage) -> None:
    scorer = _scorer(storage)
    storage.write([scored_traces(scorer, [f"t{i}" for i in range(4)], p=[0.9, 0.8, 0.7, 0.6])])
    storage.apply_labels([("t0", 1.0)], source="alice")
    before = slice_stats(storage.db, scorer.id, "*", T0, T0 + BUCKET)["*"]
    out = storage.record_skips(["t1", "t0", "ghost", "t1"])
    assert out == SkipOutcome(skipped=("t1",), labelled=("t0",), unknown=("ghost",))
    rows = {r.trace_id: r for r in _stored(storage)}
    assert (rows["t1"].label, rows["t1"].label_source) == (None, SKIPPED)
    assert (rows["t0"].label, rows["t0"].label_source) == (1.0, "alice")  # keeps its label
    assert slice_stats(storage.db, scorer.id, "*", T0, T0 + BUCKET)["*"] == before
    storage.apply_labels([("t1", 0.0)], source="alice")  # labelled after all
    assert slice_stats(storage.db, scorer.id, "*", T0, T0 + BUCKET)["*"].stats.n_labelled == 2
    assert check_aggregates(storage.db).ok


def test_a_design_draws_from_the_current_minute_during_its_first_second(
    storage: Storage,
) -> None:
    """A range ending 0.5 s into a bucket holds that bucket's traces (it starts in the
    range): the design's candidates once lost them (``bucket < int(until)``)."""
    from entropy_sentinel.service.prioritize import prioritize

    scorer = _scorer(storage)
    storage.write([scored_traces(scorer, ["now-0", "now-1"], ts=[T0 + 0.2, T0 + 0.3])])
    pri = prioritize(storage.db, scorer, by="*", budget=10, since=T0 - BUCKET, until=T0 + 0.5)
    assert pri.design is not None and {r.trace_id for r in pri.requests} == {"now-0", "now-1"}


# ------------------------------------------------------------------ rescoring
def test_rescore_moves_every_trace_to_the_recalibrated_scorer(storage: Storage) -> None:
    base = _scorer(storage)
    p = np.linspace(0.05, 0.95, 25)
    storage.write([scored_traces(base, [f"t{i}" for i in range(25)], p=p.tolist())])
    storage.apply_labels([("t0", 0.0), ("t24", 1.0)], source="bob")
    spec = {"method": "isotonic", "x": [0.0, 1.0], "y": [0.2, 0.6]}
    recal = _scorer(storage, calibration=spec)
    storage.activate(recal.id)

    def calibrate(s: np.ndarray) -> np.ndarray:
        return apply_calibration(spec, s)

    assert storage.pending_rescore([base.id]) == 25
    moved = storage.rescore(recal.id, [base.id], None, calibrate=calibrate, limit=10)
    assert moved == 10 and storage.pending_rescore([base.id]) == 15
    while storage.rescore(recal.id, [base.id], None, calibrate=calibrate, limit=10):
        pass
    assert storage.pending_rescore([base.id]) == 0
    rows = _stored(storage)
    assert {r.scorer_id for r in rows} == {recal.id}
    assert [r.p for r in rows] == pytest.approx(calibrate(p).tolist())
    assert [r.p_raw for r in rows] == pytest.approx(p.tolist())
    report = check_aggregates(storage.db)
    assert report.ok, report.problems
    new = slice_stats(storage.db, recal.id, "*", T0, T0 + BUCKET)["*"].stats
    assert new.n == 25 and new.estimate == pytest.approx(float(calibrate(p).mean()))
    assert new.n_labelled == 2
    assert slice_stats(storage.db, base.id, "*", T0, T0 + BUCKET) == {}


# ------------------------------------------------------------------ estimates
def test_windows_and_reference_are_sums_of_buckets(storage: Storage) -> None:
    scorer = _scorer(storage)
    hours = [0, 0, 1, 1, 1, 2]
    ts = [T0 + 3600 * h + 7 * i for i, h in enumerate(hours)]
    p = [0.9, 0.7, 0.4, 0.6, 0.5, 0.8]
    slices = [{"domain": d} for d in ["a", "b", "a", "a", "b", "a"]]
    storage.write([scored_traces(scorer, [f"t{i}" for i in range(6)], ts=ts, p=p, slices=slices)])
    start = math.floor(T0 / 3600) * 3600
    query = EstimateQuery(
        by="domain", window=3600, since=start, until=start + 4 * 3600, reference=3600
    )
    result = estimate(storage.db, scorer, BUCKET, query, now=start + 5 * 3600)
    got = {(r.value, r.window_start): r for r in result.records}
    assert start + 3600 > T0 + 7 * 6  # hour 0 of the traces is the first window
    a1 = got[("a", start + 3600)]
    assert a1.n == 2 and a1.interval.estimate == pytest.approx(0.5)
    assert a1.reference is not None and a1.reference.stats.n == 1
    assert a1.change == pytest.approx(0.5 - 0.9)
    assert a1.interval.upper - a1.interval.lower > 0
    whole = estimate(storage.db, scorer, BUCKET, EstimateQuery(by="*"), now=start + 5 * 3600)
    [everything] = whole.records
    assert everything.n == 6 and everything.interval.estimate == pytest.approx(np.mean(p))
    with pytest.raises(ConfigError, match="whole number"):
        estimate(storage.db, scorer, BUCKET, EstimateQuery(by="domain", window=90), now=T0)


# ------------------------------------------------------------------ properties
_op = st.one_of(
    st.tuples(
        st.just("write"),
        st.lists(
            st.tuples(
                st.integers(0, 30),  # id
                st.integers(0, 5),  # bucket offset
                st.sampled_from(["a", "b", "c"]),  # domain
                st.floats(0.0, 1.0),  # p
                st.sampled_from([np.nan, 0.0, 1.0]),  # label at ingest
            ),
            min_size=1,
            max_size=8,
        ),
    ),
    st.tuples(
        st.just("label"),
        st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.0, 1.0])), max_size=6),
    ),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(_op, min_size=1, max_size=6))
def test_aggregates_always_equal_a_recount(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any]
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('prop') / 's.db'}"
    storage = _storage(url)
    scorer = _scorer(storage)
    for kind, payload in ops:
        if kind == "write":
            storage.write(
                [
                    scored_traces(
                        scorer,
                        [f"t{i}" for i, *_ in payload],
                        ts=[T0 + BUCKET * b for _, b, *_ in payload],
                        slices=[{"domain": d} for _, _, d, *_ in payload],
                        p=[p for *_, p, _ in payload],
                        labels=[y for *_, y in payload],
                    )
                ]
            )
        else:
            storage.apply_labels([(f"t{i}", y) for i, y in payload], source="prop")
    report = check_aggregates(storage.db)
    assert report.ok, report.problems
    rows = _stored(storage)
    for domain in "abc":
        mine = [r for r in rows if f'"{domain}"' in r.slice]
        sums = slice_stats(storage.db, scorer.id, "domain", T0, T0 + 6 * BUCKET).get(domain)
        got = None if sums is None else sums.stats
        if not mine:
            assert got is None
            continue
        direct = SliceStats.from_arrays(
            [r.p for r in mine], [np.nan if r.label is None else r.label for r in mine]
        )
        assert got is not None and got.n == direct.n
        assert got.n_labelled == direct.n_labelled and got.sum_y == direct.sum_y
        assert got.estimate == pytest.approx(direct.estimate, abs=1e-12)
        assert got.sum_r == pytest.approx(direct.sum_r, abs=1e-9)
    storage.db.dispose()
