"""Baseline slice-accuracy estimators: AC, ATC, DoC, and `ScoreBaseline` around them."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import entropy_sentinel as es
from entropy_sentinel.estimator import ScoreBaseline
from tests.estimator_data import entropy_only, halves


@settings(max_examples=200, deadline=None)
@given(
    scores=arrays(np.float64, st.integers(1, 300), elements=st.integers(-5, 5).map(float)),
    data=st.data(),
)
def test_atc_reproduces_the_source_accuracy_exactly(
    scores: np.ndarray, data: st.DataObject
) -> None:
    """Integer scores: ties everywhere, including at the threshold."""
    y = data.draw(arrays(np.int64, scores.shape, elements=st.integers(0, 1)))
    atc = es.ATC().fit(scores, y)
    assert atc.estimate(scores) == y.sum() / y.size  # exactly, not approximately
    assert 0.0 <= atc.tie_weight_ <= 1.0
    assert atc.estimate(scores + 100.0) == 1.0 and atc.estimate(scores - 100.0) == 0.0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 400))
def test_atc_exact_on_continuous_scores(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=n)
    y = (rng.uniform(size=n) < 0.6).astype(int)
    assert es.ATC().fit(scores, y).estimate(scores) == y.mean()


def test_atc_estimate_follows_the_score_shift() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < conf).astype(int)
    atc = es.ATC().fit(conf, y)
    harder = rng.uniform(size=2000) ** 2  # lower confidences
    assert atc.estimate(harder) < atc.estimate(conf) - 0.1
    iv = atc.interval(harder[:100])
    assert iv.lower < iv.estimate < iv.upper
    assert atc.model_sd_ == pytest.approx(np.sqrt(y.mean() * (1 - y.mean()) / 2000))


def test_average_confidence_and_doc() -> None:
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.3, 1.0, size=1000)
    y = (rng.uniform(size=1000) < conf - 0.1).astype(int)  # over-confident by 0.1
    ac = es.AverageConfidence().fit(conf, y)
    doc = es.DoC().fit(conf, y)
    target = conf[:300]
    assert ac.estimate(target) == pytest.approx(target.mean())
    assert doc.estimate(target) == pytest.approx(target.mean() + y.mean() - conf.mean())
    assert doc.estimate(conf) == pytest.approx(y.mean())  # DoC is exact on its source
    assert ac.model_sd_ > doc.model_sd_  # AC carries its source bias
    for est in (ac, doc):
        iv = est.interval(target, level=0.9)
        assert iv.level == 0.9 and iv.lower <= iv.estimate <= iv.upper


def test_raw_scores_need_a_calibration_for_ac_and_doc() -> None:
    rng = np.random.default_rng(2)
    neg_entropy = -rng.gamma(1.0, 0.5, size=500)
    y = (rng.uniform(size=500) < np.exp(neg_entropy)).astype(int)
    with pytest.raises(
        es.ConfigError, match=r"needs confidences in \[0, 1\].*calibration='sigmoid'"
    ):
        es.AverageConfidence().fit(neg_entropy, y)
    for method in ("sigmoid", "isotonic"):
        ac = es.AverageConfidence(calibration=method).fit(neg_entropy, y)
        doc = es.DoC(calibration=method).fit(neg_entropy, y)
        # Both maps reproduce the source accuracy, so AC is right on its source and DoC == AC.
        assert ac.estimate(neg_entropy) == pytest.approx(y.mean(), abs=1e-6)
        assert doc.estimate(neg_entropy[:50]) == pytest.approx(ac.estimate(neg_entropy[:50]))


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.5, np.nan], [1, 0], r"scores\[1\] = nan is not finite"),
        ([[0.5, 0.2]], [1], "must be 1-D"),
        ([], [], "is empty"),
        ([0.5, 0.2], [1, 2], "labels must be 0/1"),
        ([0.5, 0.2], [1], r"labels must have shape \(2,\)"),
    ],
)
def test_bad_inputs(scores: Any, labels: list[int], message: str) -> None:
    for est in (es.ATC(), es.AverageConfidence(), es.DoC()):
        with pytest.raises(es.ConfigError, match=message):
            est.fit(scores, labels)


def test_baselines_are_clonable_and_leave_inputs_alone() -> None:
    rng = np.random.default_rng(3)
    conf = rng.uniform(size=200)
    y = (rng.uniform(size=200) < conf).astype(int)
    conf.setflags(write=False)
    y.setflags(write=False)
    for est in (es.ATC(), es.AverageConfidence(calibration="isotonic"), es.DoC()):
        fresh = clone(est)
        fitted = est.fit(conf, y)
        assert not hasattr(fresh, "model_sd_")
        fitted.estimate(conf[:20])
    with pytest.raises(NotFittedError):
        es.ATC().estimate(conf)


def test_on_the_corpus_scores_and_probabilities() -> None:
    """ATC on max entropy and AC/DoC on the classifier's P, training half -> other half."""
    src, tgt = halves()
    name = "max_entropy"
    conf_src = es.confidence_of(name, es.baseline_scores(src, (name,))[name])
    conf_tgt = es.confidence_of(name, es.baseline_scores(tgt, (name,))[name])
    atc = es.ATC().fit(conf_src, src.labels)
    assert atc.estimate(conf_src) == src.labels.mean()
    assert abs(atc.estimate(conf_tgt) - tgt.labels.mean()) < 0.05
    est = es.CorrectnessEstimator(family="lr", calibration=None, random_state=0).fit_traces(src)
    p_src, p_tgt = est.predict_traces(src), est.predict_traces(tgt)
    doc = es.DoC().fit(p_src, src.labels)
    ac = es.AverageConfidence().fit(p_src, src.labels)
    # Balanced weights without calibration push P towards 1/2: AC is far off, DoC corrects it.
    assert ac.estimate(p_tgt) > tgt.labels.mean() + 0.1
    assert abs(doc.estimate(p_tgt) - tgt.labels.mean()) < 0.05


@pytest.mark.parametrize(
    ("method", "score"), [("atc", "max_entropy"), ("ac", "mean_entropy"), ("doc", "lntp")]
)
def test_score_baselines_are_the_score_level_estimates_per_slice(method: str, score: str) -> None:
    """`ScoreBaseline` is the slice-estimator shape around ATC, AC and DoC: its estimate and
    interval per slice are theirs on the slice's scores."""
    src, tgt = halves()
    baseline = ScoreBaseline(method, score).fit_traces(src)
    conf_src = es.confidence_of(score, es.baseline_scores(src, (score,))[score])
    methods: dict[str, Any] = {
        "atc": es.ATC(),
        "ac": es.AverageConfidence(calibration="isotonic"),
        "doc": es.DoC(),
    }
    model = methods[method].fit(conf_src, src.labels)
    conf = es.confidence_of(score, es.baseline_scores(tgt, (score,))[score])
    domains = tgt.slice_values("domain")
    res = baseline.estimate(tgt, by="domain", level=0.9)
    assert len(res) == 13
    for r in res:
        part = conf[domains == r.key[0]]
        iv = model.interval(part, level=0.9)
        assert r.estimate == pytest.approx(model.estimate(part), abs=1e-12)
        if 0.0 < r.estimate < 1.0:  # DoC centres on its unclipped estimate
            assert (r.lower, r.upper) == pytest.approx((iv.lower, iv.upper), abs=1e-12)
        assert r.shift_word == "" and r.transfer_half_width == 0.0
        assert r.true_accuracy == pytest.approx(tgt.labels[domains == r.key[0]].mean())
    values = baseline.values(tgt)
    assert values.shape == (len(tgt),) and ((values >= 0) & (values <= 1)).all()
    if method == "atc":
        assert set(np.unique(values)) <= {0.0, 1.0, model.tie_weight_}


def test_score_baselines_name_their_mistakes() -> None:
    src = halves()[0].subset(range(50))
    with pytest.raises(es.ConfigError, match=r"baseline 'median' is unknown; use one of \['atc'"):
        ScoreBaseline("median").fit_traces(src)
    with pytest.raises(es.ConfigError, match="score 'h_max' is unknown"):
        ScoreBaseline("atc", "h_max").fit_traces(src)
    with pytest.raises(NotFittedError, match="call fit_traces first"):
        ScoreBaseline().values(src)
    unlabelled = dataclasses.replace(src, labels=np.full(len(src), np.nan))
    with pytest.raises(es.ConfigError, match="needs labelled reference traces"):
        ScoreBaseline().fit_traces(unlabelled)
    entropies = entropy_only(src)
    with pytest.raises(es.ConfigError, match="is not finite"):
        ScoreBaseline("atc", "nll_avg").fit_traces(entropies)
