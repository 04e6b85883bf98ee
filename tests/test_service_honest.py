"""The service's numbers are the library's, on SQLite and PostgreSQL (``postgres`` marker).

A real slice estimator (the ``sentinel`` preset with the L1-logistic family, so that it
fits in seconds) is fitted on four domains of the committed SmolLM2 corpus, with a
transfer relation of its own (so that the transfer term is no constant). Traffic of the
held-back traces of those domains (slices *seen in training*) and of four other domains
(*unseen*: their shift score and transfer error count) goes through the HTTP API. Then:

* each slice's estimate, interval, interval parts, shift and shift word equal
  `SentinelEstimator.estimate` on the same traces, by domain and by a dimension that
  mixes seen and unseen responses, within 1e-9;
* the labelling design the service draws is the library's (`SentinelEstimator.design`:
  the same responses with the same inclusion probabilities); labels posted for its items
  are designed, others plain, a skip is recorded, and the label-corrected numbers equal
  `estimate(..., inclusion=...)`;
* another estimator registered for the model rescores every stored trace from its
  stored features and slices: the numbers are then that estimator's, and a recount of
  the aggregates equals them (``sentinel report --check``);
* a database written by revision 0002 upgrades in place, reports its slices as unseen
  with an unknown shift until the maintenance task rescores them, then the library's.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from entropy_sentinel import read_traces
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.cli import app as cli_app
from entropy_sentinel.estimator import SentinelEstimator, load_estimator, preset
from entropy_sentinel.estimator.intervals import SliceInterval, finish
from entropy_sentinel.estimator.slices import SliceAccuracy
from entropy_sentinel.estimator.transfer import TransferModel
from entropy_sentinel.model_names import record_model
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
from entropy_sentinel.service.alert_rules import AlertRule, judge
from entropy_sentinel.service.app import create_app, maintain_once
from entropy_sentinel.service.estimates import EstimateQuery, estimate
from entropy_sentinel.service.metrics import Metrics, SliceGauge
from entropy_sentinel.service.model_registry import ModelRegistry
from entropy_sentinel.service.scoring import file_sha256
from entropy_sentinel.service.settings import ModelSpec, Settings
from entropy_sentinel.service.slice_numbers import combine
from entropy_sentinel.service.state import ServiceState
from entropy_sentinel.service.storage.buckets import TraceTerms, bucket_rows
from entropy_sentinel.service.storage.consistency import check_aggregates
from entropy_sentinel.service.storage.db import current_revision, head_revision, open_database
from entropy_sentinel.service.storage.store import Storage
from entropy_sentinel.steps import StepStats
from entropy_sentinel.testing.service import ThreadedServer
from tests.models_fixtures import corpus, records_of
from tests.service_fixtures import db_url

__all__ = ["db_url"]

MODEL = "smol"
TRAIN_A = ("synth_add_1d", "synth_mul_1d", "gsm8k", "asdiv")
TRAIN_B = ("svamp", "synth_mul_1d", "synth_add_2d", "aqua")
UNSEEN = ("svamp", "synth_add_10")  # in the traffic, unseen by A (svamp seen by B)
HOUR = 3600
T0 = math.floor(time.time() / HOUR) * HOUR - 20 * 86_400  # a quiet hour of its own
TOL = 1e-9
RELATION = TransferModel(  # transfer half-widths that grow with the shift (a test's own)
    name="test",
    edges=(0.6, 0.75, 0.97),
    levels=(0.5, 0.9, 0.95, 0.99),
    half_widths=(
        (0.02, 0.05, 0.1),
        (0.05, 0.1, 0.2),
        (0.06, 0.12, 0.25),
        (0.1, 0.2, 0.4),
    ),
    n_points=0,
    n_domains=0,
    source="tests/test_service_honest.py",
)
FIELDS = (
    "estimate",
    "lower",
    "upper",
    "sampling_sd",
    "calibration_sd",
    "transfer_half_width",
    "unseen_fraction",
    "shift",
)


def _domain_indices(domains: tuple[str, ...], part: slice) -> np.ndarray:
    domain = np.array([s["domain"] for s in corpus().slices])
    return np.concatenate([np.flatnonzero(domain == d)[part] for d in domains])


def _fit(domains: tuple[str, ...]) -> SentinelEstimator:
    est = preset("sentinel", family="lr", random_state=0)
    est.fit_traces(corpus().subset(_domain_indices(domains, slice(0, 100))))
    est.transfer_ = RELATION
    est.card_ = est._card()
    record_model(est.card_, MODEL)
    return est


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("honest")
    return {
        name: _fit(d).save(folder / f"{name}.skops") for name, d in (("a", TRAIN_A), ("b", TRAIN_B))
    }


def _traffic() -> list[dict[str, Any]]:
    """The held-back traces of A's training domains and traces of four others, shuffled,
    with a customer dimension that mixes both, over one hour."""
    idx = np.concatenate(
        [_domain_indices(TRAIN_A, slice(100, 150)), _domain_indices(UNSEEN, slice(0, 40))]
    )
    idx = np.random.default_rng(7).permutation(idx)
    out = records_of(idx, MODEL, prefix="h")
    for i, rec in enumerate(out):
        rec["slice"]["customer"] = f"c{i % 3}"
        rec["timestamp"] = T0 + 5 * i
    return out


def _truth(records: list[dict[str, Any]]) -> dict[str, bool]:
    batch = corpus()
    label = {f"h-{tid}": bool(y) for tid, y in zip(batch.ids, batch.labels, strict=True)}
    return {r["id"]: label[r["id"]] for r in records}


def _labelled(records: list[dict[str, Any]], labels: dict[str, bool]) -> list[dict[str, Any]]:
    return [{**r, "correct": labels[r["id"]]} if r["id"] in labels else r for r in records]


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x


def _same(service: dict[str, Any], lib: Any, what: str) -> None:
    """A service record equals a library `SliceRecord` within `TOL`."""
    assert service["n"] == lib.n, what
    for name in FIELDS:
        got, want = service[name], _num(getattr(lib, name))
        if want is None:
            assert got is None, (what, name, got)
        else:
            assert got == pytest.approx(want, abs=TOL), (what, name)
    assert service["shift_word"] == lib.shift_word, what


def _estimates(client: httpx.Client, by: str) -> dict[str, dict[str, Any]]:
    params = {
        "by": by,
        "since": str(T0),
        "until": str(T0 + HOUR),
        "reference": "none",
        "model": MODEL,
    }
    body = client.get("/v1/estimates", params=params).json()
    return {r["slice"][by]: r for r in body["records"]}


def _compare(client: httpx.Client, lib: SliceAccuracy, by: str) -> dict[str, dict[str, Any]]:
    got = _estimates(client, by)
    assert set(got) == {r.key[0] for r in lib}
    for r in lib:
        _same(got[str(r.key[0])], r, f"{by}={r.key[0]}")
    return got


def _settings(url: str, model: Path) -> Settings:
    return Settings(db_url=url, model_path=model, evaluate_every=3600.0, metrics_window=HOUR)


def _state(server: ThreadedServer) -> ServiceState:
    state: ServiceState = server.app.state.service
    return state


# ------------------------------------------------------------------ the service
def test_the_service_reports_the_library_s_numbers(
    db_url: str, artifacts: dict[str, Path], tmp_path: Path
) -> None:
    records = _traffic()
    truth = _truth(records)
    est_a, est_b = load_estimator(artifacts["a"]), load_estimator(artifacts["b"])
    batch = read_traces(records)
    with (
        ThreadedServer(create_app(_settings(db_url, artifacts["a"]))) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        answer = client.post("/v1/traces", json={"traces": records}).json()
        assert answer["accepted"] == len(records) and not answer["rejections"]
        lib = est_a.estimate(batch, by="domain")
        p = {t["id"]: t["p_correct"] for t in answer["traces"]}
        np.testing.assert_allclose([p[i] for i in batch.ids], est_a.predict_traces(batch), atol=TOL)

        # label-free: seen and unseen slices, and a dimension that mixes them
        by_domain = _compare(client, lib, "domain")
        words = {r["shift_word"] for r in by_domain.values()}
        assert "seen in training" in words and len(words) > 1
        assert {d for d, r in by_domain.items() if r["shift"] is None} == set(TRAIN_A)
        by_customer = _compare(client, est_a.estimate(batch, by="customer"), "customer")
        assert all(0 < r["unseen_fraction"] < 1 for r in by_customer.values())

        # the design: the library's, on the same traces
        params: dict[str, Any] = {
            "budget": 60,
            "by": "domain",
            "model": MODEL,
            "seed": 3,
            "status": "all",
        }
        rng = {"since": str(T0), "until": str(T0 + HOUR)}
        pri = client.get("/v1/priorities", params={**params, **rng}).json()
        design = est_a.design(batch, budget=60, by="domain", seed=3)
        chosen = {i: design.inclusion[j] for j, i in enumerate(design.ids) if design.chosen[j]}
        got = {r["trace_id"]: r["inclusion_probability"] for r in pri["requests"]}
        assert set(got) == set(chosen) and pri["design"]["size"] == len(chosen) > 10
        for tid, pi in chosen.items():
            assert got[tid] == pytest.approx(pi, abs=1e-12)
        assert {s["value"]: s["allocated"] for s in pri["slices"]} == {
            k[0]: v for k, v in design.allocation.items()
        }

        # labels: all drawn items but one skipped and one left pending; six plain labels
        items = sorted(got)
        skipped, pending = items[0], items[1]
        plain = [r["id"] for r in records if r["id"] not in got][:6]
        labels = {i: truth[i] for i in items[2:] + plain}
        body = [{"id": i, "correct": y} for i, y in labels.items()]
        body.append({"id": skipped, "skipped": True})
        out = client.post("/v1/labels", json={"labels": body, "source": "test"}).json()
        assert (out["labelled"], out["designed"], out["plain"], out["skipped"]) == (
            len(labels),
            len(items) - 2,
            6,
            1,
        )
        assert client.get(f"/v1/traces/{skipped}").json()["label_source"] == "skipped"
        again = client.get("/v1/priorities", params={**params, "status": "pending"}).json()
        assert again["design"] == {
            **pri["design"],
            "labelled": len(items) - 2,
            "skipped": 1,
            "pending": 1,
        }
        assert [r["trace_id"] for r in again["requests"]] == [pending]

        labelled = read_traces(_labelled(records, labels))
        inclusion = design.inclusion_of(labelled.ids)
        lib = est_a.estimate(labelled, by="domain", inclusion=inclusion)
        got_est = _compare(client, lib, "domain")
        for r in lib:
            rec = got_est[str(r.key[0])]
            assert rec["n_labelled"] == r.n_labelled
            assert rec["labelled_accuracy"] == pytest.approx(r.labelled_accuracy, abs=TOL)
            lc = rec["label_corrected"]
            assert (lc["estimate"], lc["lower"], lc["upper"]) == pytest.approx(
                (r.ppi_estimate, r.ppi_lower, r.ppi_upper), abs=TOL
            )
        assert sum(r["n_plain"] for r in got_est.values()) == 6
        assert check_aggregates(_state(server).db).ok

    # another estimator for the model: every trace rescored from its stored columns
    with ThreadedServer(create_app(_settings(db_url, artifacts["b"]))) as server:
        state = _state(server)
        for _ in range(5):
            asyncio.run(maintain_once(state))
            if not state.models.pending():
                break
        assert state.models.pending() == 0
        with httpx.Client(base_url=server.url, timeout=120) as client:
            _compare(client, est_b.estimate(labelled, by="domain", inclusion=inclusion), "domain")
            _compare(
                client, est_b.estimate(labelled, by="customer", inclusion=inclusion), "customer"
            )
    out = tmp_path / "report.json"
    report = CliRunner().invoke(
        cli_app,
        ["report", "--db", db_url, "--by", "domain", "--since", str(T0), "--check", "-o", str(out)],
    )
    assert report.exit_code == 0, report.output
    assert "aggregates consistent" in report.output
    word_of = {
        r["slice"]["domain"]: r["shift_word"] for r in json.loads(out.read_text())["records"]
    }
    assert word_of["svamp"] == word_of["synth_mul_1d"] == "seen in training"  # B's domains


# ------------------------------------------------------------ an upgraded database
def _old_rows(est: SentinelEstimator, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the service of revision 0002 stored for these records: the classifier's P and
    inputs (it loaded only the classifier inside an artifact)."""
    clf = est.classifier_
    batch = read_traces(records)
    conformed = clf.signature_.conform(batch) if clf.signature_ is not None else batch
    stats = StepStats(conformed, clf.entropy_mode)
    profile = entropy_profile(stats)
    X = clf.featurize(stats, profile=profile)
    p = clf.predict_proba(X)[:, 1]
    names = list(clf.input_names)
    extra = [n for n in names if n not in FEATURE_NAMES]
    rows = []
    for i, rec in enumerate(records):
        rows.append(
            {
                "trace_id": rec["id"],
                "model": MODEL,
                "ts": rec["timestamp"],
                "bucket": int(rec["timestamp"] // 60) * 60,
                "received_at": rec["timestamp"],
                "slice": json.dumps(rec["slice"]),
                "n_tokens": int(batch.offsets[i + 1] - batch.offsets[i]),
                "k": int(batch.trace_k[i]),
                "entropy_mode": clf.entropy_mode,
                **{n: float(profile[i, j]) for j, n in enumerate(FEATURE_NAMES)},
                "extra_features": json.dumps({n: float(X[i, names.index(n)]) for n in extra}),
                "p_raw": float(p[i]),
                "p": float(p[i]),
                "scorer_id": 1,
                "label": None if "correct" not in rec else float(rec["correct"]),
                "label_source": None if "correct" not in rec else "ingest",
                "meta": None,
            }
        )
    return rows


def test_a_0002_database_upgrades_and_is_rescored_to_the_library_s_numbers(
    db_url: str, artifacts: dict[str, Path]
) -> None:
    est = load_estimator(artifacts["a"])
    truth = _truth(_traffic())
    records = _labelled(_traffic(), {i: y for k, (i, y) in enumerate(truth.items()) if k % 9 == 0})
    db = open_database(db_url, revision="0002")
    old = sa.MetaData()
    tables = {
        n: sa.Table(n, old, autoload_with=db.read)
        for n in ("scorers", "models", "sentinel_meta", "traces", "trace_slices", "slice_buckets")
    }
    rows = _old_rows(est, records)
    with db.write.begin() as conn:
        conn.execute(
            tables["scorers"].insert(),
            {
                "model": MODEL,
                "estimator_sha256": file_sha256(artifacts["a"]),
                "entropy_mode": est.entropy_mode,
                "features": json.dumps(list(est.classifier_.input_names)),
                "model_sd": float(est.classifier_.model_sd_),
                "card": json.dumps(est.card_, default=str),
                "created_at": T0,
            },
        )
        conn.execute(
            tables["models"].insert(), {"name": MODEL, "active_scorer_id": 1, "created_at": T0}
        )
        conn.execute(tables["sentinel_meta"].insert(), {"key": "bucket", "value": "60"})
        conn.execute(tables["traces"].insert(), rows)
        conn.execute(
            tables["trace_slices"].insert(),
            [
                {"trace_pk": pk, "dimension": d, "value": v, "bucket": r["bucket"]}
                for pk, r in enumerate(rows, start=1)
                for d, v in json.loads(r["slice"]).items()
            ],
        )
        keep = set(tables["slice_buckets"].c.keys())
        terms = TraceTerms.plain(
            [r["p"] for r in rows], [math.nan if r["label"] is None else r["label"] for r in rows]
        )
        sums = bucket_rows(
            1, [r["bucket"] for r in rows], [json.loads(r["slice"]) for r in rows], terms
        )
        conn.execute(
            tables["slice_buckets"].insert(),
            [{k: v for k, v in s.items() if k in keep} for s in sums],
        )
    db.dispose()

    db = open_database(db_url)  # what `sentinel serve` does first
    try:
        assert current_revision(db) == head_revision()
        assert check_aggregates(db).ok
        storage = Storage(db, 60)
        query = EstimateQuery(by="domain", since=T0, until=T0 + HOUR)

        def numbers() -> dict[str, Any]:
            active = storage.active_scorer(MODEL)
            assert active is not None
            result = estimate(db, active, 60, query, now=T0 + HOUR)
            return {r.value: r for r in result.records}

        # before any service ran: no finisher known, every slice unseen: the worst case
        for r in numbers().values():
            assert r.interval.unseen_fraction == 1.0 and math.isnan(r.interval.shift)
            assert (r.interval.lower, r.interval.upper) == (0.0, 1.0)
        # the service starts: its estimator's finisher is known, the shift not yet
        registry = ModelRegistry(storage, [ModelSpec(MODEL, artifacts["a"])])
        widest = RELATION.half_width(math.nan, 0.95)
        for r in numbers().values():
            assert math.isnan(r.interval.shift) and r.shift_word == ""
            assert r.interval.transfer_half_width == pytest.approx(widest)
        assert registry.pending() == len(rows)
        assert registry.rescore_pending(limit=100) == len(rows)
        assert registry.pending() == 0
        assert check_aggregates(db).ok
        lib = est.estimate(read_traces(records), by="domain")
        got = numbers()
        for r in lib:
            rec = got[str(r.key[0])].to_dict()
            _same(rec, r, str(r.key[0]))
            lc = rec["label_corrected"]
            assert (lc["estimate"], lc["lower"], lc["upper"]) == pytest.approx(
                (r.ppi_estimate, r.ppi_lower, r.ppi_upper), abs=TOL
            )
    finally:
        db.dispose()


# ---------------------------------------------------------------- pure parts
def _iv(p: list[float], unseen: bool, shift_w: float, n_ref: int = 500) -> SliceInterval:
    n = len(p)
    w = np.full((n, 11), shift_w) + np.random.default_rng(n).normal(0, 1, (n, 11))
    stats = SliceStats.from_arrays(p, unseen=np.full(n, unseen), w=w)
    return finish(stats, 0.95, transfer=RELATION, n_reference=n_ref)


def test_several_models_combine_by_their_counts() -> None:
    a = _iv([0.8] * 60 + [0.6] * 40, unseen=False, shift_w=0.0)
    b = _iv([0.3] * 30, unseen=True, shift_w=0.8)
    c = combine([a, b], 0.95)
    wa, wb = 100 / 130, 30 / 130
    assert c.n == 130 and c.estimate == pytest.approx(wa * a.estimate + wb * b.estimate)
    assert c.sampling_sd == pytest.approx(math.hypot(wa * a.sampling_sd, wb * b.sampling_sd))
    assert c.transfer_half_width == pytest.approx(wb * b.transfer_half_width)
    half = math.hypot(1.959963984540054 * c.sampling_sd, c.transfer_half_width) + 0.5 / 130
    assert (c.lower, c.upper) == pytest.approx((c.estimate - half, c.estimate + half))
    assert c.shift == b.shift and c.unseen_fraction == pytest.approx(wb)
    assert combine([a], 0.95) is a


def test_a_shift_rule_alerts_on_slices_unlike_the_training_data() -> None:
    rule = AlertRule.from_mapping(
        {
            "name": "new",
            "kind": "shift",
            "dimension": "d",
            "threshold": 0.75,
            "window": "1h",
            "min_count": 20,
        }
    )
    far, near = _iv([0.5] * 200, True, 1.5), _iv([0.5] * 200, True, 0.0)
    assert far.shift > 0.75 > near.shift
    verdict = judge(rule, far, None)
    assert verdict.firing is True
    assert verdict.evidence["shift_word"] == "unlike the training data: label some"
    assert judge(rule, near, None).firing is False
    assert judge(rule, _iv([0.5] * 200, False, 1.5), None).firing is False  # seen: calibrated
    assert judge(rule, _iv([0.5] * 10, True, 1.5), None).firing is None  # too few
    assert judge(rule, _iv([0.5] * 200, True, 1.5, n_ref=0), None).firing is None  # unknown
    with pytest.raises(Exception, match="shift score in"):
        AlertRule.from_mapping({"name": "x", "kind": "shift", "dimension": "d", "window": "1h"})


def test_a_below_rule_judges_the_label_corrected_numbers_when_there_are_labels() -> None:
    rule = AlertRule.from_mapping(
        {
            "name": "low",
            "kind": "below",
            "dimension": "d",
            "threshold": 0.6,
            "window": "1h",
            "min_count": 5,
            "bound": "upper",
        }
    )
    n = 400
    y = np.full(n, np.nan)
    y[:80] = np.r_[np.ones(20), np.zeros(60)]  # the labels say about 0.25
    stats = SliceStats.from_arrays(np.full(n, 0.7), y, unseen=np.ones(n, bool), w=np.zeros((n, 11)))
    unlabelled = finish(SliceStats.from_arrays(np.full(n, 0.7), unseen=np.ones(n, bool),
                                               w=np.zeros((n, 11))), transfer=RELATION)  # fmt: skip
    assert judge(rule, unlabelled, None).firing is False  # wide: no verdict of "below"
    verdict = judge(rule, finish(stats, transfer=RELATION), None)
    assert verdict.firing is True and verdict.evidence["basis"] == "label-corrected"


def test_the_metrics_gauges_carry_the_estimator_s_numbers() -> None:
    metrics = Metrics()
    iv = _iv([0.4] * 50, True, 1.0)
    metrics.set_slices([SliceGauge("m", "domain", "x", iv)])
    text = metrics.registry.get_sample_value(
        "sentinel_slice_shift", {"model": "m", "dimension": "domain", "value": "x"}
    )
    assert text == pytest.approx(iv.shift)
    upper = metrics.registry.get_sample_value(
        "sentinel_slice_estimate_upper", {"model": "m", "dimension": "domain", "value": "x"}
    )
    assert upper == pytest.approx(iv.upper)
