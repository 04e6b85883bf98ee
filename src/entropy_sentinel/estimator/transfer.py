"""Transfer error: how far a label-free estimate can be off on a slice unlike its training data.

Sampling error and calibration error can be computed from the slice and the training
labels; the error of carrying an estimator to a population it has never seen cannot:
with two training domains, leave-one-domain-out gives two folds, and split conformal at
95% needs about 19 calibration domains. So the relation between a slice's transfer error
and its shift score (`entropy_sentinel.estimator.shiftscore`) is learnt offline, across
the many (training group, held-out domain) pairs of the corpora we have, and shipped
with the package (``data/transfer.json``, one relation per preset; regenerate it with
``scripts/transfer_relation.py``).

`TransferModel` holds, for a few nominal levels (0.5 ... 0.99) and a few bins of the
shift score, the half-width ``h`` that the transfer part of a slice's error stays
within. Per offline point ``j`` (an estimator fitted on a training group, estimating a
held-out domain of ``n_j`` responses) the transfer part is
``t_j = sqrt(max(0, e_j^2 - (z s_j)^2))``: the error ``e_j`` of the estimate against the
domain's realised accuracy, less its Poisson-binomial sampling part ``s_j`` (added back,
for the slice at hand, by the interval itself).

How ``h`` is fitted (`fit_transfer`), per level ``L``: the ``tau``-quantile of ``t`` per
bin of the shift score (equal-count bins), made non-decreasing in the shift score; the
quantile level ``tau >= L`` is the smallest that covers a fraction ``L`` of the points
*leave-one-domain-out* (each domain's points judged by a relation fitted without that
domain). That is the honest question for a new domain: errors of one domain are alike
across training groups, so an in-sample quantile would flatter. Where no ``tau`` reaches
``L`` under leave-one-domain-out, and beyond the largest shift score seen offline, the
half-width is 1: the honest worst case, an interval over everything.

>>> m = fit_transfer([0.6, 0.7, 0.8, 0.9] * 5, [0.1, 0.1, 0.2, 0.3] * 5,
...                  [f"d{i}" for i in range(20)], levels=(0.5,), n_bins=2)
>>> m.half_width(0.65, 0.5), m.half_width(0.85, 0.5), m.half_width(0.99, 0.5)
(0.1, 0.3, 1.0)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError

__all__ = ["LEVELS", "TransferModel", "fit_transfer", "load_transfer", "transfer_magnitude"]

LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)
"""Nominal levels a shipped relation holds half-widths for."""

_DATA = "transfer.json"


@dataclass(frozen=True)
class TransferModel:
    """The shipped relation between shift score and transfer half-width (module docstring).

    Attributes:
        name: the preset it was measured for.
        edges: upper bounds of the shift-score bins, increasing; the last is the largest
            shift score seen offline.
        levels: nominal levels, increasing.
        half_widths: per level, per bin, the half-width (accuracy units), non-decreasing
            along the bins.
        n_points, n_domains: offline (group, domain) points and distinct domains behind it.
        source: what data and estimator it was measured on.
    """

    name: str
    edges: tuple[float, ...]
    levels: tuple[float, ...]
    half_widths: tuple[tuple[float, ...], ...]
    n_points: int
    n_domains: int
    source: str

    def half_width(self, shift: float, level: float) -> float:
        """Transfer half-width at ``level`` for a slice with this shift score (NaN shift:
        the largest bin); 1 beyond the largest shift seen offline or above the top level."""
        if not 0.0 < level < 1.0:
            raise ConfigError(f"level={level!r} must be in (0, 1), e.g. 0.95")
        if math.isnan(shift):
            b = len(self.edges) - 1
        elif shift > self.edges[-1]:
            return 1.0
        else:
            b = int(np.searchsorted(self.edges, shift, side="left"))
        column = [row[b] for row in self.half_widths]
        if level > self.levels[-1]:
            return 1.0
        if level <= self.levels[0]:
            return column[0]
        return float(np.interp(level, self.levels, column))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransferModel:
        return cls(
            name=str(data["name"]),
            edges=tuple(float(x) for x in data["edges"]),
            levels=tuple(float(x) for x in data["levels"]),
            half_widths=tuple(tuple(float(x) for x in row) for row in data["half_widths"]),
            n_points=int(data["n_points"]),
            n_domains=int(data["n_domains"]),
            source=str(data["source"]),
        )


@cache
def _shipped() -> dict[str, dict[str, Any]]:
    text = resources.files("entropy_sentinel.estimator").joinpath("data", _DATA).read_text()
    relations: dict[str, dict[str, Any]] = json.loads(text)["relations"]
    return relations


def load_transfer(name: str) -> TransferModel:
    """The shipped relation of preset ``name`` (`ConfigError` naming those shipped)."""
    relations = _shipped()
    if name not in relations:
        raise ConfigError(
            f"no transfer relation is shipped for {name!r}; shipped: {sorted(relations)} "
            "(scripts/transfer_relation.py measures one)"
        )
    return TransferModel.from_dict(relations[name])


def transfer_magnitude(
    error: npt.ArrayLike, sampling_sd: npt.ArrayLike, level: float = 0.95
) -> FloatArray:
    """``sqrt(max(0, e^2 - (z s)^2))``: the part of each error beyond its sampling part."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    e = np.asarray(error, dtype=np.float64)
    s = np.asarray(sampling_sd, dtype=np.float64)
    return np.asarray(np.sqrt(np.maximum(0.0, e * e - (z * s) ** 2)), dtype=np.float64)


def fit_transfer(
    shift: npt.ArrayLike,
    magnitude: npt.ArrayLike,
    domains: npt.ArrayLike,
    *,
    levels: Sequence[float] = LEVELS,
    n_bins: int = 4,
    name: str = "",
    source: str = "",
) -> TransferModel:
    """Fit a `TransferModel` on offline points (see the module docstring).

    Args:
        shift: each point's shift score.
        magnitude: each point's transfer magnitude (`transfer_magnitude`), >= 0.
        domains: each point's held-out domain (the unit left out together).
        levels: nominal levels to hold.
        n_bins: bins of the shift score (equal counts; fewer if the points are few).
    """
    s = np.asarray(shift, dtype=np.float64)
    t = np.asarray(magnitude, dtype=np.float64)
    g = np.asarray(domains, dtype=object)
    if not (s.shape == t.shape == g.shape) or s.ndim != 1 or s.shape[0] < 2:
        raise ConfigError("shift, magnitude and domains need one entry per point (2 or more)")
    keep = np.isfinite(s) & np.isfinite(t)
    s, t, g = s[keep], t[keep], g[keep]
    n_bins = max(1, min(n_bins, s.shape[0] // 5))
    edges = np.quantile(s, np.linspace(0.0, 1.0, n_bins + 1)[1:])
    edges[-1] = s.max()
    edges = np.maximum.accumulate(edges)
    bins = np.searchsorted(edges, s, side="left")
    names = sorted(set(g.tolist()))
    rows = []
    for level in sorted(levels):
        tau = _lodo_level(t, bins, g, names, n_bins, level)
        row = (
            np.ones(n_bins)
            if tau is None
            else np.minimum(1.0, _binned_quantile(t, bins, n_bins, tau))
        )
        rows.append(tuple(float(x) for x in row))
    return TransferModel(
        name=name,
        edges=tuple(float(x) for x in edges),
        levels=tuple(sorted(float(x) for x in levels)),
        half_widths=tuple(rows),
        n_points=int(s.shape[0]),
        n_domains=len(names),
        source=source,
    )


def _binned_quantile(t: FloatArray, bins: npt.NDArray[np.intp], n_bins: int, tau: float) -> Any:
    """The ``tau``-quantile of ``t`` per bin ('higher' interpolation: an observed value),
    made non-decreasing along the bins; an empty bin takes its left neighbour's value."""
    out = np.zeros(n_bins)
    for b in range(n_bins):
        values = t[bins == b]
        out[b] = np.quantile(values, tau, method="higher") if values.size else 0.0
    return np.maximum.accumulate(out)


def _lodo_level(
    t: FloatArray,
    bins: npt.NDArray[np.intp],
    g: npt.NDArray[np.object_],
    names: Sequence[str],
    n_bins: int,
    level: float,
) -> float | None:
    """The smallest quantile level ``tau >= level`` whose leave-one-domain-out coverage
    reaches ``level``; None if even the largest value does not."""
    for tau in np.linspace(level, 1.0, 41):
        covered = 0
        for name in names:
            out = g == name
            if out.all():
                continue
            q = _binned_quantile(t[~out], bins[~out], n_bins, float(tau))
            covered += int(np.sum(t[out] <= q[bins[out]] + 1e-12))
        if covered >= level * t.shape[0]:
            return float(tau)
    return None
