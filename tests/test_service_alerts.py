"""Alerts: rules judged on the stored aggregates, once per episode, delivered to a real
local HTTP receiver (a stdlib HTTP server on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.intervals import finish
from entropy_sentinel.estimator.transfer import load_transfer
from entropy_sentinel.service.alert_rules import AlertRule, judge
from entropy_sentinel.service.alerts import AlertEngine, list_alerts
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.testing.service import ServiceProcess, ThreadedServer, postgres_database
from tests.service_fixtures import (
    POSTGRES_ENV,
    T0,
    corpus_model,
    corpus_records,
    db_url,
    scored_traces,
)

__all__ = ["corpus_model", "corpus_records", "db_url"]

NOW = T0 + 3600.0


class Receiver:
    """A real HTTP endpoint on loopback that records the JSON it is sent.

    ``status`` is what it answers (set 500 to make deliveries fail); ``delay`` how long
    it takes to answer (a slow receiver). ``arrivals`` lists every POST as it arrives:
    (payload, Idempotency-Key header); ``spans`` each POST's (Idempotency-Key, start,
    end) on the monotonic clock, once answered (overlapping deliveries show).
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrivals: list[tuple[dict[str, Any], str | None]] = []
        self.spans: list[tuple[str | None, float, float]] = []
        self.status = 200
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                began = time.monotonic()
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.arrivals.append((json.loads(body), self.headers.get("Idempotency-Key")))
                time.sleep(outer.delay)
                status = outer.status
                if status == 200:
                    outer.received.append(json.loads(body))
                # recorded before answering: once the sender has the answer, it is here
                outer.spans.append((self.headers.get("Idempotency-Key"), began, time.monotonic()))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # quiet
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def storage(db_url: str) -> Iterator[Storage]:
    store = Storage(open_database(db_url), 60)
    scorer = store.register_scorer(
        estimator_sha256="b" * 64,
        entropy_mode="topk",
        features=["h_max"],
        model_sd=0.0,
        card={},
    )
    store.activate(scorer.id)
    yield store
    store.db.dispose()


def _write(storage: Storage, prefix: str, domain: str, ps: list[float], ts: float) -> None:
    scorer = storage.active_scorer()
    assert scorer is not None
    ids = [f"{prefix}-{i}" for i in range(len(ps))]
    storage.write(
        [scored_traces(scorer, ids, ts=[ts] * len(ps), p=ps, slices=[{"domain": domain}] * len(ps))]
    )


LOW = AlertRule.from_mapping(
    {
        "name": "low",
        "kind": "below",
        "dimension": "domain",
        "threshold": 0.6,
        "window": "10m",
        "min_count": 5,
    }
)
DROP = AlertRule.from_mapping(
    {
        "name": "drop",
        "kind": "drop",
        "dimension": "domain",
        "window": "10m",
        "reference": "30m",
        "min_drop": 0.1,
        "z": 2.0,
        "min_count": 5,
    }
)


def test_one_alert_per_episode_delivered_once(storage: Storage, receiver: Receiver) -> None:
    metrics = Metrics()
    engine = AlertEngine((LOW,), storage, metrics, webhook_url=receiver.url)
    _write(storage, "good", "good", [0.9] * 20, NOW - 60)
    _write(storage, "bad", "bad", [0.4] * 20, NOW - 60)
    _write(storage, "thin", "thin", [0.1] * 3, NOW - 60)  # under min_count: no verdict

    [opened] = engine.evaluate(NOW)
    assert (opened.kind, opened.value) == ("opened", "bad")
    assert opened.evidence["n"] == 20 and opened.evidence["estimate"] == pytest.approx(0.4)
    assert engine.evaluate(NOW + 30) == []  # still bad: the same episode, nothing new
    assert asyncio.run(engine.deliver()) == 1
    assert asyncio.run(engine.deliver()) == 0
    [payload] = receiver.received
    assert payload["status"] == "firing" and payload["slice"] == {"domain": "bad"}
    assert payload["rule"] == "low" and "bad" in payload["text"]
    assert payload["evidence"]["threshold"] == 0.6

    _write(storage, "fix", "bad", [0.95] * 200, NOW)  # the slice recovers
    [resolved] = engine.evaluate(NOW + 60)
    assert (resolved.kind, resolved.alert_id) == ("resolved", opened.alert_id)
    assert asyncio.run(engine.deliver()) == 1
    assert [p["status"] for p in receiver.received] == ["firing", "resolved"]

    later = NOW + 3600  # a new episode later on
    _write(storage, "bad2", "bad", [0.3] * 10, later)
    [again] = engine.evaluate(later + 1)
    assert again.kind == "opened" and again.alert_id != opened.alert_id
    rows = list_alerts(storage.db)
    assert [(r["status"], r["slice"]) for r in rows] == [
        ("open", {"domain": "bad"}),
        ("resolved", {"domain": "bad"}),
    ]
    assert metrics.registry.get_sample_value("sentinel_alerts_open") == 1


def test_drop_against_the_reference_window(storage: Storage) -> None:
    engine = AlertEngine((DROP,), storage, Metrics())
    _write(storage, "ref", "drift", [0.9] * 30, NOW - 1200)  # in the reference window
    _write(storage, "cur", "drift", [0.5] * 30, NOW - 60)
    _write(storage, "ref2", "steady", [0.8] * 30, NOW - 1200)
    _write(storage, "cur2", "steady", [0.78] * 30, NOW - 60)  # within min_drop
    [event] = engine.evaluate(NOW)
    assert event.value == "drift"
    assert event.evidence["drop"] == pytest.approx(0.4)
    assert event.evidence["reference_n"] == 30 and event.evidence["drop_z"] > 2


def test_failed_webhooks_are_retried_and_instances_do_not_duplicate(
    storage: Storage, receiver: Receiver
) -> None:
    metrics = Metrics()
    a = AlertEngine((LOW,), storage, metrics, webhook_url=receiver.url)
    b = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url)  # a second instance
    _write(storage, "bad", "bad", [0.2] * 10, NOW - 60)
    assert len(a.evaluate(NOW)) == 1
    assert b.evaluate(NOW) == []  # the episode is already open (shared database)
    assert b._open(LOW, "", "bad", {}, NOW) is None  # the unique index refuses a second one
    receiver.status = 500
    assert asyncio.run(a.deliver()) == 0
    [row] = list_alerts(storage.db)
    assert not row["notified"] and row["notify_error"].startswith("HTTP 500")
    assert metrics.registry.get_sample_value("sentinel_webhook_failures_total") == 1
    receiver.status = 200
    assert asyncio.run(b.deliver()) == 1
    assert asyncio.run(a.deliver()) == 0
    assert len(receiver.received) == 1 and list_alerts(storage.db)[0]["notified"]


def test_overlapping_deliveries_post_an_event_once(storage: Storage, receiver: Receiver) -> None:
    # two instances deliver at the same moment to a receiver that takes a second to
    # answer: the second finds the event in flight and leaves it alone
    receiver.delay = 1.0
    a = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url)
    b = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url)
    _write(storage, "bad", "bad", [0.2] * 10, NOW - 60)
    [opened] = a.evaluate(NOW)

    async def both() -> list[int]:
        first = asyncio.create_task(a.deliver())
        while not receiver.arrivals:  # a's POST is on the wire...
            await asyncio.sleep(0.01)
        second = await b.deliver()  # ...when b tries
        return [await first, second]

    assert asyncio.run(both()) == [1, 0]
    assert asyncio.run(b.deliver()) == 0  # delivered: nothing left to claim
    assert receiver.arrivals == [(receiver.received[0], f"sentinel-alert-{opened.alert_id}-firing")]


def test_a_claim_expires_after_the_webhook_deadline(storage: Storage, receiver: Receiver) -> None:
    # an instance that died mid-POST leaves a claim behind; once it expires another
    # instance delivers (at least once), with the same idempotency key
    clock = [NOW]
    a = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url, webhook_timeout=1.0)
    _write(storage, "bad", "bad", [0.2] * 10, NOW - 60)
    [opened] = a.evaluate(NOW)
    b = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url, clock=lambda: clock[0])
    [(row, status)] = a._undelivered()
    assert a._claim(row, status)  # ... and a dies before it POSTs
    assert asyncio.run(b.deliver()) == 0  # in flight
    clock[0] = time.time() + 60  # past the claim (webhook_timeout + margin)
    assert asyncio.run(b.deliver()) == 1
    assert receiver.arrivals[0][1] == f"sentinel-alert-{opened.alert_id}-firing"


def test_a_receiver_slower_than_the_webhook_timeout_is_a_failed_attempt(
    storage: Storage, receiver: Receiver
) -> None:
    receiver.delay = 2.0
    engine = AlertEngine((LOW,), storage, Metrics(), webhook_url=receiver.url, webhook_timeout=0.5)
    _write(storage, "bad", "bad", [0.2] * 10, NOW - 60)
    engine.evaluate(NOW)
    assert asyncio.run(engine.deliver()) == 0
    assert list_alerts(storage.db)[0]["notify_error"].startswith("no answer within")


def test_unreachable_webhook_is_recorded_not_raised(storage: Storage) -> None:
    from entropy_sentinel.testing.service import free_port

    engine = AlertEngine(
        (LOW,),
        storage,
        Metrics(),
        webhook_url=f"http://127.0.0.1:{free_port()}/x",
        webhook_timeout=2.0,
    )
    _write(storage, "bad", "bad", [0.2] * 10, NOW - 60)
    engine.evaluate(NOW)
    assert asyncio.run(engine.deliver()) == 0
    assert "ConnectError" in list_alerts(storage.db)[0]["notify_error"]


def test_rules_are_validated_with_clear_messages() -> None:
    with pytest.raises(ConfigError, match="needs threshold"):
        AlertRule.from_mapping({"name": "x", "kind": "below", "dimension": "d", "window": "1h"})
    with pytest.raises(ConfigError, match="needs `reference`"):
        AlertRule.from_mapping({"name": "x", "kind": "drop", "dimension": "d", "window": "1h"})
    with pytest.raises(ConfigError, match="unknown keys"):
        AlertRule.from_mapping(
            {"name": "x", "kind": "below", "dimension": "d", "window": "1h", "thresh": 1}
        )
    with pytest.raises(ConfigError, match="kind 'above' is unknown"):
        AlertRule.from_mapping({"name": "x", "kind": "above", "dimension": "d", "window": "1h"})
    with pytest.raises(ConfigError, match="not a duration"):
        AlertRule.from_mapping(
            {"name": "x", "kind": "below", "dimension": "d", "window": "soon", "threshold": 0.5}
        )
    with pytest.raises(ConfigError, match="whole multiples"):
        Settings(bucket=300, alert_rules=(LOW.__class__(**{**LOW.__dict__, "window": 600 + 60}),))


def test_upper_bound_rule_waits_for_confidence() -> None:
    rule = AlertRule.from_mapping(
        {
            "name": "sure",
            "kind": "below",
            "dimension": "d",
            "threshold": 0.7,
            "window": "1h",
            "bound": "upper",
            "min_count": 2,
        }
    )
    few = SliceStats.from_arrays(np.full(5, 0.6))
    many = SliceStats.from_arrays(np.full(2000, 0.6))
    assert judge(rule, finish(few), None).firing is False  # could still be >= 0.7
    assert judge(rule, finish(many), None).firing is True
    assert judge(rule, finish(many, model_sd=0.2), None).firing is False  # estimator error
    unseen = SliceStats.from_arrays(np.full(2000, 0.6), unseen=np.ones(2000, bool),
                                    w=np.zeros((2000, 11)))  # fmt: skip
    assert judge(rule, finish(unseen, transfer=load_transfer("sentinel")), None).firing is False


def test_service_posts_an_alert_for_real_traffic(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path, receiver: Receiver
) -> None:
    rule = AlertRule.from_mapping(
        {
            "name": "strict",
            "kind": "below",
            "dimension": "domain",
            "threshold": 0.999,
            "window": "1h",
            "min_count": 5,
        }
    )
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'alerts.db'}",
        model_path=corpus_model,
        alert_rules=(rule,),
        webhook_url=receiver.url,
        evaluate_every=0.2,
    )
    records = [
        {"id": f"r{i}", "token_entropy": r["token_entropy"], "slice": {"domain": "gsm8k"}}
        for i, r in enumerate(corpus_records[:20])
    ]
    with ThreadedServer(create_app(settings)) as srv:
        assert httpx.post(srv.url + "/v1/traces", json={"traces": records}).status_code == 200
        deadline = time.monotonic() + 30
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        alerts = httpx.get(srv.url + "/v1/alerts", params={"status": "open"}).json()
    [payload] = receiver.received
    assert payload["slice"] == {"domain": "gsm8k"} and payload["evidence"]["n"] == 20
    assert alerts["alerts"][0]["id"] == payload["alert_id"] and alerts["alerts"][0]["notified"]
    assert alerts["rules"] == [rule.describe()]


@pytest.mark.postgres
def test_two_service_instances_on_one_postgres_post_an_alert_once(
    corpus_model: Path, corpus_records: list[dict[str, Any]], tmp_path: Path, receiver: Receiver
) -> None:
    # the reproduction of issue 11: two `sentinel serve` on one PostgreSQL, evaluating
    # every half second, a webhook that takes 3 s to answer, 20 traces posted to one
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set (scripts/test.sh starts a server)")
    receiver.delay = 3.0
    config = tmp_path / "sentinel.toml"
    config.write_text(
        f'evaluate_every = "0.5s"\nwebhook_url = "{receiver.url}"\n'
        '[[alerts]]\nname = "strict"\nkind = "below"\ndimension = "domain"\n'
        'threshold = 0.99\nwindow = "1h"\nmin_count = 10\n'
    )
    records = [
        {"id": f"two-{i}", "token_entropy": r["token_entropy"], "slice": {"domain": "gsm8k"}}
        for i, r in enumerate(corpus_records[:20])
    ]
    with (
        postgres_database(server) as url,
        ServiceProcess(db_url=url, model=corpus_model, config=config) as a,
        ServiceProcess(db_url=url, model=corpus_model, config=config),
    ):
        started = time.monotonic()
        assert httpx.post(a.url + "/v1/traces", json={"traces": records}).is_success
        while not receiver.received and time.monotonic() < started + 60:
            time.sleep(0.1)
        assert receiver.received, "the alert to be delivered"
        time.sleep(2.0)  # four more evaluations of each instance after the answer
    [(payload, key)] = receiver.arrivals
    assert payload["status"] == "firing" and key == f"sentinel-alert-{payload['alert_id']}-firing"
