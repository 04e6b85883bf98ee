"""Blended estimators and presets, on the committed SmolLM2 corpus (real graded responses).

The ``sentinel`` preset is the configuration that won the evaluation (``ens_rf_nll``,
docs/results/README.md); these tests check that the product's estimator computes exactly
what the evaluation measured, that its parts behave as documented, and that it survives
an artifact round trip and the monitoring service.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

import entropy_sentinel as es
from entropy_sentinel.estimator import PRESETS, SliceEnsemble, preset
from entropy_sentinel.estimator.blend import blend_values, parse_blend
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.service import ThreadedServer
from entropy_sentinel.traces.corpus import read_corpus
from tests.conftest import REPO, SMOLLM2_FIXTURES

CORPUS = REPO / "data" / "corpus" / "smollm2" / "corpus.parquet"


@pytest.fixture(scope="module")
def halves() -> tuple[es.TraceBatch, es.TraceBatch]:
    """A seeded split of the corpus: a third for training, the rest as 'traffic'."""
    batch = read_corpus(CORPUS)
    rng = np.random.default_rng(0)
    train = np.sort(rng.choice(len(batch), len(batch) // 3, replace=False))
    return batch.subset(train), batch.subset(np.setdiff1d(np.arange(len(batch)), train))


@pytest.fixture(scope="module")
def blended(halves: tuple[es.TraceBatch, es.TraceBatch]) -> es.CorrectnessEstimator:
    # logistic regression keeps the test fast; the blend does not depend on the family
    return preset("sentinel", family="lr", random_state=0).fit_traces(halves[0])


def test_the_sentinel_preset_computes_what_the_evaluation_measured(
    halves: tuple[es.TraceBatch, es.TraceBatch], blended: es.CorrectnessEstimator
) -> None:
    """`ens_rf_nll` of the evaluation is a `SliceEnsemble` over profile10 + nll_avg."""
    train, test = halves
    X_train, X_test = blended.featurize(train), blended.featurize(test)
    assert blended.input_names[-2:] == ("max_entropy", "nll_avg") and X_test.shape[1] == 12
    columns = [*range(10), 11]  # profile10, then nll_avg: the evaluation's input
    ensemble = SliceEnsemble(
        members=("classifier", "atc:0:uncertainty", "ac:10:uncertainty"),
        classifier_columns=10,
        classifier=es.CorrectnessEstimator(family="lr", features="profile10", random_state=0),
        random_state=0,
    ).fit(X_train[:, columns], train.labels)
    p = blended.predict_proba(X_test)[:, 1]
    np.testing.assert_allclose(p, ensemble.predict_proba(X_test[:, columns])[:, 1], atol=1e-12)
    assert p.mean() == pytest.approx(ensemble.estimate(X_test[:, columns]), abs=1e-12)


def test_values_are_the_mean_of_the_calibrated_p_and_the_members(
    halves: tuple[es.TraceBatch, es.TraceBatch], blended: es.CorrectnessEstimator
) -> None:
    train, test = halves
    X = blended.featurize(test)
    members = parse_blend(blended.blend)
    values = blend_values(members, blended.blend_models_, X[:, 10:])
    assert set(np.unique(values[:, 0])) <= {0.0, 1.0} or blended.blend_models_[0].n_ties_ > 1
    assert blended.calibrator_ is not None
    calibrated = blended.calibrator_.transform(blended.model_.predict_proba(X[:, :10])[:, 1])
    p = blended.predict_proba(X)[:, 1]
    np.testing.assert_allclose(p, (calibrated + values.sum(axis=1)) / 3, atol=1e-12)
    assert ((p >= 0) & (p <= 1)).all()
    # On its training rows ATC reproduces the training accuracy exactly, and the isotonic
    # map of average confidence is mean-preserving.
    Xt = blended.featurize(train)
    own = blend_values(members, blended.blend_models_, Xt[:, 10:]).mean(axis=0)
    np.testing.assert_allclose(own, train.labels.mean(), atol=1e-12)
    assert blended.card_["params"]["blend"] == ["atc:max_entropy", "ac:nll_avg"]


def test_artifact_round_trip_keeps_the_blend(
    halves: tuple[es.TraceBatch, es.TraceBatch], blended: es.CorrectnessEstimator, tmp_path: Path
) -> None:
    loaded = es.CorrectnessEstimator.load(blended.save(tmp_path / "blend.skops"))
    assert loaded.blend == blended.blend
    np.testing.assert_array_equal(
        loaded.predict_traces(halves[1]), blended.predict_traces(halves[1])
    )


def test_blends_need_what_they_name() -> None:
    rng = np.random.default_rng(1)
    records = [
        {"id": f"r{i}", "token_entropy": rng.gamma(1.0, 0.3, 20).tolist(), "correct": i % 3 == 0}
        for i in range(60)
    ]
    entropies_only = es.read_traces(records)
    with pytest.raises(es.ConfigError, match=r"need the scores \['nll_avg'\].*sentinel-entropy"):
        preset("sentinel", family="lr").fit_traces(entropies_only)
    fitted = preset("sentinel-entropy", family="lr", random_state=0).fit_traces(entropies_only)
    assert fitted.featurize(entropies_only).shape == (60, 11)
    with pytest.raises(es.ConfigError, match="blend member 'atc:h_max'"):
        es.CorrectnessEstimator(blend=("atc:h_max",)).fit(rng.normal(size=(20, 3)), [0, 1] * 10)
    with pytest.raises(es.ConfigError, match="not one string"):
        es.CorrectnessEstimator(blend="atc:max_entropy").fit(  # type: ignore[arg-type]
            rng.normal(size=(20, 3)), [0, 1] * 10
        )
    with pytest.raises(es.ConfigError, match="take the last 2"):
        es.CorrectnessEstimator(blend=("atc:max_entropy", "ac:nll_avg")).fit(
            rng.normal(size=(20, 2)), [0, 1] * 10
        )
    with pytest.raises(es.ConfigError, match="preset 'best' is unknown"):
        preset("best")
    assert PRESETS["paper"]["blend"] == () and PRESETS["paper"]["features"] == "profile10"


def test_the_service_scores_with_a_blended_estimator(
    blended: es.CorrectnessEstimator, tmp_path: Path
) -> None:
    """Ingested over HTTP, the service's estimate equals the library's on the same traces."""
    model = blended.save(tmp_path / "blend.skops")
    lines = (SMOLLM2_FIXTURES / "traces.jsonl").read_text().splitlines()
    batch = es.read_traces(SMOLLM2_FIXTURES / "traces.jsonl", errors="collect")
    settings = Settings(db_url=f"sqlite:///{tmp_path / 'sentinel.db'}", model_path=model)
    with ThreadedServer(create_app(settings)) as srv, httpx.Client(base_url=srv.url) as client:
        body = "\n".join(lines).encode()
        r = client.post(
            "/v1/traces", content=body, headers={"content-type": "application/x-ndjson"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == len(batch)
        records = client.get("/v1/estimates", params={"by": "*", "since": "36500d"}).json()
    (record,) = records["records"]
    assert record["n"] == len(batch)
    assert record["estimate"] == pytest.approx(blended.predict_traces(batch).mean(), abs=1e-9)


def test_artifacts_written_before_blends_still_load(
    halves: tuple[es.TraceBatch, es.TraceBatch], tmp_path: Path
) -> None:
    est = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(halves[0])
    want = est.predict_traces(halves[1])
    del est.blend, est.blend_models_  # what an artifact of the first version holds
    loaded = es.CorrectnessEstimator.load(est.save(tmp_path / "old.skops"))
    assert loaded.blend == () and loaded.get_params()["blend"] == ()
    np.testing.assert_array_equal(loaded.predict_traces(halves[1]), want)
