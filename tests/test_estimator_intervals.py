"""`finish`: a slice's estimates and intervals from its mergeable sums, with and without labels."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from entropy_sentinel.aggregate import SHIFT_DIM, SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.design import draw, inclusion_probabilities
from entropy_sentinel.estimator.intervals import finish, label_part
from tests.estimator_data import RELATION

FloatArray = npt.NDArray[np.float64]
Z95 = float(norm.ppf(0.975))


def _shift_by_hand(w: FloatArray, n_reference: int) -> float:
    n, d = w.shape
    s = w.sum(axis=0)
    q = float((w * w).sum())
    mean2 = float(s @ s) / n**2
    spread = (q - n * mean2) / (n - 1)
    delta2 = mean2 - spread / n - d / n_reference
    return float(norm.cdf(math.sqrt(max(delta2, 0.0)) / 2))


def test_label_free_interval_by_hand() -> None:
    rng = np.random.default_rng(0)
    n = 80
    p = rng.uniform(0.1, 0.9, n)
    unseen = np.arange(n) < 30
    cal = np.where(unseen, 0.0, p * (1 - p) * 0.2)
    w = rng.normal(0.4, 1.0, size=(n, SHIFT_DIM))  # moved: a real shift
    stats = SliceStats.from_arrays(p, unseen=unseen, cal=cal, w=w)
    iv = finish(stats, 0.95, transfer=RELATION, n_reference=1000)
    shift = _shift_by_hand(w[unseen], 1000)
    assert iv.shift == pytest.approx(shift, rel=1e-12)
    assert 0.6 < shift <= 0.8  # the relation's middle bin: h = 0.12 at 95%
    u = 30 / n
    sampling = math.sqrt(float(np.sum(p * (1 - p)))) / n
    calibration = float(cal.sum()) / n
    half = math.sqrt((Z95 * sampling) ** 2 + (Z95 * calibration) ** 2 + (u * 0.12) ** 2)
    half += 1 / (2 * n)
    assert iv.n == n and iv.level == 0.95
    assert iv.estimate == pytest.approx(p.mean(), rel=1e-12)
    assert (iv.sampling_sd, iv.calibration_sd) == pytest.approx((sampling, calibration))
    assert iv.unseen_fraction == u
    assert iv.transfer_half_width == pytest.approx(u * 0.12)
    assert (iv.lower, iv.upper) == pytest.approx((p.mean() - half, p.mean() + half), rel=1e-12)
    assert iv.model_sd == pytest.approx(math.hypot(calibration, u * 0.12 / Z95))
    assert iv.labels is None and math.isnan(iv.ppi_estimate)
    # no relation: no transfer term (and the shift is still reported)
    bare = finish(stats, 0.95, n_reference=1000)
    assert bare.transfer_half_width == 0.0 and bare.shift == iv.shift
    # no shift reference: the shift is unknown and the relation's widest bin applies
    unknown = finish(stats, 0.95, transfer=RELATION, n_reference=0)
    assert math.isnan(unknown.shift) and unknown.transfer_half_width == pytest.approx(u * 0.3)


def test_a_constant_model_sd_is_the_classic_interval() -> None:
    p = np.random.default_rng(4).uniform(0.3, 0.7, 40)
    iv = finish(SliceStats.from_arrays(p), 0.9, model_sd=0.05)
    z = float(norm.ppf(0.95))
    half = z * math.hypot(math.sqrt(float(np.sum(p * (1 - p)))) / 40, 0.05) + 1 / 80
    assert (iv.lower, iv.upper) == pytest.approx((p.mean() - half, p.mean() + half))
    assert iv.calibration_sd == pytest.approx(0.05)


def test_empty_slices_and_bad_levels() -> None:
    iv = finish(SliceStats())
    assert iv.n == 0 and math.isnan(iv.estimate) and math.isnan(iv.lower) and iv.labels is None
    for level in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match=f"level={level!r} must be in"):
            finish(SliceStats.from_arrays([0.5]), level)


@pytest.mark.parametrize("design", [False, True])
def test_a_fully_labelled_slice_gets_its_true_accuracy_with_zero_width(design: bool) -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(size=50)
    y = (rng.uniform(size=50) < 0.3).astype(float)  # P says nothing right
    pi = np.ones(50) if design else None
    iv = finish(SliceStats.from_arrays(p, y, pi=pi), transfer=RELATION, n_reference=100)
    assert iv.labels is not None and iv.labels.n_labels == 50
    assert iv.ppi_estimate == pytest.approx(y.mean(), abs=1e-12)
    assert iv.ppi_lower == iv.ppi_upper == iv.ppi_estimate
    assert iv.labels.labelled_accuracy == pytest.approx(y.mean())


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 150), data=st.data())
def test_plain_labels_are_a_design_with_equal_inclusion_probabilities(
    seed: int, n: int, data: st.DataObject
) -> None:
    m = data.draw(st.integers(1, n))
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    y = np.full(n, np.nan)
    chosen = rng.choice(n, m, replace=False)
    y[chosen] = (rng.uniform(size=m) < p[chosen]).astype(float)
    plain = SliceStats.from_arrays(p, y)
    designed = SliceStats.from_arrays(p, y, pi=np.where(np.isnan(y), np.nan, m / n))
    a, b = label_part(plain), label_part(designed)
    assert a is not None and b is not None
    assert (a.n_labels, a.n_plain, b.n_labels, b.n_plain) == (m, m, m, 0)
    for name in ("labelled_accuracy", "lam", "estimate", "variance"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-12), name
    fa, fb = finish(plain), finish(designed)
    assert (fa.ppi_estimate, fa.ppi_lower, fa.ppi_upper) == pytest.approx(
        (fb.ppi_estimate, fb.ppi_lower, fb.ppi_upper), rel=1e-9, abs=1e-12
    )


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 120),
    labelled=st.floats(0.0, 1.0),
    designed=st.floats(0.0, 1.0),
    unseen=st.floats(0.0, 1.0),
    level=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99]),
)
def test_every_interval_lies_in_0_1_and_lambda_in_0_1(
    seed: int, n: int, labelled: float, designed: float, unseen: float, level: float
) -> None:
    rng = np.random.default_rng(seed)
    p = rng.choice([0.0, 1.0, *rng.uniform(size=3)], size=n)  # extremes too
    has = rng.uniform(size=n) < labelled
    y = np.where(has, (rng.uniform(size=n) < 0.5).astype(float), np.nan)
    pi = np.where(has & (rng.uniform(size=n) < designed), rng.uniform(0.01, 1.0, n), np.nan)
    un = rng.uniform(size=n) < unseen
    stats = SliceStats.from_arrays(
        p,
        y,
        pi=pi,
        unseen=un,
        cal=np.where(un, 0.0, p * (1 - p) * 0.3),
        w=rng.normal(size=(n, SHIFT_DIM)) * 2,
    )
    iv = finish(stats, level, transfer=RELATION, n_reference=200)
    assert 0.0 <= iv.lower <= iv.estimate <= iv.upper <= 1.0
    assert math.isnan(iv.shift) or 0.5 <= iv.shift <= 1.0
    if iv.labels is None:
        assert not has.any() and math.isnan(iv.ppi_estimate)
    else:
        assert 0.0 <= iv.labels.lam <= 1.0
        assert 0.0 <= iv.ppi_lower <= iv.ppi_estimate <= iv.ppi_upper <= 1.0
        assert iv.labels.df >= 1 and iv.labels.variance >= 0.0


def test_power_tuning_weighs_a_useless_estimator_out() -> None:
    """lambda = Cov(y, P) / Var(P): near 0 for a P unrelated to correctness (the labels
    alone decide), near 1 for a calibrated one."""
    rng = np.random.default_rng(2)
    n, m = 4000, 2000
    p = rng.uniform(size=n)
    lab = np.full(n, np.nan)
    idx = rng.choice(n, m, replace=False)
    useless_y = (rng.uniform(size=n) < 0.5).astype(float)
    lab[idx] = useless_y[idx]
    useless = label_part(SliceStats.from_arrays(p, lab))
    assert useless is not None and useless.lam < 0.1
    assert useless.estimate == pytest.approx(lab[idx].mean(), abs=0.01)  # the labels' mean
    calibrated_y = (rng.uniform(size=n) < p).astype(float)
    lab[idx] = calibrated_y[idx]
    good = label_part(SliceStats.from_arrays(p, lab))
    assert good is not None and good.lam > 0.85
    # a useful P narrows the estimate: Var(y - P) = E[P (1 - P)] = 1/6 for uniform P,
    # against Var(y) = 1/4 for the labels alone
    labels_alone = float(np.var(lab[idx])) / m * (1 - m / n)
    assert good.variance == pytest.approx(2 / 3 * labels_alone, rel=0.15)


def test_active_design_keeps_the_label_corrected_estimate_unbiased_and_covering() -> None:
    """A slice of 300 responses whose P is biased low by 0.15; 10 labels per repetition,
    drawn with the active design's inclusion probabilities (Poisson sampling). The
    design-weighted estimate is unbiased whatever P's bias; with a calibrated P the
    combined label-corrected interval covers the slice's accuracy at the nominal level."""
    rng = np.random.default_rng(3)
    n, m, reps = 300, 10, 400
    truth_p = rng.beta(2, 3, n)
    y = (rng.uniform(size=n) < truth_p).astype(float)
    truth = float(y.mean())
    biased = np.clip(truth_p - 0.15, 0.0, 1.0)
    errors, covered = [], []
    for _ in range(reps):
        pi = inclusion_probabilities(biased, m)
        chosen = draw(pi, rng)
        if not chosen.any():
            continue
        part = label_part(
            SliceStats.from_arrays(
                biased, np.where(chosen, y, np.nan), pi=np.where(chosen, pi, np.nan)
            )
        )
        assert part is not None
        errors.append(part.estimate - truth)
        pi_c = inclusion_probabilities(truth_p, m)
        chosen_c = draw(pi_c, rng)
        iv = finish(
            SliceStats.from_arrays(
                truth_p, np.where(chosen_c, y, np.nan), pi=np.where(chosen_c, pi_c, np.nan)
            )
        )
        if iv.labels is not None:
            covered.append(iv.ppi_lower <= truth <= iv.ppi_upper)
    assert len(errors) > 0.95 * reps
    assert abs(float(np.mean(errors))) < 0.02  # the label-free estimate is 0.15 off
    assert float(np.mean(biased)) - truth < -0.1
    assert float(np.mean(covered)) >= 0.93
