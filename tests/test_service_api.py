"""The HTTP API of the monitoring service, against a real uvicorn server on loopback.

The server runs the real app (real estimator fitted on the committed SmolLM2 corpus,
real SQLite database) in a thread of the test process; every request goes over TCP.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import math
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from entropy_sentinel import read_traces
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.estimator import load_estimator
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.settings import ApiKey, Settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.testing.service import ThreadedServer
from tests.service_fixtures import corpus_model, corpus_records, smollm2_records

__all__ = ["corpus_model", "corpus_records", "smollm2_records"]

HOUR = 3600


def _hour_start(t: float) -> float:
    return math.floor(t / HOUR) * HOUR


@pytest.fixture(scope="module")
def server(
    corpus_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    db = tmp_path_factory.mktemp("api") / "sentinel.db"
    settings = Settings(
        db_url=f"sqlite:///{db}",
        model_path=corpus_model,
        max_body_bytes=2_000_000,
        max_batch=500,
        evaluate_every=3600.0,  # maintenance is run by the tests themselves
        metrics_window=4 * HOUR,
    )
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _state(server: ThreadedServer) -> ServiceState:
    state: ServiceState = server.app.state.service
    return state


def _records(base: list[dict[str, Any]], prefix: str, n: int, *, t0: float) -> list[dict[str, Any]]:
    """Real corpus traces with new ids, two domains, spread over three hours, unlabelled."""
    out = []
    for i, rec in enumerate(base[:n]):
        out.append(
            {
                "id": f"{prefix}-{i}",
                "slice": {"domain": "algebra" if i % 2 else "geometry", "customer": f"c{i % 3}"},
                "token_entropy": rec["token_entropy"],
                "timestamp": t0 + (i % 3) * HOUR + i,
                "meta": {"source_id": rec["id"]},
            }
        )
    return out


# --------------------------------------------------------------------- ingest
def test_openapi_documents_routes_and_the_librarys_record_shapes(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    for path in (
        "/v1/traces",
        "/v1/estimates",
        "/v1/slices",
        "/v1/model",
        "/v1/alerts",
        "/v1/priorities",
        "/v1/labels",
        "/v1/recalibrate",
        "/healthz",
        "/metrics",
    ):
        assert path in schema["paths"], path
    body = schema["paths"]["/v1/traces"]["post"]["requestBody"]["content"]
    refs = json.dumps(body["application/json"])
    assert "TraceRecord" in refs and "TraceBatch" in refs
    record = schema["components"]["schemas"]["TraceRecord"]["properties"]
    assert {"logprobs", "token_entropy", "slice", "timestamp", "correct", "meta"} <= set(record)


def test_ingest_single_batch_ndjson_and_gzip(
    client: httpx.Client, corpus_records: list[dict[str, Any]]
) -> None:
    t0 = _hour_start(time.time()) - 3 * HOUR
    recs = _records(corpus_records, "ing", 40, t0=t0)
    r = client.post("/v1/traces", json=recs[0])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 0)
    assert 0.0 <= body["traces"][0]["p_correct"] <= 1.0
    assert r.headers["x-request-id"]

    r = client.post("/v1/traces", json={"traces": recs[:20]})
    assert r.json()["accepted"] == 19 and r.json()["duplicates"] == 1

    ndjson = "\n".join(json.dumps(x) for x in recs[20:30]) + "\n\n"
    r = client.post("/v1/traces", content=ndjson, headers={"content-type": "application/x-ndjson"})
    assert r.json()["accepted"] == 10

    packed = gzip.compress(json.dumps({"traces": recs[30:]}).encode())
    r = client.post(
        "/v1/traces",
        content=packed,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert r.json()["accepted"] == 10

    # a record without an id gets a fresh one each time (not "trace-0")
    anon = {"token_entropy": [0.3, 0.1]}
    ids = [client.post("/v1/traces", json=anon).json()["traces"][0]["id"] for _ in range(2)]
    assert ids[0] != ids[1] and not ids[0].startswith("trace-")


def test_rejections_are_the_librarys_and_do_not_fail_the_batch(
    client: httpx.Client, smollm2_records: list[dict[str, Any]]
) -> None:
    bad = [
        {"id": "ok-1", "token_entropy": [0.5, 0.25]},
        {"id": "empty", "token_entropy": []},
        {"id": "neg", "token_entropy": [0.1, -0.2]},
        {"id": "both", "token_entropy": [0.1], "logprobs": {"content": []}},
        {"id": "nolp"},
        {"id": "lab", "token_entropy": [0.1], "correct": 3},
        {"id": "slice", "token_entropy": [0.1], "slice": {"d": [1]}},
    ]
    r = client.post("/v1/traces", json={"traces": bad})
    assert r.status_code == 200
    got = {(x["index"], x["id"], x["field"], x["reason"]) for x in r.json()["rejections"]}
    library = read_traces(bad, errors="collect").rejected
    assert got == {(x.index, x.record_id, x.field, x.reason) for x in library}
    assert [t["id"] for t in r.json()["traces"]] == ["ok-1"]

    # logprob traces against an estimator fitted on precomputed entropies: refused, each
    r = client.post("/v1/traces", json={"traces": smollm2_records[:3]})
    assert r.status_code == 422 and r.json()["accepted"] == 0
    assert all("precomputed entropies" in x["reason"] for x in r.json()["rejections"])


def test_service_rules_timestamps_ids_and_slices(client: httpx.Client) -> None:
    future = time.time() + 3600
    cases = [
        ({"id": "f", "token_entropy": [0.1], "timestamp": future}, "$.timestamp", "future"),
        (
            {"id": "t", "token_entropy": [0.1], "timestamp": "yesterday"},
            "$.timestamp",
            "not a time",
        ),
        ({"id": "x" * 300, "token_entropy": [0.1]}, "$.id", "at most 256"),
        ({"id": "s", "token_entropy": [0.1], "slice": {"*": "a"}}, "$.slice", "reserved"),
        ({"id": "n", "token_entropy": [0.1], "slice": {"d": "a\u0000b"}}, "$.slice.d", "NUL"),
        (
            {"id": "w", "token_entropy": [0.1], "slice": {f"d{i}": "v" for i in range(40)}},
            "$.slice",
            "more than 32",
        ),
    ]
    for record, field, words in cases:
        r = client.post("/v1/traces", json=record)
        assert r.status_code == 422, record
        [rej] = r.json()["rejections"]
        assert rej["field"] == field and words in rej["reason"], rej
    old = {"id": "old", "token_entropy": [0.1], "timestamp": "2024-01-01T00:00:00Z"}
    assert client.post("/v1/traces", json=old).json()["accepted"] == 1


def test_limits_and_bad_bodies_get_clear_4xx(client: httpx.Client) -> None:
    big = json.dumps({"id": "big", "token_entropy": [0.1] * 500_000}).encode()
    r = client.post("/v1/traces", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"id": "chunked", "token_entropy": ['
        for _ in range(400):
            yield b"0.1," * 2000
        yield b"0.1]}"

    r = client.post("/v1/traces", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/v1/traces", json={"traces": [{"token_entropy": [0.1]}] * 501})
    assert r.status_code == 413 and "max_batch=500" in r.json()["detail"]
    r = client.post("/v1/traces", content=b"{}", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    json_type = {"content-type": "application/json"}
    r = client.post("/v1/traces", content=b"{}", headers={"content-encoding": "br", **json_type})
    assert r.status_code == 415
    r = client.post(
        "/v1/traces", content=b"\x1f\x8b garbage", headers={"content-encoding": "gzip", **json_type}
    )
    assert r.status_code == 422
    r = client.post("/v1/traces", json={"traces": 5})
    assert r.status_code == 422 and "$.traces" in r.json()["detail"]
    r = client.post("/v1/traces", content=b"not json", headers=json_type)
    assert r.status_code == 422 and "not valid JSON" in r.json()["rejections"][0]["reason"]
    assert client.post("/v1/traces", json={"traces": []}).json()["records"] == 0


# ------------------------------------------------------------------ estimates
def test_estimates_equal_slice_stats_of_the_acknowledged_probabilities(
    client: httpx.Client,
    server: ThreadedServer,
    corpus_records: list[dict[str, Any]],
    corpus_model: Path,
) -> None:
    t0 = _hour_start(time.time()) - 30 * 24 * HOUR  # a quiet month-old range of its own
    recs = _records(corpus_records[100:], "est", 90, t0=t0)
    answer = client.post("/v1/traces", json={"traces": recs}).json()
    p = {t["id"]: t["p_correct"] for t in answer["traces"]}
    assert len(p) == 90
    params = {
        "by": "domain",
        "window": "1h",
        "since": str(t0),
        "until": str(t0 + 3 * HOUR),
        "reference": "1h",
    }
    body = client.get("/v1/estimates", params=params).json()
    assert body["window"] == "1h" and len(body["records"]) == 6
    est = load_estimator(corpus_model)  # a bare classifier's artifact: nothing calibrated
    for rec in body["records"]:
        start = pd.Timestamp(rec["window_start"]).timestamp()
        mine = [
            p[r["id"]]
            for r in recs
            if r["slice"]["domain"] == rec["slice"]["domain"]
            and start <= r["timestamp"] < start + HOUR
        ]
        n = len(mine)
        iv = est.finish(SliceStats.from_arrays(mine, unseen=np.ones(n, bool), w=np.zeros((n, 11))))
        assert rec["shift"] is None and rec["unseen_fraction"] == 1.0  # no shift reference
        assert rec["n"] == len(mine)
        assert rec["estimate"] == pytest.approx(iv.estimate, abs=1e-12)
        assert (rec["lower"], rec["upper"]) == pytest.approx((iv.lower, iv.upper), abs=1e-12)
        if start > t0:
            assert rec["reference"]["n"] == 15
            assert rec["change"] == pytest.approx(rec["estimate"] - rec["reference"]["estimate"])
        else:
            assert rec["reference"] is None
    whole = client.get("/v1/estimates", params={"since": str(t0), "until": str(t0 + 3 * HOUR)})
    [everything] = whole.json()["records"]
    assert everything["slice"] == {} and everything["n"] == 90
    assert everything["estimate"] == pytest.approx(float(np.mean(list(p.values()))))
    bad = client.get("/v1/estimates", params={"window": "90s"})
    assert bad.status_code == 400 and "whole number" in bad.json()["detail"]
    assert client.get("/v1/estimates", params={"level": 2}).status_code == 422
    assert check_aggregates(_state(server).db).ok


def test_slices_model_and_health(client: httpx.Client) -> None:
    client.post("/v1/traces", json={"id": "sl-1", "token_entropy": [0.2], "slice": {"topic": "x"}})
    dims = client.get("/v1/slices", params={"since": "1h"}).json()["dimensions"]
    assert dims["topic"]["x"] >= 1 and dims["*"]["*"] >= 1
    model = client.get("/v1/model").json()
    assert model["entropy_mode"] == "topk" and model["card"]["metrics"]["cv_auroc"] > 0.5
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["database"] == "ok" and health["writer"] == "running"


def test_metrics_count_and_export_slice_gauges(
    client: httpx.Client, server: ThreadedServer
) -> None:
    client.post(
        "/v1/traces",
        json={"id": "m-1", "token_entropy": [0.4, 0.2], "slice": {"domain": "metrics"}},
    )
    asyncio.run(maintain_once(_state(server)))
    text = client.get("/metrics").text
    assert "sentinel_traces_stored_total" in text
    assert 'route="/v1/traces"' in text
    line = next(
        x
        for x in text.splitlines()
        if x.startswith('sentinel_slice_estimate{dimension="domain",model="",value="metrics"}')
    )
    value = float(line.split()[-1])
    est = client.get("/v1/estimates", params={"by": "domain", "since": "4h"}).json()
    [rec] = [r for r in est["records"] if r["slice"] == {"domain": "metrics"}]
    assert value == pytest.approx(rec["estimate"])


# ---------------------------------------------------- priorities and labels
def test_prioritize_label_and_recalibrate(
    client: httpx.Client, server: ThreadedServer, corpus_records: list[dict[str, Any]]
) -> None:
    t0 = _hour_start(time.time()) - 60 * 24 * HOUR
    recs = _records(corpus_records[300:], "lab", 400, t0=t0)
    truth = {f"lab-{i}": r["correct"] for i, r in enumerate(corpus_records[300:700])}
    assert client.post("/v1/traces", json={"traces": recs}).json()["accepted"] == 400
    rng = {"since": str(t0), "until": str(t0 + 4 * HOUR)}
    pri = client.get("/v1/priorities", params={"budget": 120, "by": "domain", **rng}).json()
    design = pri["design"]
    assert sum(s["allocated"] for s in pri["slices"]) == 120  # expected labels
    assert (
        len(pri["requests"])
        == design["size"]
        == design["pending"]
        == sum(s["drawn"] for s in pri["slices"])
    )  # a Poisson draw: about 120
    assert abs(design["size"] - 120) < 40
    assert {r["design_id"] for r in pri["requests"]} == {design["id"]}
    assert all(0 < r["inclusion_probability"] <= 1 for r in pri["requests"])
    assert [s["rank"] for s in pri["slices"]] == [1, 2]
    again = client.get("/v1/priorities", params={"budget": 120, "by": "domain", **rng}).json()
    assert again["requests"] == pri["requests"]  # the open design, as stored
    csv = client.get(
        "/v1/priorities", params={"budget": 120, "by": "domain", "format": "csv", **rng}
    )
    frame = pd.read_csv(io.StringIO(csv.text), keep_default_na=False)
    assert list(frame["id"]) == [r["trace_id"] for r in pri["requests"]]
    assert set(frame["correct"]) == {""}

    labels = [{"id": tid, "correct": truth[tid]} for tid in frame["id"]]
    labels.append({"id": "no-such-trace", "correct": True})
    out = client.post("/v1/labels", json={"labels": labels, "source": "test"}).json()
    n_drawn = design["size"]
    assert out["labelled"] == out["designed"] == n_drawn and out["plain"] == 0
    assert out["unknown"] == ["no-such-trace"]
    est = client.get("/v1/estimates", params={"by": "domain", **rng}).json()["records"]
    drawn = {s["value"]: s["drawn"] for s in pri["slices"]}
    for rec in est:
        assert rec["n_labelled"] == drawn[rec["slice"]["domain"]] and rec["n_plain"] == 0
        assert rec["label_corrected"] is not None
        lc = rec["label_corrected"]
        assert lc["lower"] <= lc["estimate"] <= lc["upper"]

    before = client.get("/v1/model").json()["scorer_id"]
    rec = client.post(
        "/v1/recalibrate", json={"method": "sigmoid", "min_labels": 50, "force": True}
    )
    assert rec.status_code == 200, rec.text
    outcome = rec.json()
    assert outcome["n_labels"] >= n_drawn and outcome["activated_scorer_id"] not in (None, before)
    model = client.get("/v1/model").json()
    assert model["scorer_id"] == outcome["activated_scorer_id"]
    assert model["calibration"]["method"] == "sigmoid"
    assert model["rescore_pending"] == 0
    est2 = client.get("/v1/estimates", params={"by": "domain", **rng}).json()
    assert est2["scorer_id"] == model["scorer_id"] and sum(r["n"] for r in est2["records"]) == 400
    assert check_aggregates(_state(server).db).ok
    too_few = client.post("/v1/recalibrate", json={"min_labels": 100_000})
    assert too_few.status_code == 422 and "too few" in too_few.json()["detail"]


# ------------------------------------------------------------------------ auth
INGEST_KEY = "ingest-key-0123456789abcdef"
READ_KEY = "read-key-0123456789abcdefgh"


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + json.dumps(vars(record), default=str))


def test_api_keys_enforce_scopes_and_never_log_the_key(corpus_model: Path, tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'auth.db'}",
        model_path=corpus_model,
        evaluate_every=3600.0,
        api_keys=(
            ApiKey.from_secret("collector", INGEST_KEY, {"ingest"}),
            ApiKey.from_secret("grafana", READ_KEY, {"read"}),
        ),
    )
    capture = _Capture()
    logging.getLogger("entropy_sentinel").addHandler(capture)
    try:
        with ThreadedServer(create_app(settings)) as srv, httpx.Client(base_url=srv.url) as c:
            rec = {"id": "a1", "token_entropy": [0.1]}
            r = c.post("/v1/traces", json=rec)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            bad = {"authorization": f"Bearer {INGEST_KEY}x"}
            assert c.post("/v1/traces", json=rec, headers=bad).status_code == 401
            read = {"authorization": f"Bearer {READ_KEY}"}
            ingest = {"authorization": f"Bearer {INGEST_KEY}"}
            r = c.post("/v1/traces", json=rec, headers=read)
            assert r.status_code == 403 and "grafana" in r.json()["detail"]
            assert c.post("/v1/traces", json=rec, headers=ingest).status_code == 200
            assert c.get("/v1/estimates", headers=read).status_code == 200
            assert c.get("/v1/estimates", headers=ingest).status_code == 403
            assert c.get("/metrics").status_code == 401
            assert c.get("/metrics", headers=read).status_code == 200
            assert c.get("/healthz").status_code == 200
            assert c.post("/v1/labels", json={"labels": []}, headers=read).status_code == 403
    finally:
        logging.getLogger("entropy_sentinel").removeHandler(capture)
    text = "\n".join(capture.lines)
    assert "request refused" in text and '"reason": "invalid"' in text
    assert INGEST_KEY not in text and READ_KEY not in text and INGEST_KEY[:12] not in text


def _non_loopback_ip() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this picks the route's address
            ip = str(s.getsockname()[0])
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def test_without_keys_only_loopback_clients_are_served(corpus_model: Path, tmp_path: Path) -> None:
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'lo.db'}", model_path=corpus_model, evaluate_every=3600.0
    )
    with ThreadedServer(create_app(settings), host="0.0.0.0") as srv:
        rec = {"id": "a", "token_entropy": [0.1]}
        local = httpx.post(f"http://127.0.0.1:{srv.port}/v1/traces", json=rec)
        assert local.status_code == 200
        remote = httpx.post(f"http://{ip}:{srv.port}/v1/traces", json=rec)
        assert remote.status_code == 403 and "loopback" in remote.json()["detail"]
        assert httpx.get(f"http://{ip}:{srv.port}/v1/estimates").status_code == 403
