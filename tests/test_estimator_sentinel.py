"""`SentinelEstimator` on the committed SmolLM2 corpus: calibrated where a slice was seen in
training, transfer error and a plain word where it was not, and estimates that are the
mergeable sums finished per slice."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import entropy_sentinel as es
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.estimator import (
    PRESETS,
    ScoreBaseline,
    SentinelEstimator,
    SliceEstimator,
    choose_preset,
    classifier_of,
    estimate_accuracy,
    preset,
)
from entropy_sentinel.estimator.intervals import finish
from entropy_sentinel.estimator.shiftscore import shift_score, shift_word
from entropy_sentinel.estimator.slices import SEEN_WORD
from tests.estimator_data import (
    RELATION,
    TWO_DOMAINS,
    entropy_only,
    halves,
    sentinel_lr,
    two_domain_sentinel,
)

Z95 = float(norm.ppf(0.975))


def test_seen_domains_are_calibrated_for_themselves() -> None:
    """Every domain in training: each domain's estimate on its held-back half lands within
    its sampling and calibration error of the truth; the pooled calibration misses
    several domains by many times their sampling error (synth_mul_1d: 0.32 vs 0.73)."""
    est, test = sentinel_lr(), halves()[1]
    res = est.estimate(test, by="domain")
    domains = test.slice_values("domain")
    pooled = est.classifier_.predict_traces(test)  # the blend, no slice calibration
    errors, pooled_errors, far = [], [], 0
    assert len(res) == 13
    for r in res:
        assert r.shift_word == SEEN_WORD and r.unseen_fraction == 0.0
        assert math.isnan(r.shift) and r.transfer_half_width == 0.0
        assert r.calibration_sd > 0 and r.covered is True
        assert abs(r.error) <= 2.5 * math.hypot(r.sampling_sd, r.calibration_sd)
        pooled_error = float(pooled[domains == r.key[0]].mean()) - r.true_accuracy
        far += abs(pooled_error) > 3 * r.sampling_sd
        errors.append(abs(r.error))
        pooled_errors.append(abs(pooled_error))
    assert far >= 3
    assert np.mean(errors) < np.mean(pooled_errors) / 3


def test_unseen_domains_carry_the_transfer_term_and_the_word() -> None:
    est, test = two_domain_sentinel(), halves()[1]
    res = est.estimate(test, by="domain")
    assert est.transfer_ is not None
    for r in res:
        if r.key[0] in TWO_DOMAINS:
            assert r.shift_word == SEEN_WORD and r.transfer_half_width == 0.0
            assert r.unseen_fraction == 0.0 and r.calibration_sd > 0
            continue
        assert r.unseen_fraction == 1.0 and r.calibration_sd == 0.0
        assert 0.6 < r.shift < 1.0 and r.shift_word == shift_word(r.shift)
        assert r.transfer_half_width == est.transfer_.half_width(r.shift, 0.95)
    words = {r.shift_word for r in res}
    assert "unlike the training data: label some" in words
    # With a relation that has measured something, the interval is the three parts.
    measured = copy.copy(est)
    measured.transfer_ = RELATION
    for r in measured.estimate(test, by="domain"):
        h = 0.0 if r.key[0] in TWO_DOMAINS else RELATION.half_width(r.shift, 0.95)
        assert r.transfer_half_width == pytest.approx(h)
        half = math.hypot(Z95 * r.sampling_sd, Z95 * r.calibration_sd, h) + 0.5 / r.n
        assert (r.lower, r.upper) == pytest.approx(
            (max(0.0, r.estimate - half), min(1.0, r.estimate + half))
        )
    mixed = measured.estimate(test, by=None).records[0]  # 2 of 13 domains calibrated
    assert mixed.unseen_fraction == pytest.approx(1 - np.isin(test.slice_values("domain"),
                                                              TWO_DOMAINS).mean())  # fmt: skip
    assert mixed.transfer_half_width == pytest.approx(
        mixed.unseen_fraction * RELATION.half_width(mixed.shift, 0.95)
    )


def test_the_shift_score_tells_training_like_traces_from_others() -> None:
    """The held-back parts of the training domains look like the training traces; every
    other domain of the corpus less so."""
    est, test = two_domain_sentinel(), halves()[1]
    assert est.shift_ is not None
    n_reference = est.shift_.n_reference_
    scores = est.score(test)
    domains = test.slice_values("domain")

    def score(mask: np.ndarray) -> float:
        w = scores.w[mask]
        return shift_score(int(mask.sum()), w.sum(axis=0), float((w * w).sum()), n_reference)

    alike = score(np.isin(domains, TWO_DOMAINS))
    others = [score(domains == d) for d in set(domains.tolist()) - set(TWO_DOMAINS)]
    assert alike < 0.55 < 0.6 < min(others)


@pytest.mark.parametrize("by", ["domain", None, ("domain", "benchmark")])
def test_estimates_are_the_summed_contributions_finished_per_slice(
    by: str | tuple[str, ...] | None,
) -> None:
    """What the service and the Spark engine do: sum `TraceScores.contributions` per slice
    and `finish` them. Half of the traces unlabelled, a third of the labels designed."""
    est, test = two_domain_sentinel(), halves()[1]
    est = copy.copy(est)
    est.transfer_ = RELATION
    assert est.shift_ is not None
    rng = np.random.default_rng(0)
    labels = np.where(rng.uniform(size=len(test)) < 0.5, test.labels, np.nan)
    test = dataclasses.replace(test, labels=labels)
    inclusion = np.where(rng.uniform(size=len(test)) < 0.3, rng.uniform(0.1, 1, len(test)), np.nan)
    res = est.estimate(test, by=by, level=0.9, inclusion=inclusion)
    scores = est.score(test)
    rows = scores.contributions(test.labels, inclusion)
    dims = () if by is None else (by,) if isinstance(by, str) else by
    keys = [tuple(s.get(d) for d in dims) for s in test.slices]
    assert sum(r.n for r in res) == len(test)
    for r in res:
        mask = np.array([k == r.key for k in keys])
        stats = SliceStats.from_flat(rows[mask].sum(axis=0))
        iv = finish(stats, 0.9, transfer=RELATION, n_reference=est.shift_.n_reference_)
        assert r.stats.flat() == pytest.approx(stats.flat(), rel=1e-9, abs=1e-9)
        for name in ("estimate", "lower", "upper", "shift", "ppi_estimate", "ppi_lower",
                     "ppi_upper", "transfer_half_width", "calibration_sd"):  # fmt: skip
            assert getattr(r, name) == pytest.approx(getattr(iv, name), rel=1e-9, nan_ok=True)
        assert r.stats.n_design == int((mask & ~np.isnan(labels) & ~np.isnan(inclusion)).sum())
        assert r.n_labelled == int((mask & ~np.isnan(labels)).sum())
    assert estimate_accuracy(test, est, by=by, level=0.9, inclusion=inclusion) == res
    assert estimate_accuracy(es.StepStats(test), est, by=by, level=0.9, inclusion=inclusion) == res


def test_per_trace_outputs() -> None:
    est, test = two_domain_sentinel(), halves()[1]
    scores = est.score(test)
    n = len(test)
    p = est.predict_traces(test)
    assert p.shape == (n,) and p.dtype == np.float64 and ((p >= 0) & (p <= 1)).all()
    assert (p == scores.p).all()
    seen = np.isin(test.slice_values("domain"), TWO_DOMAINS)
    assert (scores.seen == seen).all()
    p_cls, p_blend = est.classifier_.predict_parts(est.classifier_.featurize(test))
    # calibrated classifier P where seen, the blend (with ATC and AC) elsewhere
    np.testing.assert_allclose(p[~seen], p_blend[~seen], rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores.p_classifier[~seen], p_cls[~seen], rtol=0, atol=1e-15)
    assert (scores.cal[~seen] == 0).all() and (scores.cal[seen] > 0).all()
    assert scores.w.shape == (n, 11)
    empty = est.score(test.subset(np.zeros(0, dtype=np.int64)))
    assert empty.p.shape == (0,) and empty.w.shape == (0, 11)
    assert est.predict_traces(test.subset(np.zeros(0, dtype=np.int64))).shape == (0,)


def test_traces_it_cannot_score_are_refused() -> None:
    est, test = two_domain_sentinel(), halves()[1]
    with pytest.raises(es.ArtifactMismatchError, match="carry precomputed entropies"):
        est.score(entropy_only(test.subset(range(5))))


def test_the_card_records_calibration_shift_reference_and_relation() -> None:
    est = two_domain_sentinel()
    card = est.card_["slice_estimator"]
    assert card["class"] == "SentinelEstimator" and card["slice_dimension"] == "domain"
    assert set(card["offsets"]) == set(TWO_DOMAINS)
    train = halves()[0]
    for name, offset in card["offsets"].items():
        part = train.labels[train.slice_values("domain") == name]
        assert offset["n"] == len(part) and offset["accuracy"] == pytest.approx(part.mean())
    assert card["shift_reference_n"] == sum(o["n"] for o in card["offsets"].values())
    assert est.shift_ is not None and est.shift_.n_reference_ == card["shift_reference_n"]
    assert est.transfer_ is not None and card["transfer"] == est.transfer_.to_dict()
    assert est.card_["params"]["family_chosen"] == "lr"


def test_unfitted_and_misconfigured_estimators() -> None:
    test = halves()[1]
    with pytest.raises(NotFittedError, match="call fit_traces"):
        SentinelEstimator().estimate(test)
    with pytest.raises(es.ConfigError, match="slice_dim must name a slice dimension"):
        preset("sentinel", family="lr", slice_dim="").fit_traces(test)


def test_presets_and_their_parameters() -> None:
    for name, spec in PRESETS.items():
        est = preset(name)
        assert isinstance(est, SentinelEstimator) and isinstance(est, SliceEstimator)
        assert est.classifier is not None
        assert est.classifier.get_params() == classifier_of(name).get_params()
        for param, value in spec["classifier"].items():
            assert est.classifier.get_params()[param] == value, (name, param)
        for param, value in spec["estimator"].items():
            assert est.get_params(deep=False)[param] == value, (name, param)
    assert preset("paper").calibrate is False and preset("sentinel").calibrate is True
    assert classifier_of("sentinel").family == "auto"
    # overrides go where they belong
    custom = preset("sentinel", family="lr", slice_dim="topic", min_labels=5, cv=3)
    assert (custom.slice_dim, custom.min_labels) == ("topic", 5)
    assert custom.classifier is not None
    assert (custom.classifier.family, custom.classifier.cv) == ("lr", 3)
    assert clone(custom).get_params()["classifier__family"] == "lr"
    with pytest.raises(es.ConfigError, match="preset 'best' is unknown"):
        preset("best")
    assert isinstance(ScoreBaseline(), SliceEstimator)
    assert isinstance(es.CorrectnessEstimator(), SliceEstimator)


def test_choose_preset_follows_what_the_traces_carry() -> None:
    test = halves()[1].subset(range(20))
    assert choose_preset(test) == "sentinel"  # logprobs: the nll_avg member can be computed
    assert choose_preset(entropy_only(test)) == "sentinel-entropy"
    assert choose_preset(test.subset(np.zeros(0, dtype=np.int64))) == "sentinel-entropy"
