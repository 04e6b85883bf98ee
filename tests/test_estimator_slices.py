"""Per-slice accuracy: records, invariances, the classic interval of a bare classifier on
real data (the committed SmolLM2 corpus), result rendering."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import entropy_sentinel as es
from entropy_sentinel.estimator import label_corrected_accuracy, slice_accuracy
from tests.estimator_data import corpus, halves

COLUMNS = [
    "n", "estimate", "lower", "upper", "level", "shift", "shift_word", "sampling_sd",
    "model_sd", "calibration_sd", "transfer_half_width", "unseen_fraction",
]  # fmt: skip


def _with_length(batch: es.TraceBatch) -> es.TraceBatch:
    """A second slice dimension: the answer's length band (short, medium, long)."""
    band = np.where(batch.lengths < 11, "short", np.where(batch.lengths < 36, "medium", "long"))
    slices = tuple({**s, "length": str(b)} for s, b in zip(batch.slices, band))
    return dataclasses.replace(batch, slices=slices)


@pytest.fixture(scope="module")
def split() -> tuple[es.CorrectnessEstimator, es.TraceBatch]:
    train, test = halves()
    est = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(train)
    return est, _with_length(test)


def test_a_bare_classifier_keeps_the_classic_interval(
    split: tuple[es.CorrectnessEstimator, es.TraceBatch],
) -> None:
    """The mean P per slice, with sampling error and the estimator's model_sd in
    quadrature (plus the continuity correction 1/(2n)); no calibration, no transfer term,
    and no shift word: it knows nothing of the slices."""
    est, test = split
    res = es.estimate_accuracy(test, est, by="domain", level=0.9)
    p = est.predict_traces(test)
    z = float(norm.ppf(0.95))
    estimates = [r.estimate for r in res]
    assert estimates == sorted(estimates)  # ranked worst first
    assert len(res) == 13 and sum(r.n for r in res) == len(test)
    for r in res:
        mask = test.slice_values("domain") == r.key[0]
        sampling = math.sqrt(float(np.sum(p[mask] * (1 - p[mask])))) / r.n
        half = z * math.hypot(sampling, est.model_sd_) + 0.5 / r.n
        assert r.n == int(mask.sum())
        assert r.estimate == pytest.approx(p[mask].mean(), abs=1e-12)
        assert (r.lower, r.upper) == pytest.approx(
            (max(0.0, r.estimate - half), min(1.0, r.estimate + half)), abs=1e-12
        )
        assert r.sampling_sd == pytest.approx(sampling)
        assert r.model_sd == pytest.approx(est.model_sd_)
        assert (r.transfer_half_width, r.unseen_fraction, r.shift_word) == (0.0, 0.0, "")
        assert math.isnan(r.shift)
        assert r.true_accuracy == pytest.approx(test.labels[mask].mean())
        assert r.error == pytest.approx(r.estimate - r.true_accuracy)


def test_several_dimensions_one_slice_and_missing_values(
    split: tuple[es.CorrectnessEstimator, es.TraceBatch],
) -> None:
    est, test = split
    both = es.estimate_accuracy(test, est, by=("length", "domain"))
    assert sum(r.n for r in both) == len(test)
    assert {r.key[0] for r in both} == {"short", "medium", "long"}
    assert len(both) == len({(s["length"], s["domain"]) for s in test.slices})
    everything = es.estimate_accuracy(test, est, by=None)
    assert [r.key for r in everything] == [()] and everything.records[0].label == "all"
    slices = tuple({} if i < 10 else s for i, s in enumerate(test.slices))
    holes = es.estimate_accuracy(dataclasses.replace(test, slices=slices), est, by="length")
    missing = [r for r in holes if r.key == (None,)]
    assert missing and missing[0].n == 10 and missing[0].label == "(missing)"
    with pytest.raises(es.ConfigError, match=r"no trace has slice dimension\(s\) \['topic'\]"):
        es.estimate_accuracy(test, est, by="topic")


def test_unlabelled_and_partly_labelled_slices(
    split: tuple[es.CorrectnessEstimator, es.TraceBatch],
) -> None:
    est, test = split
    labels = test.labels.copy()
    labels[np.arange(len(test)) % 5 != 0] = np.nan  # one in five labelled
    partly = es.estimate_accuracy(dataclasses.replace(test, labels=labels), est, by="length")
    for r in partly:
        assert 0 < r.n_labelled < r.n
        assert math.isnan(r.error) and r.covered is None
        assert r.ppi_lower <= r.ppi_estimate <= r.ppi_upper
    none = es.estimate_accuracy(
        dataclasses.replace(test, labels=np.full(len(test), np.nan)), est, by="length"
    )
    assert not none.has_labels
    assert list(none.to_df().columns) == ["length", *COLUMNS]
    for r in none:
        assert r.n_labelled == 0 and math.isnan(r.true_accuracy) and math.isnan(r.ppi_estimate)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_estimates_do_not_depend_on_trace_order(
    split: tuple[es.CorrectnessEstimator, es.TraceBatch], seed: int
) -> None:
    est, test = split
    perm = np.random.default_rng(seed).permutation(len(test))
    a = es.estimate_accuracy(test, est, by="domain")
    b = es.estimate_accuracy(test.subset(perm), est, by="domain")
    assert [(r.key, r.n, r.n_labelled) for r in a] == [(r.key, r.n, r.n_labelled) for r in b]
    # Equal to rounding: a prediction can move in its last bit with its row's position in
    # the batch (BLAS blocking); the slice sums themselves are taken in sorted order.
    pd.testing.assert_frame_equal(a.to_df(), b.to_df(), check_exact=False, rtol=1e-12)
    for ra, rb in zip(a, b, strict=True):
        stats_a, stats_b = ra.stats.flat().tolist(), rb.stats.flat().tolist()
        assert stats_a == pytest.approx(stats_b, rel=1e-12)


def test_slice_sums_are_exactly_order_invariant_for_given_probabilities() -> None:
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(size=500), 2)  # many ties
    y = (rng.uniform(size=500) < p).astype(float)
    keys = [(str(k),) for k in rng.integers(0, 4, 500)]
    a = slice_accuracy(p, keys, y, by=("k",), model_sd=0.01)
    for seed in range(20):
        perm = np.random.default_rng(seed).permutation(500)
        b = slice_accuracy(p[perm], [keys[i] for i in perm], y[perm], by=("k",), model_sd=0.01)
        assert a.records == b.records  # bit for bit


def test_intervals_cover_random_slices_at_the_nominal_rate() -> None:
    """Fit on a random half of the corpus, estimate 60 random slices (20-400 responses) of
    the other half; 6 halves, 360 slices. The model_sd term carries the fitted estimator's
    own error, so coverage is checked over several fits (one fit's error is one draw);
    without it the largest slices, where sampling error is smallest, are under-covered."""
    batch = corpus()
    X = es.CorrectnessEstimator(family="lr").featurize(batch)
    y = batch.labels
    rng = np.random.default_rng(11)
    covered: dict[int, list[bool]] = {}
    covered_sampling_only: dict[int, list[bool]] = {}
    for half in range(6):
        perm = rng.permutation(len(y))
        train, test = perm[: len(y) // 2], perm[len(y) // 2 :]
        est = es.CorrectnessEstimator(family="lr", random_state=half).fit(X[train], y[train])
        p, labels = est.predict_proba(X[test])[:, 1], y[test]
        for size in (20, 50, 100, 200, 400) * 12:
            idx = rng.choice(len(test), size, replace=False)
            keys = [("s",)] * size
            rec = slice_accuracy(p[idx], keys, labels[idx], model_sd=est.model_sd_).records[0]
            bare = slice_accuracy(p[idx], keys, labels[idx]).records[0]
            covered.setdefault(size, []).append(rec.covered is True)
            covered_sampling_only.setdefault(size, []).append(bare.covered is True)
    rate = float(np.mean([c for v in covered.values() for c in v]))
    assert 0.93 <= rate <= 0.99, rate
    assert np.mean(covered_sampling_only[400]) < np.mean(covered[400])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 60))
def test_label_corrected_estimate_is_the_corrected_mean(seed: int, m: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=200)
    labels = np.full(200, np.nan)
    labelled = rng.choice(200, m, replace=False)
    labels[labelled] = (rng.uniform(size=m) < 0.7).astype(float)
    iv = label_corrected_accuracy(p, labels)
    expected = p.mean() + np.mean(labels[labelled] - p[labelled])
    assert iv.estimate == pytest.approx(min(1.0, max(0.0, expected)), abs=1e-12)
    assert iv.lower <= iv.estimate <= iv.upper
    if m == 1:
        assert (iv.lower, iv.upper) == (0.0, 1.0)  # no variance from one label


def test_label_corrected_estimate_repairs_a_biased_estimator() -> None:
    """Class weights without calibration push P(correct) towards 1/2: on the corpus (accuracy
    0.23) the mean P is about 0.44. 30 labels per slice of 200 correct it, and the PPI
    interval covers at about the nominal rate."""
    train, test = halves()
    est = es.CorrectnessEstimator(family="lr", calibration=None, random_state=0)
    est.fit_traces(train)
    p, y = est.predict_traces(test), test.labels
    rng = np.random.default_rng(6)
    errors, ppi_errors, covered = [], [], []
    for _ in range(300):
        idx = rng.choice(len(test), 200, replace=False)
        labels = np.full(200, np.nan)
        labels[:30] = y[idx[:30]]
        iv = label_corrected_accuracy(p[idx], labels)
        truth = y[idx].mean()
        errors.append(p[idx].mean() - truth)
        ppi_errors.append(iv.estimate - truth)
        covered.append(iv.lower <= truth <= iv.upper)
    assert np.mean(errors) > 0.15  # the label-free estimate is far off
    assert abs(np.mean(ppi_errors)) < 0.01  # the corrected one is not
    assert 0.9 <= np.mean(covered) <= 0.99
    with pytest.raises(es.ConfigError, match="at least one labelled response"):
        label_corrected_accuracy(p[:5], np.full(5, np.nan))


def test_result_table_and_plot(
    split: tuple[es.CorrectnessEstimator, es.TraceBatch], tmp_path: Path
) -> None:
    from matplotlib.figure import Figure

    est, test = split
    res = es.estimate_accuracy(test, est, by="length", level=0.9)
    frame = res.to_df()
    assert list(frame["length"]) == [r.key[0] for r in res]
    assert frame.columns.tolist()[: len(COLUMNS) + 1] == ["length", *COLUMNS]
    assert (frame["level"] == 0.9).all()
    assert frame["covered"].tolist() == [r.covered for r in res]
    assert frame["true_accuracy"].to_numpy() == pytest.approx([r.true_accuracy for r in res])
    out = res.plot(tmp_path / "plots" / "slices.png")
    assert (tmp_path / "plots" / "slices.png").stat().st_size > 10_000
    assert [t.get_text() for t in out.get_yticklabels()][-1].startswith(res.records[0].label)
    ax = Figure().add_subplot()
    assert res.plot(ax) is ax
    assert len(ax.lines) >= 1  # the true accuracies
