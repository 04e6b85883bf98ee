"""Slice calibration: a log-odds offset per slice value seen in training, partially pooled."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logit

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.slicecal import MISSING, SliceCalibration

FloatArray = npt.NDArray[np.float64]


def _data(
    offsets: dict[str, float], n: int, seed: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.object_]]:
    """P from a pooled model; each value's true log-odds are P's shifted by its offset."""
    rng = np.random.default_rng(seed)
    values = np.array([v for v in offsets for _ in range(n)], dtype=object)
    p = rng.uniform(0.05, 0.95, len(values))
    shift = np.array([offsets[v] for v in values])
    y = (rng.uniform(size=len(values)) < expit(logit(p) + shift)).astype(float)
    return p, y, values


def test_offsets_reproduce_each_values_accuracy_with_many_labels() -> None:
    truth = {"easy": 1.5, "hard": -2.0, "same": 0.0}
    p, y, values = _data(truth, 4000, seed=0)
    cal = SliceCalibration().fit(p, y, values)
    p_cal, cal_term, seen = cal.apply(p, values)
    assert seen.all()
    for value, b in truth.items():
        off = cal.offsets_[value]
        mask = values == value
        assert abs(off.b - b) < 3 * off.sd + 0.01, value
        assert off.sd < 0.06 and off.n == 4000
        assert off.accuracy == pytest.approx(y[mask].mean())
        assert off.mean_p == pytest.approx(p[mask].mean())
        # calibrated in the large for its own value: the mean P is the accuracy
        assert p_cal[mask].mean() == pytest.approx(y[mask].mean(), abs=0.002)
    assert cal_term == pytest.approx(
        p_cal * (1 - p_cal) * np.array([cal.offsets_[v].sd for v in values])
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(20, 300),
    b=st.floats(-3.0, 3.0),
    prior_sd=st.floats(0.2, 5.0),
)
def test_the_offset_solves_its_score_equation(seed: int, n: int, b: float, prior_sd: float) -> None:
    """MAP under the N(0, prior_sd^2) prior: sum(y - P_v) = b / prior_sd^2 exactly, so the
    mean calibrated P misses the accuracy by b / (prior_sd^2 n) -- towards the pooled
    model, by less the more labels the value has."""
    p, y, values = _data({"v": b}, n, seed)
    cal = SliceCalibration(prior_sd=prior_sd, min_labels=1).fit(p, y, values)
    off = cal.offsets_["v"]
    q = expit(logit(p) + off.b)
    assert float(np.sum(y - q)) == pytest.approx(off.b / prior_sd**2, abs=1e-6)
    assert off.sd == pytest.approx(1 / np.sqrt(np.sum(q * (1 - q)) + 1 / prior_sd**2), rel=1e-6)
    assert off.sd < prior_sd


def test_few_labels_shrink_the_offset_to_zero() -> None:
    """The same evidence per label (every answer correct), ever fewer labels: the offset
    shrinks towards 0 (the pooled model), and its uncertainty grows towards the prior."""
    p = np.full(400, 0.3)
    y = np.ones(400)
    bs, sds = [], []
    for n in (400, 100, 20, 5, 1):
        off = SliceCalibration(min_labels=1).fit(p[:n], y[:n], ["v"] * n).offsets_["v"]
        bs.append(off.b)
        sds.append(off.sd)
    assert bs == sorted(bs, reverse=True) and bs[-1] > 0
    assert bs[-1] < bs[0] / 5  # one label moves it a fifth as far as 400 do
    assert sds == sorted(sds) and sds[-1] < 1.5  # never beyond the prior's 1.5
    # a tight prior keeps even 400 labels near the pooled model
    tight = SliceCalibration(prior_sd=0.05).fit(p, y, ["v"] * 400).offsets_["v"]
    assert abs(tight.b) < 0.1 * bs[0]


def test_min_labels_and_unseen_values_keep_the_pooled_model() -> None:
    p, y, values = _data({"big": 1.0, "small": 1.0}, 30, seed=1)
    keep = (values == "big") | (np.arange(len(values)) % 3 == 0)  # 'small': 10 labels
    cal = SliceCalibration(min_labels=20).fit(p[keep], y[keep], values[keep])
    assert set(cal.offsets_) == {"big"}
    new_values = np.array(["big", "small", "never", None, "big"], dtype=object)
    new_p = np.array([0.2, 0.2, 0.4, 0.6, 0.9])
    p_cal, cal_term, seen = cal.apply(new_p, new_values)
    assert seen.tolist() == [True, False, False, False, True]
    assert cal.seen(new_values).tolist() == seen.tolist()
    assert (p_cal[~seen] == new_p[~seen]).all()  # untouched, to the bit
    assert (cal_term[~seen] == 0).all() and (cal_term[seen] > 0).all()
    assert (p_cal[seen] > new_p[seen]).all()  # 'big' is easier than the pooled model says


def test_missing_values_are_a_value_of_their_own() -> None:
    p, y, _ = _data({"x": 0.0}, 50, seed=2)
    values = np.array([None] * 50, dtype=object)
    cal = SliceCalibration().fit(p, y, values)
    assert set(cal.offsets_) == {MISSING}
    assert cal.apply(p[:3], [None, None, "x"])[2].tolist() == [True, True, False]


def test_bad_parameters_and_shapes() -> None:
    with pytest.raises(ConfigError, match="prior_sd=0 must be a positive number"):
        SliceCalibration(prior_sd=0)
    with pytest.raises(ConfigError, match="prior_sd=nan must be a positive number"):
        SliceCalibration(prior_sd=float("nan"))
    with pytest.raises(ConfigError, match="min_labels=0 must be at least 1"):
        SliceCalibration(min_labels=0)
    with pytest.raises(ConfigError, match="one entry per training trace"):
        SliceCalibration().fit([0.2, 0.3], [1.0], ["a", "a"])
