"""Two `sentinel serve` processes on one PostgreSQL database under concurrent ingest,
labels and recalibrations (rescoring): no acknowledged trace or label is lost, the
aggregates equal a recount (`sentinel report --check`), every trace ends counted by its
model's active scorer, and each alert is raised once and delivered at least once,
never twice at the same time (real processes, real HTTP, real PostgreSQL, the
committed SmolLM2 corpus as traffic; `benchmarks/load_ingest.py --instances 1,2`
measures the same set-up's throughput)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from entropy_sentinel.cli import app
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.service.storage.tables import alerts, models, slice_buckets, traces
from entropy_sentinel.testing.service import ServiceProcess
from tests.service_fixtures import corpus_model, corpus_records, db_url, scored_traces
from tests.test_service_alerts import Receiver

__all__ = ["corpus_model", "corpus_records", "db_url"]

BATCH = 20
MODELS = ("smol-a", "smol-b")
INGEST_THREADS = 4


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        r.delay = 0.3  # slow: deliveries of one event by both instances would overlap
        yield r


UNAVAILABLE: list[str] = []


def _post(url: str, path: str, body: Any) -> Any:
    """POST until answered 200 (a 503 says retry; each is listed in `UNAVAILABLE`)."""
    for _ in range(50):
        r = httpx.post(url + path, json=body, timeout=120)
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503, r.text
        UNAVAILABLE.append(r.text)
        time.sleep(float(r.headers.get("Retry-After", "0.5")))
    raise AssertionError(f"{path}: still 503 after 50 attempts")


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_two_instances_share_one_database_without_loss_or_double_alerts(
    db_url: str,
    corpus_model: Path,
    corpus_records: list[dict[str, Any]],
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    config = tmp_path / "sentinel.toml"
    config.write_text(
        f'webhook_url = "{receiver.url}"\n'
        'evaluate_every = "0.5s"\n'
        "[[alerts]]\n"
        'name = "low"\nkind = "below"\ndimension = "domain"\nthreshold = 0.99\n'
        'window = "1h"\nmin_count = 10\n'
    )
    records = [{**r, "id": f"i-{r['id']}"} for r in corpus_records]
    for i, r in enumerate(records):
        r.pop("correct")  # labels come later, through POST /v1/labels
        r["model"] = MODELS[i % 2]  # two models, so a group holds traces of both
    truth = {f"i-{r['id']}": bool(r["correct"]) for r in corpus_records}
    instances = [
        ServiceProcess(
            db_url=db_url,
            model=None,
            models=[f"{name}={corpus_model}" for name in MODELS],
            config=config,
            log_path=tmp_path / f"s{i}.log",
        )
        for i in range(2)
    ]
    for svc in instances:  # one after the other: the second finds the schema migrated
        svc.start(timeout=120)
    urls = [svc.url for svc in instances]
    acked: set[str] = set()
    expected: dict[str, bool] = {}
    lock = threading.Lock()
    done = threading.Event()

    def ingest(part: int) -> None:
        mine = records[part::INGEST_THREADS]
        for n, start in enumerate(range(0, len(mine), BATCH)):
            body = {"traces": mine[start : start + BATCH]}
            out = _post(urls[(part + n) % 2], "/v1/traces", body)
            with lock:
                acked.update(t["id"] for t in out["traces"])

    def label() -> None:
        # labels of acknowledged traces, to both instances; every fifth batch first
        # wrong, then right again (a relabel), while ingest and rescoring run
        n = 0
        while not done.is_set() or len(expected) < len(acked):
            with lock:
                todo = sorted(acked - set(expected))[:50]
            if not todo:
                time.sleep(0.05)
                continue
            if n % 5 == 0:
                wrong = [{"id": t, "correct": not truth[t]} for t in todo]
                _post(urls[(n + 1) % 2], "/v1/labels", {"labels": wrong, "source": "first"})
            rows = [{"id": t, "correct": truth[t]} for t in todo]
            _post(urls[n % 2], "/v1/labels", {"labels": rows})
            with lock:
                expected.update((t, truth[t]) for t in todo)
            n += 1

    def recalibrate() -> None:
        # four recalibrations, each model's from both instances, while traces arrive
        for i in range(4):
            while len(expected) < 200 * (i + 1) and not done.is_set():
                time.sleep(0.05)
            body = {"model": MODELS[i // 2], "force": True, "min_labels": 50}
            _post(urls[i % 2], "/v1/recalibrate", body)

    threads = [threading.Thread(target=ingest, args=(p,)) for p in range(INGEST_THREADS)]
    helpers = [threading.Thread(target=label), threading.Thread(target=recalibrate)]
    for t in threads + helpers:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in helpers:
        t.join()
    assert acked == set(truth)
    assert not UNAVAILABLE, UNAVAILABLE[:3]  # e.g. a deadlock between the instances

    db = open_database(db_url)
    try:
        # the maintenance of both instances moves every trace to its model's active
        # scorer, and raises and delivers the alert of every model and domain
        on_active = sa.and_(
            models.c.name == traces.c.model, models.c.active_scorer_id == traces.c.scorer_id
        )
        n_alerts = len(MODELS) * len({r["slice"]["domain"] for r in corpus_records})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with db.read.connect() as conn:
                behind = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(traces)
                    .where(~sa.exists().where(on_active).correlate(traces))
                ).scalar_one()
                delivered = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(alerts)
                    .where(alerts.c.notified_at.is_not(None))
                ).scalar_one()
            if not behind and delivered >= n_alerts:
                break
            time.sleep(0.5)
        assert not behind and delivered >= n_alerts, (behind, delivered)
        for svc in instances:
            assert svc.stop() in (0, -15)

        with db.read.connect() as conn:
            stored = dict(conn.execute(sa.select(traces.c.trace_id, traces.c.label)).all())
            counted = conn.execute(
                sa.select(slice_buckets.c.n).where(
                    slice_buckets.c.scorer_id.in_(sa.select(models.c.active_scorer_id)),
                    slice_buckets.c.dimension == "*",
                )
            ).scalars()
            episodes = conn.execute(
                sa.select(
                    alerts.c.id,
                    alerts.c.rule,
                    alerts.c.model,
                    alerts.c.dimension,
                    alerts.c.value,
                    alerts.c.resolved_at,
                )
            ).all()
    finally:
        db.dispose()
    assert set(stored) == set(truth)  # nothing lost
    assert {t: bool(y) for t, y in stored.items()} == expected == truth  # the last label won
    result = CliRunner().invoke(app, ["report", "--db", db_url, "--by", "domain", "--check"])
    assert result.exit_code == 0, result.output
    assert "aggregates consistent" in result.output
    assert sum(counted) == len(truth)  # every trace counted once, by its active scorer

    # each alert raised once: one episode per (rule, model, slice), every domain of
    # both models below 0.99 (the corpus' best domain is 71% correct), none resolved
    assert all(e.resolved_at is None for e in episodes)
    keys = [(e.rule, e.model, e.dimension, e.value) for e in episodes]
    assert len(keys) == len(set(keys)) == n_alerts
    # ... delivered at least once, never twice at the same time
    firing = {f"sentinel-alert-{e.id}-firing" for e in episodes}
    calls = sorted(receiver.spans, key=lambda c: c[1])
    assert firing <= {c[0] for c in calls}
    for key in firing:
        spans = [(began, ended) for k, began, ended in calls if k == key]
        for (_, end), (began, _) in itertools.pairwise(spans):
            assert began >= end, f"{key} delivered twice at the same time"


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_writes_of_several_models_lock_aggregates_in_one_order(db_url: str) -> None:
    # regression: a group of traces of two models (two scorers) updated the aggregates
    # scorer by scorer in the order the group met them, so two instances writing
    # (model b, model a) and (model a, model b) at once deadlocked (PostgreSQL then
    # failed one write after 1 s: a 503 under two-instance load)
    first = Storage(open_database(db_url, migrate=True), 60)
    a, b = (
        first.register_scorer(
            estimator_sha256="e" * 64,
            entropy_mode="topk",
            features=[],
            model_sd=0.1,
            card={},
            model=name,
        )
        for name in ("model-a", "model-b")
    )
    second = Storage.attach(open_database(db_url))
    paused, resume = threading.Event(), threading.Event()

    @sa.event.listens_for(first.db.write, "after_cursor_execute")
    def pause_after_first_aggregates(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO slice_buckets") and not paused.is_set():
            paused.set()  # holds the first scorer's aggregate rows ...
            resume.wait(30)  # ... while the other writer starts

    failures: list[BaseException] = []

    def write(storage: Storage, order: tuple[Any, Any], tag: str) -> None:
        try:
            storage.write(
                [scored_traces(s, [f"{tag}-{s.id}-{i}" for i in range(5)]) for s in order]
            )
        except BaseException as exc:
            failures.append(exc)

    one = threading.Thread(target=write, args=(first, (b, a), "one"))
    two = threading.Thread(target=write, args=(second, (a, b), "two"))
    try:
        one.start()
        assert paused.wait(30)
        two.start()
        time.sleep(0.5)  # lets the second writer reach the rows the first one holds
        resume.set()
        one.join()
        two.join()
        assert not failures, failures
        assert check_aggregates(first.db).ok
    finally:
        resume.set()
        for thread in (one, two):
            if thread.ident is not None:
                thread.join()
        first.db.dispose()
        second.db.dispose()
