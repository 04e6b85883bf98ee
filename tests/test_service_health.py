"""``/healthz`` sees storage failures a ``SELECT 1`` does not: a full disk, a read-only
database file, failing WAL checkpoints, a WAL that keeps growing; and a fatal signal
leaves a traceback in the log. Real SQLite files, real file systems, a real server."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.service import ServiceProcess, ThreadedServer
from tests.service_fixtures import corpus_model, corpus_records

__all__ = ["corpus_model", "corpus_records"]


def _serve(model: Path, db: Path, **settings: Any) -> ThreadedServer:
    return ThreadedServer(
        create_app(Settings(db_url=f"sqlite:///{db}", model_path=model, **settings))
    )


def _batch(records: list[dict[str, Any]], n: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "traces": [
            {
                "id": f"{tag}-{i}",
                "token_entropy": records[i % len(records)]["token_entropy"],
                "slice": {"domain": records[i % len(records)]["slice"]["domain"]},
                "meta": {"note": "x" * 200},
            }
            for i in range(n)
        ]
    }


def _until(url: str, ok: Callable[[httpx.Response], bool], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url + "/healthz", timeout=10)
        if ok(r) or time.monotonic() > deadline:
            return r.json()
        time.sleep(0.5)


@contextlib.contextmanager
def _small_disk(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode()[:200]}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_is_reported_with_its_reason(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    with (
        _small_disk(tmp_path / "disk", "3m") as disk,
        _serve(corpus_model, disk / "s.db", min_free_disk=1) as srv,
    ):
        assert httpx.get(srv.url + "/healthz").json()["status"] == "ok"
        for _ in range(200):
            r = httpx.post(srv.url + "/v1/traces", json=_batch(corpus_records, 500), timeout=60)
            if r.status_code == 503:
                break
            assert r.status_code == 200, r.text[:300]
        assert r.status_code == 503 and "full" in r.json()["detail"]
        health = _until(srv.url, lambda r: r.status_code == 503)
        assert health["status"] == "degraded"
        assert any("database or disk is full" in p for p in health["problems"])
        assert health["storage"]["free_bytes"] < 1 << 20


def test_too_little_free_space_is_degraded(corpus_model: Path, tmp_path: Path) -> None:
    with _serve(corpus_model, tmp_path / "s.db", min_free_disk=1 << 62) as srv:
        r = httpx.get(srv.url + "/healthz")
        assert r.status_code == 503
        assert any("disk nearly full" in p for p in r.json()["problems"])


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """The file made unwritable for this process: immutable as root, read-only otherwise."""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i is not available here: {done.stderr.decode()[:200]}")
        undo = ["chattr", "-i", str(path)]
    else:
        path.chmod(0o444)
        undo = ["chmod", "644", str(path)]
    try:
        yield
    finally:
        subprocess.run(undo, check=False)


def test_a_read_only_database_fails_its_checkpoints_and_is_degraded(
    corpus_model: Path,
    corpus_records: list[dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "s.db"
    with _serve(corpus_model, db, evaluate_every=0.5) as srv:
        assert httpx.post(srv.url + "/v1/traces", json=_batch(corpus_records, 50)).is_success
        with _read_only(db):
            # writes still land in the WAL, but nothing can be checkpointed back
            health = _until(srv.url, lambda r: r.status_code == 503)
            assert health["status"] == "degraded", health
            assert any("WAL checkpoint failed" in p for p in health["problems"])
            deadline = time.monotonic() + 10
            while "storage: WAL checkpoint failed" not in caplog.text:
                assert time.monotonic() < deadline, "the maintenance loop to log it"
                time.sleep(0.2)
        assert _until(srv.url, lambda r: r.status_code == 200)["status"] == "ok"


def test_a_growing_wal_is_a_warning(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    with _serve(corpus_model, db, wal_warn_bytes=64 << 10) as srv:
        assert httpx.post(srv.url + "/v1/traces", json=_batch(corpus_records, 10)).is_success
        reader = sqlite3.connect(db, isolation_level=None)
        try:  # a reader that keeps its snapshot open pins every later page in the WAL
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM traces").fetchone()
            for _ in range(4):
                r = httpx.post(srv.url + "/v1/traces", json=_batch(corpus_records, 300), timeout=60)
                assert r.is_success
            health = _until(srv.url, lambda r: bool(r.json()["warnings"]))
            assert health["status"] == "ok"
            assert any("a checkpoint cannot copy back" in w for w in health["warnings"])
            assert health["storage"]["wal_backlog_bytes"] > 64 << 10
        finally:
            reader.close()


def test_a_fatal_signal_leaves_a_traceback_in_the_log(corpus_model: Path, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    svc = ServiceProcess(db_url=f"sqlite:///{tmp_path / 's.db'}", model=corpus_model, log_path=log)
    with svc:
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGBUS)  # what an unwritable -shm mapping raises
        svc.proc.wait(30)
    text = log.read_text()
    assert "Fatal Python error: Bus error" in text and "Thread" in text
