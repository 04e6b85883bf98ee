"""Prompt and answer text for the labelling queue: stored only when configured, redacted
before it is stored, deleted by its retention limit, and shown only to keys with the
``text`` scope (a real service over real HTTP, real SmolLM2 corpus traces)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.settings import ApiKey, ModelSpec, Settings, load_settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.tables import trace_texts, traces
from entropy_sentinel.testing.service import ThreadedServer
from tests.models_fixtures import corpus_models, records_of, traffic_indices

__all__ = ["corpus_models"]

READ = "read-key-0123456789abcdef"
TEXT = "text-key-0123456789abcdef"
INGEST = "ingest-key-0123456789abcdef"
KEYS = (
    ApiKey.from_secret("dashboard", READ, {"read"}),
    ApiKey.from_secret("labeller", TEXT, {"read", "text"}),
    ApiKey.from_secret("collector", INGEST, {"ingest"}),
)
PROMPT = [
    {"role": "system", "content": "You answer arithmetic."},
    {"role": "user", "content": "I am ada@example.org, call +44 20 7946 0958: what is 2 + 3?"},
]
ANSWER = "2 + 3 = 5. My key is sk-abcdefghijklmnopqrstuvwx, host 10.0.0.12."


def _records(n: int, prefix: str) -> list[dict[str, Any]]:
    out = records_of(traffic_indices(n, seed=7), "smol-a", prefix=prefix)
    for r in out:
        r.update(prompt=PROMPT, answer=ANSWER)
    return out


def _serve(tmp: Path, model: Path, **kw: Any) -> ThreadedServer:
    settings = Settings(
        db_url=f"sqlite:///{tmp / 'sentinel.db'}",
        models=(ModelSpec("smol-a", model),),
        api_keys=KEYS,
        evaluate_every=3600.0,
        **kw,
    )
    return ThreadedServer(create_app(settings))


def _get(server: ThreadedServer, path: str, key: str, **params: Any) -> Any:
    r = httpx.get(
        server.url + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def texts_server(tmp_path: Path, corpus_models: dict[str, Path]) -> Iterator[ThreadedServer]:
    with _serve(tmp_path, corpus_models["smol-a"], store_text=True, text_max_traces=4) as srv:
        yield srv


def test_text_is_redacted_stored_and_shown_to_text_keys_only(texts_server: ThreadedServer) -> None:
    records = _records(6, "txt")
    r = httpx.post(
        texts_server.url + "/v1/traces",
        json={"traces": records},
        headers={"Authorization": f"Bearer {INGEST}"},
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 6
    tid = records[-1]["id"]

    hidden = _get(texts_server, f"/v1/traces/{tid}", READ)
    assert hidden["text"] == "hidden" and hidden["prompt"] is None and hidden["answer"] is None
    assert hidden["model"] == "smol-a" and hidden["status"] == "scored"
    assert 0.0 <= hidden["p_correct"] <= 1.0

    shown = _get(texts_server, f"/v1/traces/{tid}", TEXT)
    assert shown["text"] == "stored"
    assert shown["prompt"] == [
        PROMPT[0],
        {"role": "user", "content": "I am [redacted], call [redacted]: what is 2 + 3?"},
    ]
    assert shown["answer"] == "2 + 3 = 5. My key is [redacted], host [redacted]."
    state: ServiceState = texts_server.app.state.service
    with state.db.read.connect() as conn:  # nothing unredacted anywhere in the database
        stored = conn.execute(sa.select(trace_texts.c.prompt, trace_texts.c.answer)).all()
        metas = conn.execute(sa.select(traces.c.meta)).scalars().all()
    everything = repr(stored) + repr(metas)
    assert "ada@example.org" not in everything and "sk-abc" not in everything

    for key, visible in ((READ, False), (TEXT, True)):
        pri = _get(texts_server, "/v1/priorities", key, budget=3, by="domain")
        assert len(pri["requests"]) == 3
        for req in pri["requests"]:
            assert (req["answer"] is not None) is visible and req["model"] == "smol-a"
    unknown = httpx.get(
        texts_server.url + "/v1/traces/nope", headers={"Authorization": f"Bearer {TEXT}"}
    )
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    ingest_only = httpx.get(
        texts_server.url + f"/v1/traces/{tid}", headers={"Authorization": f"Bearer {INGEST}"}
    )
    assert ingest_only.status_code == 403

    # retention: the newest text_max_traces texts stay, the traces all stay
    asyncio.run(maintain_once(state))
    kept = [_get(texts_server, f"/v1/traces/{r['id']}", TEXT)["text"] for r in records]
    assert kept == ["none", "none", "stored", "stored", "stored", "stored"]
    assert (
        "sentinel_texts_expired_total 2.0"
        in httpx.get(
            texts_server.url + "/metrics", headers={"Authorization": f"Bearer {READ}"}
        ).text
    )


def test_text_is_not_stored_unless_configured(
    tmp_path: Path, corpus_models: dict[str, Path]
) -> None:
    with _serve(tmp_path, corpus_models["smol-a"]) as srv:
        records = _records(2, "off")
        r = httpx.post(
            srv.url + "/v1/traces",
            json={"traces": records},
            headers={"Authorization": f"Bearer {INGEST}"},
        )
        assert r.json()["accepted"] == 2
        assert _get(srv, f"/v1/traces/{records[0]['id']}", TEXT)["text"] == "none"
        state: ServiceState = srv.app.state.service
        with state.db.read.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(trace_texts)).scalar() == 0
            metas = conn.execute(sa.select(traces.c.meta)).scalars().all()
        assert "example.org" not in repr(metas)


def test_redaction_patterns_are_configurable_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "s.toml"
    config.write_text('store_text = true\ntext_redact = ["secret-\\\\d+"]\ntext_max_age = "2d"\n')
    s = load_settings(config, environ={})
    assert s.store_text and s.text_redact == (r"secret-\d+",) and s.text_max_age == 172_800
    with pytest.raises(ConfigError, match=r"text_redact pattern '\(unclosed' is not a valid"):
        Settings(text_redact=("(unclosed",))
    config.write_text('text_redact = "x"\n')
    with pytest.raises(ConfigError, match="array of regular expressions"):
        load_settings(config, environ={})
    keys = load_settings(None, environ={"SENTINEL_TEXT_KEYS": TEXT}).api_keys
    assert [sorted(k.scopes) for k in keys] == [["text"]]
