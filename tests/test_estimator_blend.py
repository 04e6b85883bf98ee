"""Blended classifiers (the ``sentinel`` presets' per-response model), on the committed
SmolLM2 corpus: the arithmetic of the blend, the inputs it needs by name, and the service
scoring with it."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import entropy_sentinel as es
from entropy_sentinel.estimator import (
    classifier_of,
    feature_names,
    featurize,
    preset,
    save_estimator,
)
from entropy_sentinel.estimator.blend import blend_values, parse_blend
from entropy_sentinel.service.app import create_app
from entropy_sentinel.service.settings import Settings
from entropy_sentinel.testing.service import ThreadedServer
from tests.conftest import SMOLLM2_FIXTURES
from tests.estimator_data import entropy_only, halves, sentinel_lr


@pytest.fixture(scope="module")
def small() -> es.TraceBatch:
    """300 training traces of every domain: enough for a quick fit."""
    train = halves()[0]
    return train.subset(np.random.default_rng(0).choice(len(train), 300, replace=False))


def test_values_are_the_mean_of_the_calibrated_p_and_the_members() -> None:
    clf = sentinel_lr().classifier_
    train, test = halves()
    X = clf.featurize(test)
    assert clf.input_names == (*feature_names("profile"), "max_entropy", "nll_avg")
    assert X.shape == (len(test), 13)
    members = parse_blend(clf.blend)
    values = blend_values(members, clf.blend_models_, X[:, 11:])
    atc = clf.blend_models_[0]
    assert set(np.unique(values[:, 0])) <= {0.0, 1.0, atc.tie_weight_}
    assert clf.calibrator_ is not None
    calibrated = clf.calibrator_.transform(clf.model_.predict_proba(X[:, :11])[:, 1])
    p = clf.predict_proba(X)[:, 1]
    np.testing.assert_allclose(p, (calibrated + values.sum(axis=1)) / 3, atol=1e-12)
    p_alone, p_blend = clf.predict_parts(X)
    np.testing.assert_array_equal(p_alone, calibrated)
    np.testing.assert_array_equal(p_blend, p)
    assert ((p >= 0) & (p <= 1)).all()
    # On its training rows ATC reproduces the training accuracy exactly, and the isotonic
    # map of average confidence is mean-preserving.
    Xt = clf.featurize(train)
    own = blend_values(members, clf.blend_models_, Xt[:, 11:]).mean(axis=0)
    np.testing.assert_allclose(own, train.labels.mean(), atol=1e-12)
    assert clf.card_["params"]["blend"] == ["atc:max_entropy", "ac:nll_avg"]


def test_fit_with_a_blend_needs_named_inputs(small: es.TraceBatch) -> None:
    """Issue 13 point 3: the blend reads its scores from columns named for them, so a
    matrix whose columns mean something else is a clear error, not a silent fit."""
    template = classifier_of("sentinel", family="lr", random_state=0)
    X = template.featurize(small)
    unnamed = (
        r"X has no column names, but the blend \['atc:max_entropy', 'ac:nll_avg'\] reads the "
        r"scores \['max_entropy', 'nll_avg'\].*featurize\(traces, frame=True\)"
    )
    with pytest.raises(es.ConfigError, match=unnamed):
        clone(template).fit(X, small.labels)
    # the example: the paper's 10-D profile, whose last columns are h_skew, h_kurt
    profile10 = pd.DataFrame(
        featurize(small, "profile10"), columns=list(feature_names("profile10"))
    )
    misnamed = (
        r"X has columns \['h_max', .*'h_kurt'\], but this estimator's inputs are "
        r"\['h_max', .*'max_entropy', 'nll_avg'\]"
    )
    with pytest.raises(es.ConfigError, match=misnamed):
        clone(template).fit(profile10, small.labels)
    reordered = template.featurize(small, frame=True).iloc[:, ::-1]
    with pytest.raises(es.ConfigError, match="X has columns"):
        clone(template).fit(reordered, small.labels)
    # the right frame: the same model as fit_traces builds
    frame = template.featurize(small, frame=True)
    assert list(frame.columns) == list(template.input_names)
    named = clone(template).fit(frame, small.labels)
    traced = clone(template).fit_traces(small)
    test = halves()[1].subset(range(100))
    np.testing.assert_array_equal(
        named.predict_proba(traced.featurize(test)), traced.predict_proba(traced.featurize(test))
    )
    assert named.card_["features"]["names"] == list(template.input_names)
    # predicting on a frame checks its names too
    np.testing.assert_array_equal(
        named.predict_proba(traced.featurize(test, frame=True)),
        named.predict_proba(traced.featurize(test)),
    )
    with pytest.raises(es.ConfigError, match="was fitted on"):
        named.predict_proba(traced.featurize(test, frame=True).iloc[:, ::-1])
    # without a blend, a bare matrix is fine (scikit-learn's contract)
    plain = es.CorrectnessEstimator(family="lr", features="profile10", random_state=0)
    plain.fit(featurize(small, "profile10"), small.labels)


def test_blend_members_need_their_scores_and_valid_names(small: es.TraceBatch) -> None:
    entropies = entropy_only(small)
    with pytest.raises(es.ConfigError, match=r"need the scores \['nll_avg'\].*sentinel-entropy"):
        preset("sentinel", family="lr").fit_traces(entropies)
    fitted = preset("sentinel-entropy", family="lr", random_state=0).fit_traces(entropies)
    assert fitted.classifier_.featurize(entropies).shape == (300, 12)
    rng = np.random.default_rng(1)
    with pytest.raises(es.ConfigError, match="blend member 'atc:h_max'"):
        es.CorrectnessEstimator(blend=("atc:h_max",)).fit(rng.normal(size=(20, 3)), [0, 1] * 10)
    with pytest.raises(es.ConfigError, match="not one string"):
        es.CorrectnessEstimator(blend="atc:max_entropy").fit(  # type: ignore[arg-type]
            rng.normal(size=(20, 3)), [0, 1] * 10
        )


def test_the_service_scores_with_a_blended_estimator(tmp_path: Path) -> None:
    """Ingested over HTTP, the service's estimate equals the library's on the same traces
    (recorded SmolLM2 answers of domains the estimator was not trained on)."""
    estimator = sentinel_lr()
    model = save_estimator(estimator, tmp_path / "blend.skops")
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
    assert record["estimate"] == pytest.approx(estimator.predict_traces(batch).mean(), abs=1e-9)
