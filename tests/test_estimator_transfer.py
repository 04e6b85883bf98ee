"""Transfer error: the relation between shift score and half-width, fitted leave-one-domain-out,
and the relations shipped with the package."""

from __future__ import annotations

import json
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.presets import PRESETS
from entropy_sentinel.estimator.transfer import (
    LEVELS,
    TransferModel,
    fit_transfer,
    load_transfer,
    transfer_magnitude,
)

FloatArray = npt.NDArray[np.float64]


def _points(
    seed: int, n_domains: int = 12, per_domain: int = 6
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.object_]]:
    """Offline points: each domain has its own typical error (errors of one domain are
    alike across training groups), growing with the shift score."""
    rng = np.random.default_rng(seed)
    level = rng.gamma(2.0, 0.04, n_domains)
    shift = np.clip(rng.uniform(0.5, 1.0, (n_domains, per_domain)), 0.5, 0.999)
    magnitude = level[:, None] * (0.5 + 2 * (shift - 0.5)) * rng.uniform(0.7, 1.3, shift.shape)
    names = np.array([[f"d{i}"] * per_domain for i in range(n_domains)], dtype=object)
    return shift.ravel(), magnitude.ravel(), names.ravel()


def _reference_fit(
    s: FloatArray, t: FloatArray, g: npt.NDArray[np.object_], levels: tuple[float, ...], n_bins: int
) -> tuple[FloatArray, list[FloatArray]]:
    """The rule of the module docstring, written out plainly: equal-count bins of the
    shift; per level L the smallest quantile level tau >= L (on a grid of 41) whose
    leave-one-domain-out coverage reaches L; the binned tau-quantiles of all points,
    non-decreasing; 1 where no tau reaches L."""
    n_bins = max(1, min(n_bins, len(s) // 5))
    edges = np.maximum.accumulate(np.quantile(s, np.arange(1, n_bins + 1) / n_bins))
    edges[-1] = s.max()
    edges = np.maximum.accumulate(edges)
    bins = np.array([int(np.sum(edges < x)) for x in s])

    def quantiles(keep: npt.NDArray[np.bool_], tau: float) -> FloatArray:
        out = []
        for b in range(n_bins):
            values = t[keep & (bins == b)]
            out.append(np.quantile(values, tau, method="higher") if len(values) else 0.0)
        return np.maximum.accumulate(np.array(out))

    rows = []
    for level in levels:
        chosen = None
        for tau in np.linspace(level, 1.0, 41):
            covered = 0
            for name in sorted(set(g)):
                out = g == name
                q = quantiles(~out, float(tau))
                covered += sum(t[i] <= q[bins[i]] + 1e-12 for i in np.flatnonzero(out))
            if covered >= level * len(t):
                chosen = float(tau)
                break
        rows.append(
            np.ones(n_bins)
            if chosen is None
            else np.minimum(1.0, quantiles(np.ones(len(t), bool), chosen))
        )
    return edges, rows


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_bins=st.integers(1, 5))
def test_the_fit_follows_its_docstring(seed: int, n_bins: int) -> None:
    s, t, g = _points(seed)
    levels = (0.5, 0.8, 0.95)
    model = fit_transfer(s, t, g, levels=levels, n_bins=n_bins)
    edges, rows = _reference_fit(s, t, g, levels, n_bins)
    assert model.edges == pytest.approx(tuple(edges))
    assert model.levels == levels
    for got, want in zip(model.half_widths, rows):
        assert got == pytest.approx(tuple(want))
    assert (model.n_points, model.n_domains) == (len(s), 12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_half_widths_are_monotone_in_the_shift_and_cover_left_out_domains(seed: int) -> None:
    s, t, g = _points(seed, n_domains=10, per_domain=8)
    model = fit_transfer(s, t, g, n_bins=3)
    grid = np.linspace(0.5, model.edges[-1], 50)
    for level in (*LEVELS, 0.7, 0.93):
        widths = [model.half_width(float(x), level) for x in grid]
        assert widths == sorted(widths), level
        assert all(0.0 <= w <= 1.0 for w in widths)
    for row in model.half_widths:
        assert list(row) == sorted(row)
    for column in zip(*model.half_widths):  # a higher level never asks for less
        assert list(column) == sorted(column)
    # In sample, each level's half-widths cover at least that fraction of the points
    # (they are fitted to cover it for domains left out, which is harder).
    for level, row in zip(model.levels, model.half_widths):
        bins = np.searchsorted(model.edges, s, side="left")
        covered = np.mean(t <= np.asarray(row)[bins] + 1e-12)
        assert covered >= level


def test_leaving_domains_out_is_what_makes_it_honest() -> None:
    """Errors of one domain are alike across groups. Here the domain with the largest
    errors holds almost a quarter of the points: in sample, the 80% quantile (its own
    error) covers every point; left out, it is judged by the others, whose errors are all
    smaller, so no quantile covers 80% of the points and the relation is the worst case."""
    sizes = [3] * 8 + [10, 10]
    typical = np.r_[np.linspace(0.01, 0.08, 8), 0.13, 0.2]
    names = np.array([f"d{i}" for i, size in enumerate(sizes) for _ in range(size)], dtype=object)
    magnitude = np.repeat(typical, sizes)
    shift = np.full(len(magnitude), 0.6)
    assert float(np.quantile(magnitude, 0.8, method="higher")) == 0.2  # in sample: all
    assert fit_transfer(shift, magnitude, names, levels=(0.8,), n_bins=1).half_widths == ((1.0,),)
    # with the largest errors spread over small domains, leaving one out costs little
    spread = np.repeat(np.r_[np.linspace(0.01, 0.08, 8), 0.13, 0.2], [5] * 10)
    names10 = np.repeat(np.array([f"d{i}" for i in range(10)], dtype=object), 5)
    model = fit_transfer(np.full(50, 0.6), spread, names10, levels=(0.8,), n_bins=1)
    assert model.half_widths == ((0.13,),)


def test_the_honest_worst_case() -> None:
    s, t, g = _points(0, n_domains=20)
    model = fit_transfer(s, t, g, n_bins=3)
    inside = model.half_width(float(np.median(s)), 0.9)
    assert 0 < inside < 1
    assert model.half_width(model.edges[-1] + 1e-6, 0.95) == 1.0  # beyond what was seen
    assert model.half_width(0.7, 0.999) == 1.0  # above the top level
    assert model.half_width(0.7, 0.3) == model.half_width(0.7, 0.5)  # below: the lowest
    assert model.half_width(math.nan, 0.95) == model.half_widths[LEVELS.index(0.95)][-1]
    # two domains, each with errors beyond all of the other's: no level above 1/2 can be
    # covered for a domain left out, so the relation is the worst case there
    names = np.array(["a"] * 10 + ["b"] * 10, dtype=object)
    worst = fit_transfer(np.full(20, 0.6), np.r_[np.full(10, 0.1), np.full(10, 0.3)], names)
    assert all(w == 1.0 for level, row in zip(worst.levels, worst.half_widths)
               if level > 0.5 for w in row)  # fmt: skip
    for level in (0.0, 1.0):
        with pytest.raises(ConfigError, match=f"level={level!r} must be in"):
            model.half_width(0.6, level)


def test_bad_points_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="one entry per point"):
        fit_transfer([0.6], [0.1], ["a"])
    with pytest.raises(ConfigError, match="one entry per point"):
        fit_transfer([0.6, 0.7], [0.1], ["a", "b"])


def test_json_round_trip() -> None:
    s, t, g = _points(1)
    model = fit_transfer(s, t, g, n_bins=2, name="x", source="synthetic points")
    again = TransferModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert again == model
    assert again.half_width(0.7, 0.9) == model.half_width(0.7, 0.9)


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_the_shipped_relation_of_every_preset_loads(preset_name: str) -> None:
    name = PRESETS[preset_name]["estimator"]["transfer"]
    model = load_transfer(name)
    assert model.name == name and model.source
    assert len(model.half_widths) == len(model.levels) == len(LEVELS)
    assert all(len(row) == len(model.edges) for row in model.half_widths)
    assert list(model.edges) == sorted(model.edges) and list(model.levels) == sorted(model.levels)
    for row in model.half_widths:
        assert list(row) == sorted(row) and all(0.0 < w <= 1.0 for w in row)
    assert load_transfer(name) == model  # read once, the same every time


def test_an_unknown_relation_names_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"no transfer relation is shipped for 'best'; shipped"):
        load_transfer("best")


def test_transfer_magnitude_takes_the_sampling_part_out() -> None:
    z = float(norm.ppf(0.975))
    got = transfer_magnitude([0.1, -0.1, 0.01], [0.02, 0.02, 0.02])
    expected = math.sqrt(0.01 - (z * 0.02) ** 2)
    np.testing.assert_allclose(got, [expected, expected, 0.0])
    assert transfer_magnitude([0.1], [0.0], level=0.5)[0] == pytest.approx(0.1)
