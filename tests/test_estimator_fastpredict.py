"""`fastpredict`: the estimator's fast path gives scikit-learn's own predictions (to 1e-9)
for every family, calibration and blend, and hands everything it does not cover back.

Estimators are fitted for real on the committed SmolLM2 corpus (one grid setting each,
to keep the fits short); scikit-learn's predictions are those of the same estimator with
the hook switched off.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import entropy_sentinel.estimator.model as model_module
from entropy_sentinel import CorrectnessEstimator, TraceBatch
from entropy_sentinel.estimator.fastpredict import compile_estimator, fast_predict_proba
from entropy_sentinel.estimator.grids import make_model
from tests.conftest import load_corpus_batch

ONE_SETTING: dict[str, dict[str, list[Any]]] = {
    "rf": {"max_depth": [10], "min_samples_split": [2]},
    "lr": {"C": [2.0]},
    "hgb": {"learning_rate": [0.1], "max_leaf_nodes": [8]},
    "mlp": {"hidden_layer_sizes": [(15, 8)]},
}
CONFIGS = [
    pytest.param(family, calibration, balance, blend, id=f"{family}-{calibration}-{balance}-{b}")
    for family in ("rf", "lr", "hgb", "mlp")
    for calibration, balance, blend, b in (
        ("isotonic", True, ("atc:max_entropy", "ac:nll_avg"), "blend"),
        ("sigmoid", False, (), "plain"),
        (None, True, ("ac:max_entropy",), "ac"),
    )
]


@pytest.fixture(scope="module")
def corpus() -> TraceBatch:
    batch = load_corpus_batch()
    assert isinstance(batch, TraceBatch)
    return batch


def _sklearn(est: CorrectnessEstimator, X: np.ndarray) -> np.ndarray:
    """scikit-learn's own predict_proba: the estimator with the fast path switched off."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(model_module, "fast_predict_parts", lambda _e, _x: None)
        return np.asarray(est.predict_proba(X))


@pytest.mark.parametrize(("family", "calibration", "balance", "blend"), CONFIGS)
def test_the_fast_path_gives_scikit_learns_predictions(
    corpus: TraceBatch,
    family: str,
    calibration: str | None,
    balance: bool,
    blend: tuple[str, ...],
) -> None:
    est = CorrectnessEstimator(
        family=family,
        calibration=calibration,
        balance=balance,
        blend=blend,
        cv=2,
        param_grid=ONE_SETTING[family],
        random_state=0,
    ).fit_traces(corpus)
    assert compile_estimator(est) is not None, "every family of the grids is covered"
    X = est.featurize(corpus)
    expected = _sklearn(est, X)
    for rows in (slice(0, 1), slice(0, 20), slice(None)):
        fast = fast_predict_proba(est, X[rows])
        assert fast is not None
        np.testing.assert_allclose(fast, expected[rows], rtol=0, atol=1e-9)
        np.testing.assert_allclose(est.predict_proba(X[rows]), expected[rows], rtol=0, atol=1e-9)
    with pytest.MonkeyPatch.context() as mp:  # the classifier's own P too
        mp.setattr(model_module, "fast_predict_parts", lambda _e, _x: None)
        p_sklearn = est.predict_parts(X)[0]
    np.testing.assert_allclose(est.predict_parts(X)[0], p_sklearn, rtol=0, atol=1e-9)
    # inputs beyond the training range (clipped by the scalers and calibration maps)
    wide = X[:50] * np.linspace(-3.0, 3.0, 50)[:, None]
    fast = fast_predict_proba(est, wide)
    assert fast is not None
    np.testing.assert_allclose(fast, _sklearn(est, wide), rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def small_lr(corpus: TraceBatch) -> tuple[CorrectnessEstimator, np.ndarray]:
    est = CorrectnessEstimator(family="lr", cv=2, random_state=0).fit_traces(corpus)
    return est, est.featurize(corpus)


def test_what_the_fast_path_does_not_take_goes_to_scikit_learn(
    small_lr: tuple[CorrectnessEstimator, np.ndarray],
) -> None:
    est, X = small_lr
    bad = X[:3].copy()
    bad[1, 2] = np.nan
    assert fast_predict_proba(est, bad) is None
    with pytest.raises(ValueError, match="NaN"):
        est.predict_proba(bad)
    assert fast_predict_proba(est, X[:3, :5]) is None
    with pytest.raises(ValueError, match="features"):
        est.predict_proba(X[:3, :5])
    assert fast_predict_proba(est, X[:3].astype(np.float32)) is None
    assert fast_predict_proba(est, X[:3].tolist()) is None
    np.testing.assert_allclose(est.predict_proba(X[:3].tolist()), _sklearn(est, X[:3]))
    assert fast_predict_proba(CorrectnessEstimator(), X) is None  # not fitted


def test_a_refit_is_seen(small_lr: tuple[CorrectnessEstimator, np.ndarray]) -> None:
    est, X = small_lr
    before = fast_predict_proba(est, X[:5])
    est.model_ = make_model("lr", {"C": 0.01}, balance=True, seed=1).fit(
        X[:, :11], (X[:, 0] > np.median(X[:, 0])).astype(int)
    )
    after = fast_predict_proba(est, X[:5])
    assert before is not None and after is not None
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _sklearn(est, X[:5]), rtol=0, atol=1e-9)
