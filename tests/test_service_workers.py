"""``sentinel serve --workers N``: several worker processes on one port and one database,
background duties (rescoring, alerts, gauges) in exactly one of them, every acknowledged
trace stored, and a clean stop. A real server in a subprocess, on SQLite."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.service import ServiceProcess
from tests.service_fixtures import corpus_model, corpus_records

__all__ = ["corpus_model", "corpus_records"]


def test_two_workers_share_the_work_and_one_runs_the_duties(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    config = tmp_path / "sentinel.toml"
    config.write_text("evaluate_every = 0.2\n")
    log = tmp_path / "service.log"
    db_url = f"sqlite:///{tmp_path / 'sentinel.db'}"
    svc = ServiceProcess(
        db_url=db_url, model=corpus_model, config=config, log_path=log, args=["--workers", "2"]
    )
    with svc:
        batches = [
            {"traces": [dict(r, id=f"w{b}-{i}") for i, r in enumerate(corpus_records[:20])]}
            for b in range(12)
        ]

        def post(body: dict[str, Any]) -> int:
            with httpx.Client(timeout=60) as client:  # a connection of its own each
                r = client.post(svc.url + "/v1/traces", json=body)
                assert r.status_code == 200, r.text
                return int(r.json()["accepted"])

        with ThreadPoolExecutor(6) as pool:
            accepted = sum(pool.map(post, batches))
        assert accepted == 240
        estimates = httpx.get(svc.url + "/v1/estimates", timeout=30).json()
        assert estimates["records"][0]["n"] == 240
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    stop = next(i for i, x in enumerate(lines) if "SIGTERM" in x["msg"])
    duty = [x for x in lines[:stop] if "runs the background duties" in x["msg"]]
    assert len(duty) == 1, duty  # the other worker kept trying, and never got them
    # (when the worker that has them stops, another may take them over)
    flushed = [x for x in lines[stop:] if "every queued trace written" in x["msg"]]
    assert len(flushed) == 2  # both workers flushed at the stop
    db = open_database(db_url)
    try:
        with db.read.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(traces)).scalar() == 240
    finally:
        db.dispose()
