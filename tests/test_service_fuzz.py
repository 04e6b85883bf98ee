"""Fuzzing the real server: schemathesis from the OpenAPI schema, and Hypothesis with
malformed, oversized and hostile payloads. Every answer must be a documented 4xx (never
a 500), and every trace the server acknowledged must be in the database."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import Database
from entropy_sentinel.service.storage.tables import traces
from entropy_sentinel.testing.service import ThreadedServer
from tests.service_fixtures import corpus_model, corpus_records

__all__ = ["corpus_model", "corpus_records"]


@pytest.fixture(scope="module")
def fuzz_server(
    corpus_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadedServer]:
    db = tmp_path_factory.mktemp("fuzz") / "sentinel.db"
    settings = Settings(
        db_url=f"sqlite:///{db}",
        model_path=corpus_model,
        max_body_bytes=256_000,
        max_batch=50,
        evaluate_every=3600.0,
    )
    with ThreadedServer(create_app(settings)) as srv:
        yield srv


def _db(server: ThreadedServer) -> Database:
    db: Database = server.app.state.service.db
    return db


def _assert_stored(server: ThreadedServer, response: httpx.Response | Any) -> None:
    """Every trace a 200 answer acknowledged as stored or duplicate is in the database."""
    if response.status_code != 200:
        return
    acked = [t["id"] for t in response.json()["traces"]]
    if not acked:
        return
    with _db(server).read.connect() as conn:
        found = {
            r[0]
            for r in conn.execute(sa.select(traces.c.trace_id).where(traces.c.trace_id.in_(acked)))
        }
    assert found == set(acked)


_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_its_schema(
    fuzz_server: ThreadedServer, mode: GenerationMode
) -> None:
    """Schemathesis cases for every operation (its pytest plugin does not support pytest 9
    yet, so the cases are drawn from its strategies here)."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    results = list(schema.get_all_operations())
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert len(operations) == len(results), "the OpenAPI schema has invalid operations"
    assert len(operations) >= 10

    for operation in operations:

        @settings(
            max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call()
            case.validate_response(response, checks=_CHECKS)
            if case.path == "/v1/traces":
                _assert_stored(fuzz_server, response)

        try:
            check()
        except Unsatisfiable:  # no parameters to break (GET /healthz in negative mode)
            assert mode == GenerationMode.NEGATIVE


# ------------------------------------------------------------- hostile bodies
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
_json = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
_step = st.fixed_dictionaries(
    {"token": st.text(max_size=4), "logprob": st.floats(-50, 1.0)},
    optional={
        "top_logprobs": st.lists(
            st.fixed_dictionaries({"token": st.text(max_size=4), "logprob": st.floats(-50, 0.5)}),
            max_size=4,
        ),
        "bytes": st.none() | st.lists(st.integers(0, 255), max_size=3),
    },
)
_record = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=300) | st.integers(),
        "slice": st.dictionaries(
            st.text(max_size=70), st.text(max_size=10) | st.integers() | _json, max_size=3
        ),
        "token_entropy": st.lists(st.floats(-1, 20, allow_nan=False), max_size=20),
        "logprobs": st.fixed_dictionaries({"content": st.lists(_step, max_size=6)}) | _json,
        "correct": st.booleans() | st.integers(-1, 2) | st.none(),
        "timestamp": st.floats(-1e10, 1e12, allow_nan=False) | st.text(max_size=30) | st.integers(),
        "meta": _json,
    },
)
_body = st.one_of(
    _record.map(lambda r: json.dumps(r).encode()),
    st.lists(_record, max_size=6).map(lambda rs: json.dumps({"traces": rs}).encode()),
    _json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.integers(1, 5000).map(lambda n: b'{"traces": [' + b"[" * n + b"]" * n + b"]}"),
    st.integers(1, 3000).map(lambda n: b"{" * n),
)
_headers = st.sampled_from(
    [
        {"content-type": "application/json"},
        {"content-type": "application/x-ndjson"},
        {"content-type": "application/json; charset=latin-1"},
        {},
    ]
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_body, headers=_headers)
def test_hostile_bodies_get_4xx_and_lose_nothing(
    fuzz_server: ThreadedServer, body: bytes, headers: dict[str, str]
) -> None:
    response = httpx.post(fuzz_server.url + "/v1/traces", content=body, headers=headers, timeout=30)
    assert response.status_code in (200, 413, 415, 422), response.text
    payload = response.json()
    assert "detail" in payload or "rejections" in payload
    if response.status_code == 422 and "rejections" in payload:
        assert payload["accepted"] == 0 and payload["rejections"]
        assert all(r["reason"] for r in payload["rejections"])
    _assert_stored(fuzz_server, response)


def test_oversized_and_hostile_headers(fuzz_server: ThreadedServer) -> None:
    url = fuzz_server.url
    big = b'{"traces": [' + b'{"token_entropy": [0.1]},' * 20_000 + b'{"token_entropy": [0.1]}]}'
    assert httpx.post(url + "/v1/traces", content=big).status_code == 413
    # a Content-Length far above the limit is refused before the body is read
    with socket.create_connection(("127.0.0.1", fuzz_server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 99999999\r\n\r\n{}"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 413")
    r = httpx.post(
        url + "/v1/traces",
        json={"token_entropy": [0.1]},
        headers={b"x-request-id": ("../../etc/passwd\u00e9" * 10).encode("latin-1")},
    )
    assert r.status_code == 200 and len(r.headers["x-request-id"]) == 32  # replaced, not echoed
    for path in (
        "/v1/estimates?by=" + "x" * 5000,
        "/v1/estimates?window=-1h",
        "/v1/estimates?since=9999999999999",
        "/v1/priorities?budget=0",
        "/v1/alerts?status=everything",
        "/" + "a" * 3000,
    ):
        status = httpx.get(url + path).status_code
        assert 400 <= status < 500, (path, status)


def test_deeply_nested_labels_and_bad_label_values(fuzz_server: ThreadedServer) -> None:
    url = fuzz_server.url
    nested = b'{"labels": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    r = httpx.post(url + "/v1/labels", content=nested, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500
    r = httpx.post(url + "/v1/labels", json={"labels": [{"id": "x", "correct": "perhaps"}]})
    assert r.status_code == 200 and "perhaps" in r.json()["rejections"][0]
