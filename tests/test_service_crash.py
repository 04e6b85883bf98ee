"""Crash and shutdown: a real ``sentinel serve`` subprocess is killed with SIGKILL in the
middle of concurrent ingest, restarted, and must hold every trace it acknowledged (and
aggregates that agree with its traces); SIGTERM must drain in-flight requests first."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.service import ServiceProcess
from tests.service_fixtures import corpus_model, corpus_records, db_url

__all__ = ["corpus_model", "corpus_records", "db_url"]

CLIENTS = 6
BATCH = 25


class Traffic:
    """Concurrent clients posting batches of real traces; remembers what was acknowledged."""

    def __init__(self, url: str, records: list[dict[str, Any]], prefix: str) -> None:
        self.url = url
        self.records = records
        self.prefix = prefix
        self.acked: set[str] = set()
        self.sent: list[list[dict[str, Any]]] = []
        self.unanswered: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(c,)) for c in range(CLIENTS)]

    def _client(self, c: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            k = 0
            while not self.stop.is_set():
                batch = [
                    {
                        "id": f"{self.prefix}-{c}-{k}-{j}",
                        "token_entropy": self.records[
                            (c * 997 + k * BATCH + j) % len(self.records)
                        ]["token_entropy"],
                        "slice": {"domain": f"d{j % 4}", "client": str(c)},
                    }
                    for j in range(BATCH)
                ]
                k += 1
                with self.lock:
                    self.sent.append(batch)
                try:
                    r = http.post("/v1/traces", json={"traces": batch})
                except httpx.HTTPError:
                    with self.lock:
                        self.unanswered.append(batch)
                    return  # the server is gone
                if r.status_code == 200:
                    ids = {t["id"] for t in r.json()["traces"]}
                    with self.lock:
                        self.acked |= ids
                else:
                    with self.lock:
                        self.unanswered.append(batch)

    def start(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.acked) >= n, f"only {len(self.acked)} traces acknowledged"

    def join(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _stored_ids(url: str) -> set[str]:
    db = open_database(url)
    try:
        with db.read.connect() as conn:
            return {r[0] for r in conn.execute(sa.select(traces.c.trace_id))}
    finally:
        db.dispose()


def test_kill_9_during_ingest_loses_no_acknowledged_trace(
    db_url: str, corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    svc = ServiceProcess(db_url=db_url, model=corpus_model, log_path=log).start()
    try:
        traffic = Traffic(svc.url, corpus_records, "crash").start()
        traffic.wait_for(250)
        svc.kill()  # SIGKILL: no shutdown handler, no flush
        traffic.join()
    finally:
        svc.kill()
    acked = set(traffic.acked)
    assert svc.proc is not None and svc.proc.returncode == -9

    restarted = ServiceProcess(db_url=db_url, model=corpus_model, log_path=log, port=svc.port)
    with restarted:
        stored = _stored_ids(db_url)
        lost = acked - stored
        assert not lost, f"{len(lost)} acknowledged traces lost, e.g. {sorted(lost)[:3]}"
        db = open_database(db_url)
        report = check_aggregates(db)  # no half-written transaction
        db.dispose()
        assert report.ok, report.problems[:5]
        # clients retry what was never answered: stored now, or a duplicate of a write
        # that committed just before the kill; never counted twice
        with httpx.Client(base_url=restarted.url, timeout=30) as http:
            for batch in traffic.unanswered:
                r = http.post("/v1/traces", json={"traces": batch})
                assert r.status_code == 200
                assert r.json()["accepted"] + r.json()["duplicates"] == len(batch)
        sent = {rec["id"] for batch in traffic.sent for rec in batch}
        assert _stored_ids(db_url) == sent
        totals = httpx.get(restarted.url + "/v1/estimates", params={"since": "1d"}).json()
        assert totals["records"][0]["n"] == len(sent)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sigterm_finishes_in_flight_requests_and_flushes(
    db_url: str, corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    svc = ServiceProcess(db_url=db_url, model=corpus_model, log_path=log).start()
    traffic = Traffic(svc.url, corpus_records, "term").start()
    traffic.wait_for(200)
    code = svc.stop()  # SIGTERM while clients are posting
    traffic.join()
    assert code in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    stored = _stored_ids(db_url)
    assert traffic.acked <= stored
    text = log.read_text()
    assert "every queued trace written" in text and "Application shutdown complete" in text
