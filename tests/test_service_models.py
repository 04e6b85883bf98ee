"""Several models behind one service, on SQLite and PostgreSQL (``postgres`` marker).

Three real estimators fitted on disjoint domains of the committed SmolLM2 corpus stand
for three models (tests/models_fixtures.py). Mixed traffic of the first two plus a third
model without an estimator goes through the ingest pipeline, the HTTP API and the
recording proxy (against an upstream replaying real recorded answers): every trace
lands on its own model's estimator (its P equals that estimator's, not another's), the
third model's traces are stored unscored, counted and logged, and are scored by their
estimator once it is registered, without a restart (in-process reload, and SIGHUP to a
real `sentinel serve` process). Nothing is lost: every acknowledged trace is stored,
and the aggregates equal a recount.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from entropy_sentinel import CorrectnessEstimator, read_traces
from entropy_sentinel.cli import app
from entropy_sentinel.errors import ArtifactError, ConfigError
from entropy_sentinel.service.alert_rules import AlertRule
from entropy_sentinel.service.alerts import AlertEngine, list_alerts
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.estimates import EstimateQuery, estimate
from entropy_sentinel.service.labels import recalibrate
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.model_registry import ModelRegistry
from entropy_sentinel.service.pipeline import IngestPipeline
from entropy_sentinel.service.settings import ModelSpec, Settings, load_settings
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import open_database
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.service.storage.tables import trace_steps, traces
from entropy_sentinel.testing.replay_upstream import ReplayUpstream
from entropy_sentinel.testing.service import ServiceProcess, ThreadedServer
from tests.conftest import SMOLLM2_FIXTURES
from tests.models_fixtures import corpus, corpus_models, records_of, traffic_indices
from tests.service_fixtures import db_url, smollm2_model

__all__ = ["corpus_models", "db_url", "smollm2_model"]

A, B, C = "smol-a", "smol-b", "smol-c"


def _predict(path: Path, records: list[dict[str, Any]]) -> np.ndarray:
    """What the estimator at ``path`` says of ``records`` (the library, no service)."""
    batch = read_traces(records)
    return CorrectnessEstimator.load(path).predict_traces(batch)


def _rows(storage: Storage) -> dict[str, Any]:
    with storage.db.read.connect() as conn:
        return {r.trace_id: r for r in conn.execute(sa.select(traces))}


def _mixed(n: int = 30, seed: int = 0) -> tuple[list[dict[str, Any]], dict[str, list[int]]]:
    """``n`` corpus traces per model, interleaved a, b, c, a, b, c, ..."""
    idx = traffic_indices(3 * n, seed)
    out: list[dict[str, Any]] = []
    owners: dict[str, list[int]] = {A: [], B: [], C: []}
    for k, i in enumerate(idx.tolist()):
        model = (A, B, C)[k % 3]
        owners[model].append(i)
        out += records_of(np.array([i]), model, prefix=f"s{seed}", labelled=k % 4 == 0)
    return out, owners


def _of(records: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    return [r for r in records if r["model"] == model]


# ------------------------------------------------------------------ pipeline
def test_records_are_the_corpus_traces() -> None:
    idx = traffic_indices(40)
    parsed = read_traces(records_of(idx, A))
    ref = corpus().subset(idx)
    np.testing.assert_array_equal(parsed.offsets, ref.offsets)
    np.testing.assert_array_equal(parsed.sampled_in_topk, ref.sampled_in_topk)
    width = parsed.k
    np.testing.assert_array_equal(parsed.topk_logprobs, ref.topk_logprobs[:, :width])
    assert np.isneginf(ref.topk_logprobs[:, width:]).all()  # only padding beyond
    assert set(parsed.models) == {A}


def test_mixed_traffic_lands_on_each_models_estimator_and_the_unknown_one_waits(
    db_url: str, corpus_models: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    storage = Storage(open_database(db_url), 60)
    registry = ModelRegistry(
        storage, [ModelSpec(A, corpus_models[A]), ModelSpec(None, corpus_models[B])]
    )
    metrics = Metrics()
    pipeline = IngestPipeline(Settings(), storage, registry, metrics)
    pipeline.start()
    try:
        records, owners = _mixed()
        # the third model's traces say "smol-c-v2": an alias it gets only later
        for r in records:
            if r["model"] == C:
                r["model"] = "smol-c-v2"
        with caplog.at_level(logging.WARNING, "entropy_sentinel.service.models"):
            results = [pipeline.ingest_records_sync(records[k : k + 25]) for k in (0, 25, 50, 75)]
        assert sum(r.accepted for r in results) == 90 and not any(r.rejections for r in results)
        assert sum(r.waiting for r in results) == 30
        assert "no estimator for model 'smol-c-v2'" in caplog.text
        assert metrics.registry.get_sample_value("sentinel_traces_waiting_total") == 30
        assert {i.model for r in results for i in r.items} == {A, B, "smol-c-v2"}

        rows = _rows(storage)
        assert len(rows) == 90  # nothing lost
        for model in (A, B):
            own = _of(records, model)
            p = np.array([rows[r["id"]].p for r in own])
            np.testing.assert_allclose(p, _predict(corpus_models[model], own), rtol=1e-12)
            other = B if model == A else A
            assert not np.allclose(p, _predict(corpus_models[other], own), atol=1e-3)
            assert {rows[r["id"]].model for r in own} == {model}
        waiting = [r for r in records if r["model"] == "smol-c-v2"]
        assert all(rows[r["id"]].p is None and rows[r["id"]].scorer_id is None for r in waiting)
        with storage.db.read.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(trace_steps)).scalar() == 30
        counts = storage.model_counts()
        assert (counts[A].scored, counts[B].scored, counts["smol-c-v2"].waiting) == (30, 30, 30)
        assert registry.pending() == 0  # no estimator serves smol-c-v2 yet

        # a label sent for a waiting trace is kept and counts once it is scored
        storage.apply_labels([(waiting[1]["id"], 1.0)], source="alice")
        labelled_in_c = len({r["id"] for r in waiting if "correct" in r} | {waiting[1]["id"]})

        # the estimator of smol-c arrives, with the alias its traces used
        registry.configure(
            [
                ModelSpec(A, corpus_models[A]),
                ModelSpec(None, corpus_models[B]),
                ModelSpec(C, corpus_models[C], ("smol-c-v2",)),
            ]
        )
        assert registry.pending() == 30
        assert registry.rescore_pending(limit=7) == 30
        assert registry.pending() == 0
        rows = _rows(storage)
        p = np.array([rows[r["id"]].p for r in waiting])
        np.testing.assert_allclose(p, _predict(corpus_models[C], waiting), rtol=1e-12)
        assert {rows[r["id"]].model for r in waiting} == {C}
        with storage.db.read.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(trace_steps)).scalar() == 0
        report = check_aggregates(storage.db)
        assert report.ok and report.traces == 90, report.problems

        # per-model estimates: each model's traces with its own estimator
        scorers = {s.model: s for s in storage.active_scorers()}
        assert set(scorers) == {A, B, C}
        q = EstimateQuery(by="*", since=0.0)
        split = estimate(storage.db, list(scorers.values()), 60, q, now=time.time(), split=True)
        by_model = {r.model: r for r in split.records}
        assert by_model[C].sums.stats.n_labelled == labelled_in_c
        mine = {A: _of(records, A), B: _of(records, B), C: waiting}
        for model in (A, B, C):
            assert by_model[model].n == 30
            assert by_model[model].interval.estimate == pytest.approx(
                float(_predict(corpus_models[model], mine[model]).mean())
            )
        whole = estimate(storage.db, list(scorers.values()), 60, q, now=time.time())
        [all_models] = whole.records
        assert all_models.model is None and all_models.n == 90
        assert all_models.interval.estimate == pytest.approx(
            np.mean([by_model[m].interval.estimate for m in (A, B, C)])
        )

        # recalibration is per model: smol-a's, and smol-b stays as it was
        truth = corpus().labels
        storage.apply_labels(
            [(r["id"], float(truth[i])) for r, i in zip(mine[A], owners[A], strict=True)],
            source="truth",
        )
        before_b = storage.active_scorer(B)
        out = recalibrate(storage, model=A, min_labels=5, force=True)
        assert out.activated is not None and out.activated.model == A
        assert storage.active_scorer(B) == before_b
        assert out.rescored == 30
        assert check_aggregates(storage.db).ok
    finally:
        pipeline.close()
        storage.db.dispose()


def test_waiting_steps_expire_by_the_retention_limit(
    tmp_path: Path, corpus_models: dict[str, Path]
) -> None:
    storage = Storage(open_database(f"sqlite:///{tmp_path / 'r.db'}"), 60)
    registry = ModelRegistry(storage, [ModelSpec(A, corpus_models[A])])
    pipeline = IngestPipeline(Settings(), storage, registry, Metrics())
    pipeline.start()
    try:
        records = records_of(traffic_indices(5), C)
        assert pipeline.ingest_records_sync(records).waiting == 5
        assert storage.expire_waiting(max_traces=2, max_age=3600, now=time.time()) == 3
        states = [storage.trace(r["id"])["status"] for r in records]  # type: ignore[index]
        assert states == ["expired"] * 3 + ["waiting"] * 2
        assert storage.model_counts()[C].expired == 3
        assert storage.expire_waiting(max_traces=100, max_age=0, now=time.time() + 1) == 2
        registry.configure([ModelSpec(A, corpus_models[A]), ModelSpec(C, corpus_models[C])])
        assert registry.rescore_pending() == 0  # expired traces are kept, never scored
        assert len(_rows(storage)) == 5
    finally:
        pipeline.close()
        storage.db.dispose()


def test_an_unnamed_estimator_serves_every_model_and_its_estimates_are_marked(
    tmp_path: Path,
    corpus_models: dict[str, Path],
    smollm2_model: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = Storage(open_database(f"sqlite:///{tmp_path / 'u.db'}"), 60)
    with caplog.at_level(logging.WARNING, "entropy_sentinel.service.models"):
        registry = ModelRegistry(
            storage, [ModelSpec(A, corpus_models[A]), ModelSpec(None, smollm2_model)]
        )
    assert "records no model name" in caplog.text
    pipeline = IngestPipeline(Settings(), storage, registry, Metrics())
    pipeline.start()
    try:
        idx = traffic_indices(10)
        records = records_of(idx[:5], A, prefix="a") + records_of(idx[5:], "other", prefix="o")
        records += records_of(idx[:3], None, prefix="n")  # naming no model
        assert pipeline.ingest_records_sync(records).waiting == 0
        scorers = {s.model: s for s in storage.active_scorers()}
        assert set(scorers) == {"", A, "other"}
        assert not scorers[A].other_model and scorers["other"].other_model
        assert not scorers[""].other_model  # unnamed traces, unnamed estimator
        p = np.array([_rows(storage)[r["id"]].p for r in records[5:10]])
        np.testing.assert_allclose(p, _predict(smollm2_model, records[5:10]), rtol=1e-12)
        q = EstimateQuery(by="*", since=0.0)
        result = estimate(storage.db, list(scorers.values()), 60, q, now=time.time(), split=True)
        marked = {r.model: r.other_model for r in result.records}
        assert marked == {"": False, A: False, "other": True}
        whole = estimate(storage.db, list(scorers.values()), 60, q, now=time.time())
        assert whole.records[0].other_model and whole.to_dict()["records"][0]["other_model"]
    finally:
        pipeline.close()
        storage.db.dispose()


def test_alerts_are_per_model(tmp_path: Path, corpus_models: dict[str, Path]) -> None:
    storage = Storage(open_database(f"sqlite:///{tmp_path / 'al.db'}"), 60)
    registry = ModelRegistry(
        storage, [ModelSpec(A, corpus_models[A]), ModelSpec(B, corpus_models[B])]
    )
    pipeline = IngestPipeline(Settings(), storage, registry, Metrics())
    pipeline.start()
    try:
        records, _ = _mixed(20, seed=3)
        pipeline.ingest_records_sync([r for r in records if r["model"] != C])
        q = EstimateQuery(by="*", since=0.0)
        scorers = {s.model: s for s in storage.active_scorers()}
        by = {
            m: estimate(storage.db, scorers[m], 60, q, now=time.time()).records[0] for m in (A, B)
        }
        # a threshold between the two models' estimates: only the lower one fires
        low, high = sorted((A, B), key=lambda m: by[m].interval.estimate)
        threshold = (by[low].interval.estimate + by[high].interval.estimate) / 2
        rule = AlertRule.from_mapping(
            {
                "name": "low",
                "kind": "below",
                "dimension": "*",
                "threshold": threshold,
                "window": "1h",
                "min_count": 5,
            }
        )
        engine = AlertEngine((rule,), storage, Metrics())
        events = engine.evaluate()
        assert [(e.model, e.rule) for e in events] == [(low, "low")]
        [alert] = list_alerts(storage.db)
        assert alert["model"] == low and alert["evidence"]["model"] == low
        assert list_alerts(storage.db, models=[high]) == []
    finally:
        pipeline.close()
        storage.db.dispose()


def test_model_configurations_are_checked(
    tmp_path: Path, corpus_models: dict[str, Path], smollm2_model: Path
) -> None:
    storage = Storage(open_database(f"sqlite:///{tmp_path / 'c.db'}"), 60)
    try:
        with pytest.raises(ConfigError, match="both record no model name"):
            ModelRegistry(
                storage,
                [
                    ModelSpec(None, smollm2_model),
                    ModelSpec("x", corpus_models[A]),
                    ModelSpec(None, smollm2_model),
                ],
            )
        with pytest.raises(ConfigError, match="already the name of model 'smol-b'"):
            ModelRegistry(
                storage,
                [ModelSpec(A, corpus_models[A], ("smol-b",)), ModelSpec(B, corpus_models[B])],
            )
        with pytest.raises(ConfigError, match="two estimators"):
            ModelRegistry(
                storage, [ModelSpec(A, corpus_models[A]), ModelSpec(None, corpus_models[A])]
            )
        with pytest.raises(ArtifactError, match="does not exist"):
            ModelRegistry(storage, [ModelSpec(A, tmp_path / "missing.skops")])
        with pytest.raises(ConfigError, match="needs an estimator"):
            ModelRegistry(storage, [])
        registry = ModelRegistry(storage, [ModelSpec(A, corpus_models[A])])
        assert registry.key(None) == A  # the only model takes the traces naming none
        registry.configure(
            [ModelSpec(A, corpus_models[A]), ModelSpec(B, corpus_models[B])], default_model=B
        )
        assert registry.key(None) == B and registry.key("smol-x") == "smol-x"
    finally:
        storage.db.dispose()

    assert ModelSpec.parse("gpt-4o=m/g.skops") == ModelSpec("gpt-4o", Path("m/g.skops"))
    assert ModelSpec.parse(str(corpus_models[A])) == ModelSpec(None, corpus_models[A])
    with pytest.raises(ConfigError, match="NAME=PATH"):
        ModelSpec.parse("=x.skops")
    config = tmp_path / "s.toml"
    config.write_text(
        'model = "bare.skops"\ndefault_model = "a"\n'
        '[models.a]\npath = "a.skops"\naliases = ["a-2025"]\n[models.b]\npath = "/abs/b.skops"\n'
    )
    s = load_settings(config, environ={})
    assert s.model_specs == (
        ModelSpec(None, tmp_path / "bare.skops"),
        ModelSpec("a", tmp_path / "a.skops", ("a-2025",)),
        ModelSpec("b", Path("/abs/b.skops")),
    )
    # the command line's models join the file's: same name replaces, a bare path
    # replaces the file's `model`
    cli = (ModelSpec("b", Path("new-b.skops")), ModelSpec(None, Path("cli.skops")))
    s = load_settings(config, environ={}, models=cli)
    assert s.model_specs == (ModelSpec("a", tmp_path / "a.skops", ("a-2025",)), *cli)
    for bad, words in [
        ('[models.a]\nfile = "x"\n', "needs path"),
        ('[models.a]\npath = "x"\naliases = "y"\n', "aliases must be an array"),
        ('models = ["x"]\n', "table of tables"),
        (
            '[models.a]\npath = "x"\n[models.b]\npath = "y"\n[models.a2]\npath="z"\naliases=[""]\n',
            "1 to 256 characters",
        ),
    ]:
        config.write_text(bad)
        with pytest.raises(ConfigError, match=words):
            load_settings(config, environ={})


# ------------------------------------------------------ the service and proxy
@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedServer]:
    with ThreadedServer(ReplayUpstream.from_directory(SMOLLM2_FIXTURES)) as srv:
        yield srv


def _state(server: ThreadedServer) -> ServiceState:
    state: ServiceState = server.app.state.service
    return state


def _wait(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _proxied(client: openai.OpenAI, model: str, n: int) -> list[str]:
    """``n`` chat requests for ``model`` through the proxy; the ids their traces are
    recorded under (the proxy's own, in ``X-Sentinel-Trace-Id``)."""
    ids = []
    for i in range(n):
        answer = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": f"What is {i} + 2?"}],
            extra_headers={"X-Sentinel-Slice": f"domain=proxy-{model}"},
        )
        ids.append(answer.headers["x-sentinel-trace-id"])
    return ids


def test_the_service_and_its_proxy_score_each_model_with_its_own_estimator(
    db_url: str, corpus_models: dict[str, Path], upstream: ThreadedServer
) -> None:
    settings = Settings(
        db_url=db_url,
        models=(ModelSpec(A, corpus_models[A]), ModelSpec(B, corpus_models[B])),
        upstream=upstream.url + "/v1",
        evaluate_every=3600.0,
    )
    with (
        ThreadedServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k", max_retries=0)
        records, _ = _mixed(12, seed=5)
        r = http.post("/v1/traces", json={"traces": records})
        assert r.status_code == 200 and r.json()["accepted"] == 36 and r.json()["waiting"] == 12
        proxied = {m: _proxied(client, m, 3) for m in (A, B, C)}
        state = _state(server)
        every = [*(r["id"] for r in records), *(i for ids in proxied.values() for i in ids)]
        _wait(lambda: all(state.storage.trace(i) is not None for i in every), "the proxied traces")

        # each proxied answer is keyed by the model the request asked for (the answer
        # names another), scored by that model's estimator
        recorded = json.loads((SMOLLM2_FIXTURES / "chat.json").read_text())
        for model in (A, B):
            for tid in proxied[model]:
                row = state.storage.trace(tid)
                assert row is not None and row["model"] == model and row["status"] == "scored"
                assert row["meta"]["proxy"]["answer_model"] == recorded[0]["model"]
        for tid in proxied[C]:
            assert state.storage.trace(tid)["status"] == "waiting"  # type: ignore[index]

        models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        assert models[C]["estimator"] is None and models[C]["traces"]["waiting"] == 15
        assert models[A]["estimator"]["fitted_on"] == A and models[A]["traces"]["scored"] == 15
        assert not models[A]["estimator"]["other_model"]

        est = http.get("/v1/estimates", params={"by": "domain", "model": [A, B, C]}).json()
        assert est["no_estimator"] == [C] and {m["model"] for m in est["models"]} == {A, B}
        per_model: dict[str, int] = {}
        for rec in est["records"]:
            per_model[rec["model"]] = per_model.get(rec["model"], 0) + rec["n"]
        assert per_model == {A: 15, B: 15}
        whole = http.get("/v1/estimates").json()
        assert whole["records"][0]["n"] == 30 and whole["records"][0]["model"] is None
        assert whole["scorer_id"] is None and len(whole["models"]) == 2
        one = http.get("/v1/estimates", params={"model": A}).json()
        assert one["scorer_id"] == models[A]["estimator"]["scorer_id"]
        assert http.get("/v1/model").status_code == 400  # which one? (two models)
        assert http.get("/v1/model", params={"model": B}).json()["fitted_on"] == B
        assert http.get("/v1/priorities", params={"budget": 5}).status_code == 400
        pri = http.get("/v1/priorities", params={"budget": 5, "model": A}).json()
        assert {q["model"] for q in pri["requests"]} == {A}

        asyncio.run(maintain_once(state))
        metrics = http.get("/metrics").text
        assert "sentinel_traces_waiting_total 15.0" in metrics
        assert f'sentinel_model_traces{{model="{C}",state="waiting"}} 15.0' in metrics

        # the third estimator is registered while the service runs
        state.reload(settings.replace(models=(*settings.models, ModelSpec(C, corpus_models[C]))))
        asyncio.run(maintain_once(state))
        models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
        assert models[C]["traces"] == {"scored": 15, "waiting": 0, "refused": 0, "expired": 0}
        mine = _of(records, C)
        p = np.array([state.storage.trace(r["id"])["p_correct"] for r in mine])  # type: ignore[index]
        np.testing.assert_allclose(p, _predict(corpus_models[C], mine), rtol=1e-12)
        # and its new traces are scored on arrival
        [tid] = _proxied(client, C, 1)
        _wait(lambda: (state.storage.trace(tid) or {}).get("status") == "scored", "a scored trace")
        assert check_aggregates(state.db).ok
        with state.db.read.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(traces)).scalar() == 46
        client.close()


def test_sighup_registers_a_new_model_without_a_restart(
    db_url: str, corpus_models: dict[str, Path], tmp_path: Path
) -> None:
    config = tmp_path / "sentinel.toml"
    base = f'[models.{A}]\npath = "{corpus_models[A]}"\n'
    config.write_text(base)
    log = tmp_path / "serve.log"
    with (
        ServiceProcess(db_url=db_url, model=None, config=config, log_path=log) as svc,
        httpx.Client(base_url=svc.url, timeout=60) as http,
    ):
        records, _ = _mixed(6, seed=9)
        body = {"traces": [r for r in records if r["model"] in (A, C)]}
        assert http.post("/v1/traces", json=body).json()["waiting"] == 6

        def waiting() -> int:
            models = {m["name"]: m for m in http.get("/v1/models").json()["models"]}
            return int(models[C]["traces"]["waiting"])

        assert waiting() == 6
        config.write_text(base + f'[models.{C}]\npath = "{corpus_models[C]}"\n')
        svc.signal(signal.SIGHUP)
        _wait(lambda: waiting() == 0, "the waiting traces to be scored", timeout=60)
        pid = svc.proc.pid if svc.proc else None
        est = http.get("/v1/estimates", params={"model": C}).json()
        assert est["records"][0]["n"] == 6
        assert svc.proc is not None and svc.proc.pid == pid and svc.proc.poll() is None
    text = log.read_text()
    assert "no estimator for model 'smol-c'" in text and "reloaded: 2 models served" in text


@pytest.mark.parametrize(
    ("value", "name", "path"),
    [("gpt-4o=m/g.skops", "gpt-4o", "m/g.skops"), ("m/g.skops", None, "m/g.skops")],
)
def test_serve_model_option_takes_name_equals_path_or_a_path(
    value: str, name: str | None, path: str
) -> None:
    spec = ModelSpec.parse(value)
    assert (spec.name, spec.path) == (name, Path(path))
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert "NAME=PATH" in " ".join(result.output.split())
