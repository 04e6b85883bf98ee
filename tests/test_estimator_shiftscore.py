"""The shift score: about 0.5 for a sample of the training distribution whatever its size,
rising with a shift, and computed from sums that merge."""

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
from entropy_sentinel.estimator.shiftscore import (
    SHIFT_WORDS,
    ShiftReference,
    shift_score,
    shift_word,
)

FloatArray = npt.NDArray[np.float64]
N_REFERENCE = 3000


def _profiles(n: int, rng: np.random.Generator, scale: float = 1.0) -> FloatArray:
    """Heavy-tailed, correlated, positive columns like entropy profiles (nats): a common
    gamma factor times column-specific gamma noise."""
    common = rng.gamma(2.0, 0.3, size=(n, 1))
    return scale * common * rng.gamma(4.0, 0.25, size=(n, SHIFT_DIM))


@pytest.fixture(scope="module")
def reference() -> ShiftReference:
    return ShiftReference().fit(_profiles(N_REFERENCE, np.random.default_rng(0)))


def _score(w: FloatArray) -> float:
    return shift_score(w.shape[0], w.sum(axis=0), float((w * w).sum()), N_REFERENCE)


def test_training_traces_are_whitened(reference: ShiftReference) -> None:
    w = reference.transform(_profiles(N_REFERENCE, np.random.default_rng(0)))
    assert w.shape == (N_REFERENCE, SHIFT_DIM)
    np.testing.assert_allclose(w.mean(axis=0), 0.0, atol=1e-9)  # centred exactly
    cov = np.cov(w, rowvar=False)
    # identity up to the Ledoit-Wolf shrinkage of a nearly collinear covariance
    np.testing.assert_allclose(np.diag(cov), 1.0, atol=0.35)
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 0.35
    assert reference.n_reference_ == N_REFERENCE


@pytest.mark.parametrize("n", [5, 20, 100, 1000])
def test_a_sample_of_the_training_distribution_scores_about_half(
    reference: ShiftReference, n: int
) -> None:
    """The bias correction: the squared distance of two sample means has expectation
    tr/n + d/n_ref without any shift; taken out, small slices are not called shifted."""
    rng = np.random.default_rng(n)
    scores, naive = [], []
    for _ in range(150):
        w = reference.transform(_profiles(n, rng))
        scores.append(_score(w))
        naive.append(float(norm.cdf(np.linalg.norm(w.mean(axis=0)) / 2)))
    assert np.median(scores) < 0.53 and np.mean(scores) < 0.56
    if n >= 100:  # small slices are noisy, but unbiased: mostly below 0.6
        assert np.mean(np.asarray(scores) < 0.6) > 0.95  # "not calibrated, looks like training"
    else:
        assert np.mean(np.asarray(scores) < 0.6) > 0.7
        # without the correction, a small slice of the same traces looks shifted
        assert np.median(naive) > 0.6


def test_the_score_grows_with_a_mean_shift(reference: ShiftReference) -> None:
    base = _profiles(400, np.random.default_rng(1))
    scores = []
    for shift in (0.0, 0.1, 0.2, 0.5, 1.0):  # nats added to five of the columns
        moved = base.copy()
        moved[:, :5] += shift
        scores.append(_score(reference.transform(moved)))
    assert scores == sorted(scores) and len(set(scores)) == len(scores)
    assert scores[0] < 0.55 and scores[-1] > 0.95
    assert all(0.5 <= s < 1.0 for s in scores)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 200), data=st.data())
def test_the_score_of_the_whole_is_the_score_of_the_summed_parts(
    reference: ShiftReference, seed: int, n: int, data: st.DataObject
) -> None:
    rng = np.random.default_rng(seed)
    w = reference.transform(_profiles(n, rng, data.draw(st.floats(0.8, 2.0))))
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True)))
    parts = np.split(rng.permutation(n), cuts)
    stats = [SliceStats.from_arrays(np.full(len(i), 0.5), unseen=np.ones(len(i), bool), w=w[i])
             for i in parts]  # fmt: skip
    merged = sum(stats[1:], stats[0])
    from_sums = shift_score(merged.n_unseen, merged.sum_w, merged.sum_w2, N_REFERENCE)
    assert from_sums == pytest.approx(_score(w), rel=1e-9, abs=1e-12)
    by_hand = shift_score(n, sum(w[i].sum(axis=0) for i in parts),
                          sum(float((w[i] ** 2).sum()) for i in parts), N_REFERENCE)  # fmt: skip
    assert by_hand == pytest.approx(_score(w), rel=1e-9, abs=1e-12)


def test_degenerate_slices() -> None:
    assert math.isnan(shift_score(0, np.zeros(SHIFT_DIM), 0.0, 100))
    # one response: its own spread is unknown and taken as the training one (d)
    one = np.full(SHIFT_DIM, 3.0)
    delta2 = 9.0 * SHIFT_DIM - SHIFT_DIM - SHIFT_DIM / 100
    expected = float(norm.cdf(math.sqrt(delta2) / 2))
    assert shift_score(1, one, float(one @ one), 100) == pytest.approx(expected)
    assert shift_score(1, np.zeros(SHIFT_DIM), 0.0, 100) == 0.5


def test_words(reference: ShiftReference) -> None:
    assert shift_word(math.nan) == ""
    assert shift_word(0.5) == "not calibrated, looks like training"
    assert shift_word(0.7) == "not calibrated, somewhat unlike training"
    assert shift_word(0.99) == "unlike the training data: label some"
    bounds = [b for b, _ in SHIFT_WORDS]
    assert bounds == sorted(bounds) and bounds[-1] > 1.0  # every score has a word


def test_bad_shapes_are_clear_errors(reference: ShiftReference) -> None:
    with pytest.raises(ConfigError, match=r"at least 2 training traces, shape \(n, 11\)"):
        ShiftReference().fit(np.zeros((1, SHIFT_DIM)))
    with pytest.raises(ConfigError, match=r"at least 2 training traces"):
        ShiftReference().fit(np.zeros((10, 4)))
    with pytest.raises(ConfigError, match=r"profiles must have shape \(n, 11\)"):
        reference.transform(np.zeros((3, 10)))
    assert reference.transform(np.zeros((0, SHIFT_DIM))).shape == (0, SHIFT_DIM)
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ShiftReference().transform(np.zeros((1, SHIFT_DIM)))
