"""Hostile-client and operator probes of the service (issue 11), each kept as a regression test.

Every probe runs against the real service: a ``sentinel serve`` subprocess or the real
app under uvicorn in a thread, a real SQLite (or PostgreSQL) database, real HTTP.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.service import ServiceProcess, ThreadedServer, free_port
from tests.service_fixtures import corpus_model, corpus_records

__all__ = ["corpus_model", "corpus_records"]

PASSWORD = "S3CRET-pw-4711"
API_KEY = "QUERYKEY-0815"


@pytest.fixture(scope="module")
def server(
    corpus_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    db = tmp_path_factory.mktemp("security") / "sentinel.db"
    settings = Settings(db_url=f"sqlite:///{db}", model_path=corpus_model, evaluate_every=3600.0)
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


@pytest.fixture
def client(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _record(rec: dict[str, Any], rid: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "slice": rec["slice"], "token_entropy": rec["token_entropy"], **extra}


# ------------------------------------------------------------- 1. credentials
def test_upstream_credentials_never_reach_a_response_or_the_log(
    corpus_model: Path, tmp_path: Path
) -> None:
    # the reproduction of issue 11: an upstream URL with user info and a key in its
    # query, the upstream down; the 502, /v1/model, the dashboard facts and every log
    # line (start-up, failure) must show it redacted
    dead = free_port()
    upstream = f"http://admin:{PASSWORD}@127.0.0.1:{dead}/v1?api_key={API_KEY}"
    log = tmp_path / "serve.log"
    db = f"sqlite:///{tmp_path / 's.db'}"
    with ServiceProcess(
        db_url=db, model=corpus_model, log_path=log, args=["--upstream", upstream]
    ) as svc:
        r = httpx.post(
            svc.url + "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert r.status_code == 502
        message = r.json()["error"]["message"]
        assert f"http://***@127.0.0.1:{dead}/v1?api_key=***" in message
        bodies = [r.text]
        for path in ("/v1/model", "/dashboard/config.json", "/healthz", "/openapi.json"):
            bodies.append(httpx.get(svc.url + path, timeout=30).text)
    text = log.read_text()
    assert "***@127.0.0.1" in text  # the start-up line and the failure line name it...
    for out in [*bodies, text]:
        assert PASSWORD not in out and API_KEY not in out  # ...never its secrets


def test_settings_and_database_reprs_hide_url_secrets(tmp_path: Path) -> None:
    from entropy_sentinel.service.storage.db import open_database

    s = Settings(
        db_url=f"postgresql+psycopg://sentinel:{PASSWORD}@db.internal:5432/s?sslpassword=x",
        upstream=f"https://{API_KEY}@api.example.com/v1?key={API_KEY}",
        webhook_url=f"https://hooks.example.com/h?token={API_KEY}",
    )
    assert PASSWORD not in repr(s) and API_KEY not in repr(s)
    assert "db.internal:5432/s" in repr(s) and "api.example.com/v1" in repr(s)
    db = open_database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert repr(db) == f"Database('sqlite:///{tmp_path / 'r.db'}')"
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:pw@h:8080/v1?api_key=k&model=m", "http://***@h:8080/v1?api_key=***&model=m"),
        ("https://tok@h/p?access_token=a&X-Amz-Signature=b&sig=c", "https://***@h/p?access_token=***&X-Amz-Signature=***&sig=***"),
        ("admin:pw@h:5432/db?password=p", "***@h:5432/db?password=***"),
        ("sqlite:////var/lib/sentinel.db", "sqlite:////var/lib/sentinel.db"),
        ("http://h/v1?secret=&key", "http://h/v1?secret=***&key"),
    ],
)  # fmt: skip
def test_redact_url_keeps_host_port_path_and_hides_the_rest(url: str, shown: str) -> None:
    from entropy_sentinel.redact import redact_url

    assert redact_url(url) == shown


def test_log_lines_redact_urls_quoted_by_any_library() -> None:
    from entropy_sentinel.service.logs import configure_logging

    for fmt in ("json", "text"):
        stream = io.StringIO()
        logger = configure_logging(fmt, "info", stream=stream, name=f"redact-{fmt}")
        url = f"http://u:{PASSWORD}@h/v1?token={API_KEY}"
        logger.warning("failed: %s", url, extra={"upstream": url})
        try:
            raise RuntimeError(f"cannot reach {url}")
        except RuntimeError:
            logger.exception("boom")
        assert PASSWORD not in stream.getvalue() and API_KEY not in stream.getvalue()
        assert "http://***@h/v1?token=***" in stream.getvalue()


# ------------------------------------------------------------------ 2. nesting
def _nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"x": value}
    return value


def test_ingest_refuses_deeply_nested_stored_values_record_by_record(
    client: httpx.Client, corpus_records: list[dict[str, Any]]
) -> None:
    ok = _record(corpus_records[0], "nest-ok", meta=_nested(32))
    deep = _record(corpus_records[1], "nest-deep", meta=_nested(400))
    r = client.post("/v1/traces", json={"traces": [ok, deep]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["id"] for t in body["traces"]] == ["nest-ok"]
    (rej,) = body["rejections"]
    assert rej["id"] == "nest-deep" and rej["field"] == "$.meta"
    assert "nested more than 32 levels" in rej["reason"]


def test_no_answer_fails_because_of_a_deep_value_stored_by_an_older_version(
    server: ThreadedServer,
    client: httpx.Client,
    corpus_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa

    from entropy_sentinel.service.storage.tables import traces

    recs = [_record(r, f"old-{i}", meta={"i": i}) for i, r in enumerate(corpus_records[:6])]
    assert client.post("/v1/traces", json={"traces": recs}).json()["accepted"] == 6
    # what an older version stored: meta nested 330 and 900 levels deep (the first
    # made dataclasses.asdict fail, the second even json.loads), straight into SQL
    db = server.app.state.service.db
    with db.write.begin() as conn:
        for rid, levels in (("old-0", 330), ("old-1", 900)):
            conn.execute(
                sa.update(traces)
                .where(traces.c.trace_id == rid)
                .values(meta=json.dumps(_nested(levels)))
            )
    query: dict[str, str | int] = {"budget": 10000, "by": "domain", "since": "0"}
    r = client.get("/v1/priorities", params=query)
    assert r.status_code == 200, r.text[:300]
    metas = {q["trace_id"]: q["meta"] for q in r.json()["requests"]}
    assert "nested more than 32 levels" in metas["old-0"]["sentinel_note"]
    assert "nested more than 32 levels" in metas["old-1"]["sentinel_note"]
    assert metas["old-2"] == {"i": 2}
    for fmt in ("csv", "jsonl"):
        r = client.get("/v1/priorities", params={**query, "format": fmt})
        assert r.status_code == 200 and "old-1" in r.text
    for path in ("/v1/estimates", "/v1/slices", "/v1/alerts", "/v1/model", "/healthz"):
        assert client.get(path).status_code == 200, path
    for rid in ("old-0", "old-1"):  # one trace, as GET /v1/traces/{id} shows it
        r = client.get(f"/v1/traces/{rid}")
        assert r.status_code == 200 and "sentinel_note" in r.json()["meta"], r.text[:300]
    # the CLI export reads the same rows
    from typer.testing import CliRunner

    from entropy_sentinel.cli import app

    out = tmp_path / "to_label.jsonl"
    url = server.app.state.service.settings.db_url
    result = CliRunner().invoke(
        app, ["prioritize", "--db", url, "--budget", "10000", "--since", "0", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert any("sentinel_note" in row["meta"] for row in rows)  # meta: a JSON object


# ------------------------------------------------------------ 3. CSV formulas
HOSTILE = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(1)", "\t=1", "'=q"]


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _formula_free(text: str) -> None:
    from entropy_sentinel.csv_safety import FORMULA_TRIGGERS

    for cell in _cells(text):
        try:
            float(cell)  # a number (-2.0) is not a formula
        except ValueError:
            assert not cell or cell[0] not in FORMULA_TRIGGERS, cell


def test_csv_exports_neutralise_formulas_and_labels_come_back_exactly(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'csv.db'}", model_path=corpus_model, evaluate_every=3600.0
    )
    with ThreadedServer(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        _csv_round_trip(server, c, corpus_records, tmp_path)


def _csv_round_trip(
    server: ThreadedServer,
    client: httpx.Client,
    corpus_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa
    from typer.testing import CliRunner

    from entropy_sentinel.cli import app
    from entropy_sentinel.service.storage.tables import traces

    recs = [
        _record(r, f"{h}#{i}", meta={"note": h}) | {"slice": {"domain": h}}
        for i, (h, r) in enumerate(zip(HOSTILE, corpus_records[20:], strict=False))
    ]
    assert client.post("/v1/traces", json={"traces": recs}).json()["accepted"] == len(HOSTILE)
    query: dict[str, str | int] = {"budget": 10000, "by": "domain", "since": "0", "format": "csv"}
    served = client.get("/v1/priorities", params=query)
    assert served.status_code == 200
    _formula_free(served.text)
    ids = {row["id"] for row in csv.DictReader(io.StringIO(served.text))}
    assert '\'=HYPERLINK("http://evil.example","x")#0' in ids and "''=q#5" in ids, served.text

    url = server.app.state.service.settings.db_url
    runner = CliRunner()
    out = tmp_path / "to_label.csv"
    args = ["prioritize", "--db", url, "--budget", "10000", "--since", "0", "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    _formula_free(out.read_text())
    report = tmp_path / "report.csv"
    args = ["report", "--db", url, "--by", "domain", "--since", "0", "-o", str(report)]
    assert runner.invoke(app, args).exit_code == 0
    _formula_free(report.read_text())
    # the annotator fills `correct` and brings the file back: every id is found as sent
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    for row in rows:
        row["correct"] = "yes"
    with (tmp_path / "labelled.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(
        app, ["labels", "import", str(tmp_path / "labelled.csv"), "--db", url, "--strict"]
    )
    assert result.exit_code == 0, result.output
    with server.app.state.service.db.read.connect() as conn:
        labels = dict(
            conn.execute(
                sa.select(traces.c.trace_id, traces.c.label).where(
                    traces.c.trace_id.in_([r["id"] for r in recs])
                )
            ).all()
        )
    assert labels == {r["id"]: 1.0 for r in recs}


def test_features_csv_neutralises_ids_and_slice_names(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from entropy_sentinel.cli import app

    src = tmp_path / "traces.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": h, "slice": {"=dim": h}, "token_entropy": [0.1, 0.5]}) + "\n"
            for h in HOSTILE
        )
    )
    out = tmp_path / "features.csv"
    result = CliRunner().invoke(app, ["features", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    _formula_free(out.read_text())


# ------------------------------------------------------ 4. duplicates in a batch
def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


def test_an_id_repeated_in_one_batch_is_stored_once_and_reported_as_duplicate(
    client: httpx.Client, corpus_records: list[dict[str, Any]]
) -> None:
    first = _record(corpus_records[40], "dup-1")
    second = _record(corpus_records[41], "dup-1")  # same id, other trace: not stored
    stored = _metric(client, "sentinel_traces_stored_total")
    dups = _metric(client, "sentinel_traces_duplicate_total")
    r = client.post("/v1/traces", json={"traces": [first, second, first]}).json()
    assert (r["accepted"], r["duplicates"]) == (1, 2)
    assert [(t["index"], t["status"]) for t in r["traces"]] == [
        (0, "stored"),
        (1, "duplicate"),
        (2, "duplicate"),
    ]
    alone = client.post("/v1/traces", json=_record(corpus_records[40], "dup-probe")).json()
    assert r["traces"][0]["p_correct"] == alone["traces"][0]["p_correct"]  # the first's P
    assert _metric(client, "sentinel_traces_stored_total") == stored + 2  # dup-1, dup-probe
    assert _metric(client, "sentinel_traces_duplicate_total") == dups + 2


# ------------------------------------------------------------ 5. NaN, Infinity
def _strict_json(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"{token} in an answer")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_in_any_validated_body_or_query_are_a_clean_422(
    server: ThreadedServer, client: httpx.Client
) -> None:
    from fastapi.routing import APIRoute

    from entropy_sentinel.service.routes import ROUTERS

    routes = [r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute)]
    with_body = [r for r in routes if r.body_field is not None]
    assert {r.path for r in with_body} >= {"/v1/labels", "/v1/recalibrate"}
    for route in with_body:
        assert route.body_field is not None
        model: Any = route.body_field.field_info.annotation
        for field in model.model_fields:
            for token in ("NaN", "Infinity", "-Infinity"):
                for body in (f'{{"{field}": {token}}}', f'{{"{field}": [{token}]}}'):
                    r = client.post(
                        route.path, content=body, headers={"content-type": "application/json"}
                    )
                    assert r.status_code in (400, 422), (route.path, body, r.status_code)
                    _strict_json(r.text)
    r = client.post("/v1/labels", content='{"labels": [{"id": "a", "correct": NaN}]}',
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422
    (error,) = _strict_json(r.text)["detail"][:1]
    assert error["input"] == "NaN" and "NaN and Infinity are not JSON" in error["msg"]
    for route in routes:
        if "GET" not in (route.methods or ()):
            continue
        for param in route.dependant.query_params:
            if param.field_info.annotation in (float, int, float | None, int | None):
                r = client.get(route.path, params={"budget": 1, param.name: "nan"})
                assert r.status_code in (400, 422), (route.path, param.name, r.status_code)
                _strict_json(r.text)


# --------------------------------------------- 6. Host (DNS rebinding), Content-Type
def test_host_and_content_type_keep_web_pages_out(corpus_model: Path, tmp_path: Path) -> None:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'h.db'}",
        model_path=corpus_model,
        upstream=f"http://127.0.0.1:{free_port()}/v1",
        allowed_hosts=(".example.com",),
        evaluate_every=3600.0,
    )
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with ThreadedServer(create_app(settings)) as srv, httpx.Client(base_url=srv.url) as c:
        port = srv.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "api.example.com", "[::1]"):
            assert c.get("/v1/slices", headers={"host": host}).status_code == 200, host
        # a rebinding page: its own name in Host, whatever address it resolved to
        for host in ("evil.example", f"evil.example:{port}", "example.com.evil.example"):
            r = c.get("/v1/slices", headers={"host": host})
            assert r.status_code == 400 and "allowed_hosts" in r.json()["detail"], host
            assert c.get("/", headers={"host": host}).status_code == 400
            r = c.post("/v1/chat/completions", json=chat, headers={"host": host})
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"
        # a cross-site form or fetch without preflight: text/plain, or no type at all
        text = json.dumps(chat)
        for headers in ({"content-type": "text/plain"}, {}):
            r = c.post("/v1/chat/completions", content=text, headers=headers)
            assert r.status_code == 415, r.text  # refused before forwarding (else 502)
            assert r.json()["error"]["code"] == "unsupported_media_type"
            r = c.post("/v1/labels", content='{"labels": []}', headers=headers)
            assert r.status_code == 415 and "application/json" in r.json()["detail"]
            r = c.post("/v1/traces", content='{"token_entropy": [0.1]}', headers=headers)
            assert r.status_code == 415
        ndjson = {"content-type": "application/x-ndjson"}
        assert c.post("/v1/traces", content='{"token_entropy": [0.1]}\n', headers=ndjson).is_success
        assert c.post("/v1/labels", content='{"labels": []}', headers=ndjson).status_code == 415
        assert c.post("/v1/labels", json={"labels": []}).status_code == 200
        metrics = c.get("/metrics").text
        assert 'sentinel_auth_failures_total{reason="host"} 9.0' in metrics
        assert 'sentinel_auth_failures_total{reason="content_type"} 7.0' in metrics


def test_allowed_hosts_come_from_the_config_and_the_command_line(tmp_path: Path) -> None:
    from entropy_sentinel.errors import ConfigError
    from entropy_sentinel.service.settings import load_settings

    config = tmp_path / "sentinel.toml"
    config.write_text('allowed_hosts = ["sentinel.internal"]\n')
    s = load_settings(config, environ={}, extra_hosts=(".example.com",))
    assert s.allowed_hosts == ("sentinel.internal", ".example.com")
    with pytest.raises(ConfigError, match="no scheme or port"):
        Settings(allowed_hosts=("https://sentinel.internal:8000",))


# ---------------------------------------------------------- 11. clearer errors
def test_nan_in_a_batch_rejects_only_its_record_and_says_why(client: httpx.Client) -> None:
    body = (
        '{"traces": [{"id": "nan-ok", "token_entropy": [0.1, 0.2]},'
        ' {"id": "nan-bad", "token_entropy": [0.1, NaN]},'
        ' {"id": "inf-bad", "token_entropy": [-Infinity]}]}'
    )
    r = client.post("/v1/traces", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert [t["id"] for t in out["traces"]] == ["nan-ok"]
    reasons = {x["id"]: (x["index"], x["field"], x["reason"]) for x in out["rejections"]}
    assert reasons["nan-bad"][:2] == (1, "$.token_entropy[1]")
    assert reasons["inf-bad"][:2] == (2, "$.token_entropy[0]")
    assert all("is not JSON" in reason for _, _, reason in reasons.values())
    # one record, and NDJSON lines: the record is named too
    r = client.post(
        "/v1/traces",
        content='{"id": "nd-1", "token_entropy": [NaN]}\n{"id": "nd-2", "token_entropy": [0.1]}\n',
        headers={"content-type": "application/x-ndjson"},
    ).json()
    assert r["accepted"] == 1 and r["rejections"][0]["id"] == "nd-1"
    assert r["rejections"][0]["reason"].startswith("NaN is not JSON")


def test_a_top_level_array_of_records_is_read_as_records(
    client: httpx.Client, corpus_records: list[dict[str, Any]]
) -> None:
    recs = [_record(r, f"arr-{i}") for i, r in enumerate(corpus_records[50:53])]
    r = client.post("/v1/traces", json=recs)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["traces"]] == ["arr-0", "arr-1", "arr-2"]
    # an array of stream chunks is still one streamed answer
    from tests.conftest import SMOLLM2_FIXTURES

    chunks = json.loads((SMOLLM2_FIXTURES / "chat_stream.json").read_text())[0]
    out = client.post("/v1/traces", json=chunks).json()
    assert out["records"] == 1  # (this estimator scores precomputed entropies: refused)
    assert "carry logprobs" in out["rejections"][0]["reason"]


def test_label_rejections_count_from_one(client: httpx.Client) -> None:
    r = client.post(
        "/v1/labels",
        json={"labels": [{"id": "x", "correct": "perhaps"}, {"id": "", "correct": True}]},
    )
    assert [x.split(":")[0] for x in r.json()["rejections"]] == ["label 1 (id 'x')", "label 2"]


def test_integer_ids_and_slice_values_are_stored_as_text(
    server: ThreadedServer, client: httpx.Client
) -> None:
    r = client.post(
        "/v1/traces", json={"id": 4711, "slice": {"shard": 7, "beta": True}, "token_entropy": [0.1]}
    )
    assert r.json()["traces"][0]["id"] == "4711"
    dims = client.get("/v1/slices", params={"since": "0"}).json()["dimensions"]
    assert dims["shard"] == {"7": 1} and dims["beta"] == {"true": 1}
