"""The ingest pipeline in-process (the path the proxy will use): library validation,
the stored features and P equal the library's and the estimator's, group commit,
back-pressure, and rescoring when the model changes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from entropy_sentinel import CorrectnessEstimator, entropy_profile, read_traces
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.pipeline import IngestPipeline, UnavailableError
from entropy_sentinel.service.scoring import Scorer
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.service.storage.tables import FEATURE_COLUMNS, trace_payloads, traces
from tests.conftest import SMOLLM2_FIXTURES
from tests.service_fixtures import smollm2_model

__all__ = ["smollm2_model"]


@dataclass
class Rig:
    path: Path
    storage: Storage
    scorer: Scorer
    pipeline: IngestPipeline
    metrics: Metrics


def _rig(db: Path, model: Path, **settings: Any) -> Rig:
    storage = Storage(open_database(f"sqlite:///{db}"), 60)
    scorer = Scorer.load(model, storage)
    metrics = Metrics()
    pipeline = IngestPipeline(Settings(**settings), storage, scorer, metrics)
    pipeline.start()
    return Rig(db, storage, scorer, pipeline, metrics)


@pytest.fixture
def rig(smollm2_model: Path, tmp_path: Path) -> Iterator[Rig]:
    r = _rig(tmp_path / "s.db", smollm2_model)
    yield r
    r.pipeline.close()
    r.storage.db.dispose()


def _fixture(name: str) -> Any:
    return json.loads((SMOLLM2_FIXTURES / name).read_text())


def _proxy_records() -> list[Any]:
    """What a proxy holds after answering: responses (plain and streamed), plus slices."""
    out: list[Any] = []
    for i, response in enumerate(_fixture("chat.json")):
        out.append(
            {
                "id": f"chat-{i}",
                "slice": {"domain": "arith", "route": "chat"},
                "logprobs": response,
                "meta": {"model": response["model"]},
            }
        )
    for i, chunks in enumerate(_fixture("chat_stream.json")):
        out.append(
            {
                "id": f"stream-{i}",
                "slice": {"domain": "arith", "route": "stream"},
                "logprobs": chunks,
            }
        )
    out.extend(_fixture("completions.json"))  # bare responses: their own ids, no slice
    return out


def _rows(storage: Storage) -> dict[str, Any]:
    with storage.db.read.connect() as conn:
        return {r.trace_id: r for r in conn.execute(sa.select(traces))}


def test_in_process_records_store_the_librarys_features_and_the_estimators_p(rig: Rig) -> None:
    records = _proxy_records()
    result = asyncio.run(rig.pipeline.ingest_records(records))
    library = read_traces(records, errors="collect")
    assert [(r.index, r.record_id, r.field, r.reason) for r in result.rejections] == [
        (r.index, r.record_id, r.field, r.reason) for r in library.rejected
    ]
    assert result.accepted == len(library) == 17
    rows = _rows(rig.storage)
    est = rig.scorer.estimator
    stored = np.array([[getattr(rows[i], c) for c in FEATURE_COLUMNS] for i in library.ids])
    np.testing.assert_allclose(stored, entropy_profile(library, est.entropy_mode), rtol=1e-12)
    p = np.array([rows[i].p for i in library.ids])
    np.testing.assert_allclose(p, est.predict_traces(library), rtol=1e-12)
    answered = {t.id: t.p_correct for t in result.items}
    assert answered == pytest.approx(dict(zip(library.ids, p.tolist(), strict=True)))
    chat = rows["chat-0"]
    assert json.loads(chat.slice) == {"domain": "arith", "route": "chat"}
    assert json.loads(chat.meta) == {"model": "smollm2-135m-instruct"}
    assert chat.k == 20 and chat.n_tokens == library.lengths[library.ids.index("chat-0")]
    assert check_aggregates(rig.storage.db).ok


def test_blocking_variant_for_threads_without_a_loop(rig: Rig) -> None:
    out = rig.pipeline.ingest_records_sync(_proxy_records()[:3])
    assert out.accepted == 3
    again = rig.pipeline.ingest_records_sync(_proxy_records()[:3])
    assert again.duplicates == 3 and again.accepted == 0


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_waiting_requests_share_one_commit(rig: Rig) -> None:
    records = _proxy_records()[:10]
    lock = _hold_write_lock(rig.path)
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(rig.pipeline.ingest_records_sync(records[:1]))
    )
    first.start()
    time.sleep(0.5)  # the writer took the first request and waits for the lock
    rest = [
        threading.Thread(target=lambda r=r: results.append(rig.pipeline.ingest_records_sync([r])))
        for r in records[1:]
    ]
    for t in rest:
        t.start()
    deadline = time.monotonic() + 10
    while rig.pipeline.pending < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rig.pipeline.pending == 10
    lock.rollback()
    for t in [first, *rest]:
        t.join(30)
    assert sum(r.accepted for r in results) == 10
    sample = rig.metrics.registry.get_sample_value
    assert sample("sentinel_write_group_traces_count") == 2  # 1 trace, then the other 9
    assert sample("sentinel_write_group_traces_sum") == 10
    lock.close()


def test_overload_is_refused_not_queued_without_bound(smollm2_model: Path, tmp_path: Path) -> None:
    rig = _rig(tmp_path / "o.db", smollm2_model, max_pending=3)
    records = _proxy_records()
    lock = _hold_write_lock(rig.path)
    waiting = threading.Thread(target=lambda: rig.pipeline.ingest_records_sync(records[:3]))
    waiting.start()
    deadline = time.monotonic() + 10
    while rig.pipeline.pending < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(UnavailableError, match="max_pending=3") as err:
        rig.pipeline.ingest_records_sync(records[3:4])
    assert err.value.retry_after >= 1
    lock.rollback()
    waiting.join(30)
    assert rig.pipeline.ingest_records_sync(records[3:4]).accepted == 1
    assert rig.pipeline.close() == 0
    with pytest.raises(UnavailableError, match="shutting down"):
        rig.pipeline.ingest_records_sync(records[4:5])
    lock.close()
    rig.storage.db.dispose()


def test_a_new_model_rescores_what_the_old_one_counted(smollm2_model: Path, tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    old = _rig(db, smollm2_model)
    assert old.pipeline.ingest_records_sync(_proxy_records()).accepted == 17
    old.pipeline.close()
    old.storage.db.dispose()

    batch = read_traces(SMOLLM2_FIXTURES / "traces.jsonl", errors="collect")
    other = CorrectnessEstimator(family="lr", calibration="sigmoid", random_state=0)
    other.fit_traces(batch)
    new_model = other.save(tmp_path / "lr-sigmoid.skops")
    new = _rig(db, new_model)
    try:
        active = new.storage.active_scorer()
        assert active is not None and active.id == new.scorer.base.id != old.scorer.base.id
        assert new.scorer.pending() == 17
        assert new.scorer.rescore_pending(limit=5) == 17
        assert new.scorer.pending() == 0
        library = read_traces(_proxy_records(), errors="collect")
        rows = _rows(new.storage)
        p = np.array([rows[i].p for i in library.ids])
        np.testing.assert_allclose(p, other.predict_traces(library), rtol=1e-12)
        assert {r.scorer_id for r in rows.values()} == {active.id}
        assert check_aggregates(new.storage.db).ok
    finally:
        new.pipeline.close()
        new.storage.db.dispose()


def test_raw_records_are_kept_when_configured(smollm2_model: Path, tmp_path: Path) -> None:
    rig = _rig(tmp_path / "raw.db", smollm2_model, store_raw=True)
    try:
        body = json.dumps({"traces": _proxy_records()[:2]}).encode()
        result = asyncio.run(rig.pipeline.ingest_body(body, "application/json"))
        assert result.accepted == 2
        with rig.storage.db.read.connect() as conn:
            raws = conn.execute(sa.select(trace_payloads.c.raw)).scalars().all()
        assert [json.loads(zlib.decompress(r)) for r in raws] == _proxy_records()[:2]
    finally:
        rig.pipeline.close()
        rig.storage.db.dispose()
