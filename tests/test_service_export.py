"""The service's traces back out as Parquet in the trace format: over HTTP
(``GET /v1/export/traces``, streamed) and with ``sentinel export --db``, reading back
into the `TraceBatch` that was ingested (a real service over real HTTP on real SQLite
and PostgreSQL, real SmolLM2 corpus traces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from entropy_sentinel import TraceBatch, read_traces
from entropy_sentinel.cli import app
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.export import EXPORT_METADATA_KEY
from entropy_sentinel.service.settings import ModelSpec, Settings
from entropy_sentinel.testing.service import ThreadedServer
from tests.models_fixtures import corpus_models, records_of, traffic_indices
from tests.service_fixtures import T0, db_url
from tests.test_service_texts import INGEST, KEYS, READ, TEXT

__all__ = ["corpus_models", "db_url"]

ANSWER = "2 + 3 = 5. My key is sk-abcdefghijklmnopqrstuvwx."


def _records() -> list[dict[str, Any]]:
    """30 scored traces of smol-a (some labelled) and 5 of smol-z, which has no
    estimator (they wait, with their steps), at known times, with meta and text."""
    scored = records_of(traffic_indices(30, seed=3), "smol-a", prefix="x", labelled=True)
    waiting = records_of(traffic_indices(5, seed=4), "smol-z", prefix="w")
    out = scored + waiting
    for i, r in enumerate(out):
        r["timestamp"] = T0 + 60 * i
        r["meta"] = {"n": i, "route": "/chat"}
        r["prompt"], r["answer"] = "what is 2 + 3?", ANSWER
        if i % 3 == 0:
            r.pop("correct", None)
    return out


def _serve(url: str, model: Path, **kw: Any) -> ThreadedServer:
    settings = Settings(
        db_url=url,
        models=(ModelSpec("smol-a", model),),
        api_keys=KEYS,
        evaluate_every=3600.0,
        **kw,
    )
    return ThreadedServer(create_app(settings))


def _post(srv: ThreadedServer, path: str, body: Any) -> Any:
    r = httpx.post(
        srv.url + path, json=body, headers={"Authorization": f"Bearer {INGEST}"}, timeout=60
    )
    assert r.status_code == 200, r.text
    return r.json()


def _export(srv: ThreadedServer, key: str, **params: Any) -> httpx.Response:
    return httpx.get(
        srv.url + "/v1/export/traces",
        params=params,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def _read(content: bytes, tmp_path: Path) -> TraceBatch:
    path = tmp_path / "read.parquet"
    path.write_bytes(content)
    return read_traces(path)


def _assert_same(got: TraceBatch, want: TraceBatch) -> None:
    assert got.ids == want.ids
    np.testing.assert_array_equal(got.offsets, want.offsets)
    # float32 at rest: the recorded logprobs are float32 values (docs/formats.md)
    np.testing.assert_array_equal(got.sampled_logprob, want.sampled_logprob.astype(np.float32))
    np.testing.assert_array_equal(got.sampled_in_topk, want.sampled_in_topk)
    np.testing.assert_array_equal(got.topk_logprobs, want.topk_logprobs.astype(np.float32))
    assert got.slices == want.slices and got.meta == want.meta and got.models == want.models
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.timestamps, want.timestamps)
    np.testing.assert_array_equal(got.requested_k, want.requested_k)


def test_stored_traces_export_as_parquet_and_read_back_the_same(
    db_url: str, corpus_models: dict[str, Path], tmp_path: Path
) -> None:
    records = _records()
    with _serve(db_url, corpus_models["smol-a"], store_raw=True, store_text=True) as srv:
        assert _post(srv, "/v1/traces", {"traces": records})["accepted"] == len(records)
        relabel = {"id": records[1]["id"], "correct": not records[1]["correct"]}
        _post(srv, "/v1/labels", {"labels": [relabel]})
        records[1]["correct"] = relabel["correct"]  # the export carries the current label

        r = _export(srv, READ)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/vnd.apache.parquet"
        assert r.headers["x-sentinel-without-steps"] == "0"
        path = tmp_path / "export.parquet"
        path.write_bytes(r.content)
        got = read_traces(path)
        want = read_traces(
            [{k: v for k, v in x.items() if k not in ("prompt", "answer")} for x in records]
        )
        _assert_same(got, want)
        assert got.prompts == (None,) * len(records) and got.answers == (None,) * len(records)
        footer = json.loads(pq.ParquetFile(path).metadata.metadata[EXPORT_METADATA_KEY.encode()])
        assert footer == {"exported": 35, "without_steps": 0, "unreadable": 0, "unreadable_ids": []}

        # filters: event time [since, until) and model; text only for the text scope
        r = _export(srv, READ, since=str(T0 + 60 * 10), until=str(T0 + 60 * 20), model="smol-a")
        part = _read(r.content, tmp_path)
        assert part.ids == tuple(x["id"] for x in records[10:20])
        assert _export(srv, READ, model="smol-z").status_code == 200
        waiting = _read(_export(srv, READ, model="smol-z").content, tmp_path)
        assert waiting.ids == tuple(x["id"] for x in records[30:])
        denied = _export(srv, READ, text="true")
        assert denied.status_code == 403 and "text" in denied.json()["detail"]
        shown = _read(_export(srv, TEXT, text="true").content, tmp_path)
        assert shown.answers[0] == "2 + 3 = 5. My key is [redacted]."  # redacted as stored
        assert b"sk-abcdef" not in _export(srv, TEXT, text="true").content
        bad = _export(srv, READ, format="csv")
        assert bad.status_code == 400 and "parquet" in bad.json()["detail"]
        assert _export(srv, INGEST).status_code == 403
        assert (
            _export(srv, READ, since="2030-01-01T00:00:00Z", until="2029-01-01").status_code == 400
        )

    # the CLI reads the database directly and writes the same traces
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["export", "--db", db_url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 35 traces" in result.output
    _assert_same(read_traces(out), want)


def test_traces_stored_without_steps_are_counted_not_exported(
    db_url: str, corpus_models: dict[str, Path], tmp_path: Path
) -> None:
    records = _records()
    with _serve(db_url, corpus_models["smol-a"]) as srv:  # store_raw = false (default)
        assert _post(srv, "/v1/traces", {"traces": records})["accepted"] == len(records)
        r = _export(srv, READ)
        assert r.status_code == 200 and r.headers["x-sentinel-without-steps"] == "30"
        got = _read(r.content, tmp_path)
        assert got.ids == tuple(x["id"] for x in records[30:])  # the waiting ones
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["export", "--db", db_url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 5 traces" in result.output and "30 selected traces" in result.output
