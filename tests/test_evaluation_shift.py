"""The shift-robust slice estimators of `entropy_sentinel.estimator.shift`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator import ATC, AverageConfidence, CorrectnessEstimator
from entropy_sentinel.estimator.shift import (
    ClassifierATC,
    DomainHoldoutCalibrated,
    ImportanceWeighted,
    QuantificationAdjusted,
    SliceEnsemble,
)
from entropy_sentinel.evaluation import InputSpec
from tests.evaluation_data import phi35_eval_data

FloatArray = npt.NDArray[np.float64]
ALL = (SliceEnsemble, ClassifierATC, DomainHoldoutCalibrated, ImportanceWeighted)


def _lr(seed: int = 0) -> CorrectnessEstimator:
    return CorrectnessEstimator(family="lr", random_state=seed)


def _prior_shift(n: int, prior: float, seed: int) -> tuple[FloatArray, FloatArray]:
    """X | y fixed (two Gaussians), only the base rate changes: pure prior shift."""
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < prior).astype(np.float64)
    X = rng.normal(size=(n, 2)) + np.outer(y, [1.2, 0.6])
    return X, y


@pytest.mark.parametrize("cls", [*ALL, QuantificationAdjusted])
def test_clone_keeps_parameters(cls: type) -> None:
    est = cls(classifier=_lr(3), random_state=3)
    params = clone(est).get_params(deep=False)
    assert params["random_state"] == 3
    assert params["classifier"].get_params() == _lr(3).get_params()


def test_ensemble_is_the_weighted_mean_of_its_members() -> None:
    X, y = _prior_shift(400, 0.5, 0)
    Xt, _ = _prior_shift(300, 0.2, 1)
    X3 = np.hstack([X, X[:, :1] ** 2])  # a third column the classifier does not see
    Xt3 = np.hstack([Xt, Xt[:, :1] ** 2])
    members = ("classifier", "atc:1:confidence", "ac:2:uncertainty")
    est = SliceEnsemble(
        members=members, weights=(1, 1, 2), classifier_columns=2, classifier=_lr()
    ).fit(X3, y)
    clf = _lr().fit(X, y)
    parts = [
        clf.predict_proba(Xt)[:, 1].mean(),
        ATC().fit(X[:, 1], y).estimate(Xt[:, 1]),
        AverageConfidence(calibration="isotonic").fit(-X3[:, 2], y).estimate(-Xt3[:, 2]),
    ]
    assert est.estimate(Xt3) == pytest.approx(np.dot([0.25, 0.25, 0.5], parts))
    assert est.member_estimates_ == pytest.approx(parts)
    # The per-row values average to the estimate, member by member and as a whole.
    np.testing.assert_allclose(est.member_values(Xt3).mean(axis=0), parts)
    assert est.predict_proba(Xt3)[:, 1].mean() == pytest.approx(est.estimate(Xt3))
    assert np.all((est.predict_proba(Xt3) >= 0) & (est.predict_proba(Xt3) <= 1))


def test_ensemble_per_row_atc_values_weigh_ties_like_atc() -> None:
    X = np.repeat(np.arange(10.0), 20).reshape(-1, 1)  # heavy ties
    y = (np.random.default_rng(0).uniform(size=200) < X[:, 0] / 10).astype(float)
    est = SliceEnsemble(members=("atc:0:confidence",), classifier=_lr()).fit(X, y)
    atc = ATC().fit(X[:, 0], y)
    assert est.estimate(X) == pytest.approx(atc.estimate(X[:, 0])) == pytest.approx(y.mean())
    assert est.estimate(X[:37]) == pytest.approx(atc.estimate(X[:37, 0]))


def test_ensemble_default_is_classifier_plus_atc_on_the_first_column() -> None:
    X, y = _prior_shift(300, 0.5, 0)
    est = SliceEnsemble(classifier=_lr()).fit(X, y)
    atc = ATC().fit(-X[:, 0], y)
    p = _lr().fit(X, y).predict_proba(X[:50])[:, 1]
    assert est.estimate(X[:50]) == pytest.approx(0.5 * p.mean() + 0.5 * atc.estimate(-X[:50, 0]))


def test_classifier_atc_thresholds_out_of_fold_probabilities() -> None:
    X, y = _prior_shift(400, 0.5, 0)
    est = ClassifierATC(classifier=_lr(), random_state=0).fit(X, y)
    # On the out-of-fold probabilities it was fitted on, ATC gives back the source accuracy.
    assert est.atc_.estimate(est.oof_proba_) == pytest.approx(y.mean())
    Xt, _ = _prior_shift(200, 0.8, 5)
    assert est.estimate(Xt) == est.atc_.estimate(est.predict_proba(Xt)[:, 1])


@pytest.mark.parametrize("method", ["pacc", "emq"])
def test_quantification_tracks_a_pure_prior_shift_better_than_the_mean(method: str) -> None:
    X, y = _prior_shift(1200, 0.5, 0)
    est = QuantificationAdjusted(method=method, classifier=_lr(), random_state=0).fit(X, y)
    for prior, seed in ((0.1, 11), (0.9, 12)):
        Xt, yt = _prior_shift(3000, prior, seed)
        mean_p = est.predict_proba(Xt)[:, 1].mean()
        assert abs(est.estimate(Xt) - yt.mean()) < 0.5 * abs(mean_p - yt.mean())


def test_importance_weighting_on_source_like_data_is_the_residual_corrected_mean() -> None:
    X, y = _prior_shift(500, 0.5, 0)
    est = ImportanceWeighted(classifier=_lr(), random_state=0).fit(X, y)
    got = est.estimate(X)
    plain = est.predict_proba(X)[:, 1].mean() + est.residual_.mean()
    assert got == pytest.approx(plain, abs=0.02)  # weights close to 1
    assert 0.9 * X.shape[0] < est.last_ess_ <= X.shape[0]


def test_domain_holdout_falls_back_to_in_domain_calibration_with_one_domain() -> None:
    X, y = _prior_shift(400, 0.5, 0)
    ldo = DomainHoldoutCalibrated(classifier=_lr(), random_state=0).fit(X, y)
    plain = _lr().fit(X, y)
    assert ldo.strategy_ == "in-domain"
    np.testing.assert_allclose(ldo.predict_proba(X), plain.predict_proba(X))


def test_domain_holdout_calibrates_on_the_other_domains() -> None:
    Xa, ya = _prior_shift(300, 0.7, 0)
    Xb, yb = _prior_shift(300, 0.3, 1)
    X, y = np.vstack([Xa, Xb]), np.r_[ya, yb]
    groups = np.array(["a"] * 300 + ["b"] * 300, dtype=object)
    ldo = DomainHoldoutCalibrated(classifier=_lr(), random_state=0).fit(X, y, groups=groups)
    assert ldo.strategy_ == "leave-domain-out" and ldo.skipped_domains_ == []
    p = ldo.predict_proba(X)[:, 1]
    assert np.all((p >= 0) & (p <= 1))
    # A domain whose complement has one class cannot be scored: it is skipped, not guessed.
    yc = np.r_[np.ones(300), yb]
    ldo2 = DomainHoldoutCalibrated(classifier=_lr(), random_state=0).fit(X, yc, groups=groups)
    assert ldo2.skipped_domains_ == ["b"]


def test_a_frozen_shared_classifier_gives_the_same_numbers() -> None:
    X, y = _prior_shift(400, 0.5, 0)
    Xt, _ = _prior_shift(300, 0.3, 7)
    fitted = _lr(0).fit(X, y)
    for cls in (*ALL, QuantificationAdjusted):
        own = cls(classifier=_lr(0), random_state=0).fit(X, y)
        shared = cls(classifier=FrozenEstimator(fitted), random_state=0).fit(X, y)
        assert shared.estimate(Xt) == pytest.approx(own.estimate(Xt)), cls.__name__


def test_bad_parameters_name_the_fix() -> None:
    X, y = _prior_shift(100, 0.5, 0)
    with pytest.raises(ConfigError, match="weights="):
        SliceEnsemble(weights=(1.0,), classifier=_lr()).fit(X, y)
    with pytest.raises(ConfigError, match="member 'atc:5:uncertainty'"):
        SliceEnsemble(members=("atc:5:uncertainty",), classifier=_lr()).fit(X, y)
    with pytest.raises(ConfigError, match="member 'median'"):
        SliceEnsemble(members=("median",), classifier=_lr()).fit(X, y)
    with pytest.raises(ConfigError, match="member 'doc:0:confidence'"):
        SliceEnsemble(members=("doc:0:confidence",), classifier=_lr()).fit(X, y)
    with pytest.raises(ConfigError, match="method 'cc'"):
        QuantificationAdjusted(method="cc", classifier=_lr()).fit(X, y)
    with pytest.raises(ConfigError, match="max_weight"):
        ImportanceWeighted(max_weight=0.5, classifier=_lr()).fit(X, y)


def test_on_real_phi35_length_domains(phi35_path: Path) -> None:
    data = phi35_eval_data(phi35_path, n=400)
    X = data.matrix(InputSpec("profile10"))
    train = np.isin(data.domains, ["len1", "len2"])
    for cls in (*ALL, QuantificationAdjusted):
        est = cls(classifier=_lr(), random_state=0).fit(
            X[train], data.labels[train], groups=data.domains[train]
        )
        for d in ("len3", "len4"):
            value = est.estimate(X[data.domains == d])
            assert 0.0 <= value <= 1.0, cls.__name__
