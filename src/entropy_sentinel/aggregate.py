"""Mergeable per-slice statistics of P(correct), and the intervals built from them.

`SliceStats` holds sufficient statistics of one slice: counts and sums of the
predicted probabilities ``p`` (and of the labels ``y`` where present). Two
`SliceStats` add exactly (``a + b``), so estimates for a slice can be merged
across time windows, workers, database partitions and service instances without
rescanning traces.

Estimates (all accuracies are fractions in [0, 1]):

* label-free: ``A_hat = mean(p)``. Its sampling interval treats the slice's true
  accuracy as the mean of independent Bernoulli(p_i) outcomes (Poisson-binomial):
  ``Var = sum p_i (1 - p_i) / n^2``. The estimator's own error enters as
  ``model_sd`` (a standard deviation of the estimate that does not shrink with n,
  e.g. from calibration error or a bootstrap over training data), added in
  quadrature: ``A_hat +- z * sqrt(Var + model_sd^2)``, clipped to [0, 1].
* label-corrected (prediction-powered inference, Angelopoulos et al. 2023), with
  labels on ``m`` of the ``n`` responses: ``A_pp = mean_all(p) + mean_lab(y - p)``.
  Its error for the slice's own accuracy is the gap between the labelled and the
  slice's mean residual (the labelled responses are part of the slice, drawn
  without replacement): ``Var = (1 - m / n) var_lab(y - p) / m``, with a Student-t
  quantile (``m - 1`` degrees of freedom). Valid whatever the estimator's bias,
  because the labelled residual corrects it; a fully labelled slice gets its true
  accuracy with zero width. With fewer than ~20 labels the interval under-covers
  (measured in docs/estimator.md): the residual variance is then poorly known.

>>> a = SliceStats.from_arrays(np.array([0.9, 0.8]))
>>> b = SliceStats.from_arrays(np.array([0.7]))
>>> (a + b).n, round((a + b).estimate, 4)
(3, 0.8)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
from scipy.stats import norm
from scipy.stats import t as student_t

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError

__all__ = ["COUNT_FIELDS", "FLAT_FIELDS", "SHIFT_DIM", "Interval", "SliceStats", "binary_floor"]


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with a two-sided interval at ``level`` (fractions in [0, 1])."""

    estimate: float
    lower: float
    upper: float
    level: float

    @property
    def half_width(self) -> float:
        return (self.upper - self.lower) / 2.0

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper

    @classmethod
    def around(cls, estimate: float, sd: float, level: float = 0.95) -> Interval:
        """The normal interval ``estimate +- z * sd`` at ``level``, clipped to [0, 1].

        >>> iv = Interval.around(0.95, 0.05)
        >>> round(iv.lower, 4), iv.upper
        (0.852, 1.0)
        """
        z = _z(level)
        if sd < 0 or not math.isfinite(sd):
            raise ConfigError(f"sd={sd!r} must be finite and >= 0")
        half = z * sd
        return cls(estimate, max(0.0, estimate - half), min(1.0, estimate + half), level)


SHIFT_DIM = 11
"""Length of the whitened feature vectors whose sums give a slice's shift score (the
11 entropy-profile features, `entropy_sentinel.estimator.shiftscore`)."""


@dataclass(frozen=True, slots=True)
class SliceStats:
    """Sufficient statistics of one slice (see the module docstring); ``a + b`` merges.

    Attributes (sums over the slice's responses; ``p`` is each response's estimated
    P(correct), the value whose mean is the slice's label-free estimate):
        n: responses with a prediction.
        sum_p, sum_p2: sums of p and p^2 over them.
        sum_pq: sum of p (1 - p) (the Poisson-binomial variance numerator).
        n_labelled: responses with a label outside any sampling design ("plain" labels).
        sum_y: sum of their labels (1 = correct).
        sum_r, sum_r2: sums of the residual r = y - p and of r^2 over them.
        sum_lp2: sum of p^2 over them (with the above, every second moment of (y, p)).
        n_unseen: responses whose slice value (in the estimator's calibration dimension)
            was not in its training data: their p carries transfer error.
        sum_cal: sum over the other responses of p (1 - p) sd(b), the first-order
            effect on p of the uncertainty ``sd(b)`` of their value's calibration offset.
        sum_w, sum_w2: over the unseen responses, the sums of their whitened feature
            vectors (`SHIFT_DIM` numbers) and of those vectors' squared norms: what the
            shift score of the unseen part needs.
        n_design: responses labelled within a sampling design (inclusion probability pi).
        dw, dwy, dwp, dwyp, dwp2: sums of w = 1/pi times 1, y, p, y p, p^2 over them.
        da, day, dap, dayp, dap2: sums of a = (1 - pi)/pi^2 times 1, y, p, y p, p^2.
    """

    n: int = 0
    sum_p: float = 0.0
    sum_p2: float = 0.0
    sum_pq: float = 0.0
    n_labelled: int = 0
    sum_y: float = 0.0
    sum_r: float = 0.0
    sum_r2: float = 0.0
    sum_lp2: float = 0.0
    n_unseen: int = 0
    sum_cal: float = 0.0
    sum_w: tuple[float, ...] = (0.0,) * SHIFT_DIM
    sum_w2: float = 0.0
    n_design: int = 0
    dw: float = 0.0
    dwy: float = 0.0
    dwp: float = 0.0
    dwyp: float = 0.0
    dwp2: float = 0.0
    da: float = 0.0
    day: float = 0.0
    dap: float = 0.0
    dayp: float = 0.0
    dap2: float = 0.0

    @classmethod
    def from_arrays(
        cls,
        p: npt.ArrayLike,
        y: npt.ArrayLike | None = None,
        *,
        pi: npt.ArrayLike | None = None,
        unseen: npt.ArrayLike | None = None,
        cal: npt.ArrayLike | None = None,
        w: npt.ArrayLike | None = None,
    ) -> SliceStats:
        """Statistics of one slice from per-response arrays (`contributions`, summed)."""
        return cls.from_flat(cls.contributions(p, y, pi=pi, unseen=unseen, cal=cal, w=w).sum(0))

    @staticmethod
    def contributions(
        p: npt.ArrayLike,
        y: npt.ArrayLike | None = None,
        *,
        pi: npt.ArrayLike | None = None,
        unseen: npt.ArrayLike | None = None,
        cal: npt.ArrayLike | None = None,
        w: npt.ArrayLike | None = None,
    ) -> FloatArray:
        """Each response's contribution ``(n, len(FLAT_FIELDS))`` to the sums, in
        `FLAT_FIELDS` order: summing rows (in any grouping, on any machine) gives the
        flat statistics of the group (`from_flat`). The service and the Spark engine
        store and sum exactly these columns.

        Args:
            p: float ``(n,)`` estimated P(correct) in [0, 1].
            y: labels: 1 correct, 0 wrong, NaN unlabelled (None: no labels).
            pi: inclusion probability in (0, 1] of each label drawn by a sampling design
                (`entropy_sentinel.estimator.design`), NaN for plain labels (None: all
                labels are plain).
            unseen: bool, whether the response's slice value was absent from the
                estimator's training data (None: all seen).
            cal: each seen response's ``p (1 - p) sd(b)`` (None: zeros).
            w: ``(n, SHIFT_DIM)`` whitened features (needed where ``unseen``).
        """
        pa = np.asarray(p, dtype=np.float64)
        if pa.ndim != 1:
            raise ConfigError(f"p must be 1-D, got shape {pa.shape}")
        n = pa.shape[0]
        if n and (np.isnan(pa).any() or pa.min() < 0.0 or pa.max() > 1.0):
            raise ConfigError("probabilities p must lie in [0, 1] and not be NaN")
        out = np.zeros((n, len(FLAT_FIELDS)))
        col = _COLUMN
        out[:, col["n"]] = 1.0
        out[:, col["sum_p"]] = pa
        out[:, col["sum_p2"]] = pa * pa
        out[:, col["sum_pq"]] = pa * (1.0 - pa)
        if y is not None:
            ya = np.asarray(y, dtype=np.float64)
            if ya.shape != pa.shape:
                raise ConfigError(f"labels y must have the shape of p {pa.shape}, got {ya.shape}")
            lab = ~np.isnan(ya)
            if lab.any() and not np.isin(ya[lab], (0.0, 1.0)).all():
                raise ConfigError("labels y must be 0, 1 or NaN")
            pia = np.full(n, np.nan) if pi is None else np.asarray(pi, dtype=np.float64)
            if pia.shape != pa.shape:
                raise ConfigError(f"pi must have the shape of p {pa.shape}, got {pia.shape}")
            designed = lab & ~np.isnan(pia)
            if designed.any() and not ((pia[designed] > 0.0) & (pia[designed] <= 1.0)).all():
                raise ConfigError("inclusion probabilities pi must lie in (0, 1]")
            plain = lab & ~designed
            yz, pz = np.where(lab, ya, 0.0), np.where(lab, pa, 0.0)
            r = yz - pz
            out[:, col["n_labelled"]] = plain
            out[:, col["sum_y"]] = np.where(plain, yz, 0.0)
            out[:, col["sum_r"]] = np.where(plain, r, 0.0)
            out[:, col["sum_r2"]] = np.where(plain, r * r, 0.0)
            out[:, col["sum_lp2"]] = np.where(plain, pz * pz, 0.0)
            wgt = np.where(designed, 1.0 / np.where(designed, pia, 1.0), 0.0)
            a = np.where(designed, (1.0 - np.where(designed, pia, 1.0)) * wgt * wgt, 0.0)
            out[:, col["n_design"]] = designed
            for prefix, weight in (("d" + "w", wgt), ("d" + "a", a)):
                out[:, col[prefix]] = weight
                out[:, col[prefix + "y"]] = weight * yz
                out[:, col[prefix + "p"]] = weight * pz
                out[:, col[prefix + "yp"]] = weight * yz * pz
                out[:, col[prefix + "p2"]] = weight * pz * pz
        if unseen is not None:
            un = np.asarray(unseen, dtype=bool)
            if un.shape != pa.shape:
                raise ConfigError(f"unseen must have the shape of p {pa.shape}, got {un.shape}")
            out[:, col["n_unseen"]] = un
            if un.any():
                if w is None:
                    raise ConfigError("unseen responses need their whitened features w")
                wa = np.asarray(w, dtype=np.float64)
                if wa.shape != (n, SHIFT_DIM):
                    raise ConfigError(f"w must have shape ({n}, {SHIFT_DIM}), got {wa.shape}")
                wu = np.where(un[:, None], wa, 0.0)
                out[:, col["sum_w"] : col["sum_w"] + SHIFT_DIM] = wu
                out[:, col["sum_w2"]] = (wu * wu).sum(axis=1)
        if cal is not None:
            ca = np.asarray(cal, dtype=np.float64)
            if ca.shape != pa.shape:
                raise ConfigError(f"cal must have the shape of p {pa.shape}, got {ca.shape}")
            out[:, col["sum_cal"]] = ca
        return out

    def flat(self) -> FloatArray:
        """The statistics as one vector in `FLAT_FIELDS` order (``sum_w`` spread out)."""
        values: list[float] = []
        for f in fields(SliceStats):
            v = getattr(self, f.name)
            values.extend(v if f.name == "sum_w" else (v,))
        return np.asarray(values, dtype=np.float64)

    @classmethod
    def from_flat(cls, values: npt.ArrayLike) -> SliceStats:
        """The inverse of `flat` (counts rounded to integers; sums that cannot be negative
        clipped at 0 against float drift)."""
        v = np.asarray(values, dtype=np.float64)
        if v.shape != (len(FLAT_FIELDS),):
            raise ConfigError(f"flat statistics need {len(FLAT_FIELDS)} values, got {v.shape}")
        kw: dict[str, object] = {}
        for f in fields(SliceStats):
            j = _COLUMN[f.name]
            if f.name == "sum_w":
                kw[f.name] = tuple(float(x) for x in v[j : j + SHIFT_DIM])
            elif f.type in ("int", int):
                kw[f.name] = round(float(v[j]))
            elif f.name in _NON_NEGATIVE:
                kw[f.name] = max(0.0, float(v[j]))
            else:
                kw[f.name] = float(v[j])
        return cls(**kw)  # type: ignore[arg-type]

    def __add__(self, other: SliceStats) -> SliceStats:
        if not isinstance(other, SliceStats):
            return NotImplemented
        merged = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(SliceStats)
            if f.name != "sum_w"
        }
        sum_w = tuple(a + b for a, b in zip(self.sum_w, other.sum_w, strict=True))
        return SliceStats(**merged, sum_w=sum_w)

    # ------------------------------------------------------------- estimates
    @property
    def estimate(self) -> float:
        """Label-free estimated accuracy, mean(p); NaN for an empty slice."""
        return self.sum_p / self.n if self.n else math.nan

    @property
    def true_accuracy(self) -> float:
        """Accuracy over the labelled responses; NaN when none is labelled."""
        return self.sum_y / self.n_labelled if self.n_labelled else math.nan

    @property
    def sampling_sd(self) -> float:
        """Poisson-binomial standard deviation of the slice's realised accuracy."""
        return math.sqrt(self.sum_pq) / self.n if self.n else math.nan

    def interval(self, level: float = 0.95, model_sd: float = 0.0) -> Interval:
        """Label-free estimate with its interval (see the module docstring)."""
        _z(level)
        if model_sd < 0 or not math.isfinite(model_sd):
            raise ConfigError(f"model_sd={model_sd!r} must be finite and >= 0")
        if not self.n:
            return Interval(math.nan, math.nan, math.nan, level)
        return Interval.around(self.estimate, math.hypot(self.sampling_sd, model_sd), level)

    def ppi_interval(self, level: float = 0.95) -> Interval:
        """Prediction-powered (label-corrected) estimate; NaN without labels.

        Needs at least two labelled responses for a variance; with one, the
        interval is [0, 1]. The half-width uses Student's t with ``m - 1`` degrees
        of freedom rather than the normal quantile: the residual variance is
        estimated from the ``m`` labels, which are often few. That estimate is shrunk
        towards the slice's mean ``p (1 - p)``, the residual variance a calibrated
        estimator implies, with the weight of `PPI_PRIOR_DF` labels:
        ``((m - 1) s^2 + PPI_PRIOR_DF * mean(p (1 - p))) / (m - 1 + PPI_PRIOR_DF)``.
        A handful of labels that happen to agree would otherwise give a near-zero
        variance and an interval far too narrow (on Phi-3.5 with 1 to 10 labels per
        slice, coverage of the 95% interval was 0.76-0.81 with ``s^2`` alone); with
        many labels ``s^2`` dominates, so a miscalibrated estimator does not widen
        the interval for long. ``s^2`` itself is floored for binary labels
        (`binary_floor`).

        >>> s = SliceStats.from_arrays([0.9, 0.8, 0.7, 0.9], [1.0, 0.0, 1.0, 1.0])
        >>> iv = s.ppi_interval()
        >>> iv.estimate, iv.lower == iv.upper == 0.75  # fully labelled: the true accuracy
        (0.75, True)
        """
        _z(level)
        m = self.n_labelled
        if not m or not self.n:
            return Interval(math.nan, math.nan, math.nan, level)
        est = self.estimate + self.sum_r / m
        if m < 2:
            return Interval(min(1.0, max(0.0, est)), 0.0, 1.0, level)
        s2 = max(0.0, (self.sum_r2 - self.sum_r**2 / m) / (m - 1))
        s2 += binary_floor(m, self.sum_y / m, _z(level))
        var_r = ((m - 1) * s2 + PPI_PRIOR_DF * self.sum_pq / self.n) / (m - 1 + PPI_PRIOR_DF)
        unlabelled = max(0.0, 1.0 - m / self.n)  # finite-population correction
        t = float(student_t.ppf(0.5 + level / 2.0, df=m - 1))
        half = t * math.sqrt(unlabelled * var_r / m)
        clipped = min(1.0, max(0.0, est))
        return Interval(clipped, max(0.0, est - half), min(1.0, est + half), level)


def _flat_fields() -> tuple[str, ...]:
    names: list[str] = []
    for f in fields(SliceStats):
        names.extend(f"sum_w_{j}" for j in range(SHIFT_DIM)) if f.name == "sum_w" else names.append(
            f.name
        )
    return tuple(names)


FLAT_FIELDS: tuple[str, ...] = _flat_fields()
"""Names of the flat statistics (`SliceStats.flat`): every field, ``sum_w`` spread into
``sum_w_0`` .. ``sum_w_10``. Storage columns and Spark aggregates use these names."""

COUNT_FIELDS: frozenset[str] = frozenset({"n", "n_labelled", "n_unseen", "n_design"})
"""The flat statistics that are counts (integers); the others are float sums."""

_COLUMN: dict[str, int] = {name: j for j, name in enumerate(FLAT_FIELDS)}
_COLUMN["sum_w"] = _COLUMN["sum_w_0"]
_NON_NEGATIVE = frozenset(
    {"sum_p2", "sum_pq", "sum_r2", "sum_lp2", "sum_cal", "sum_w2", "dw", "dwp2", "da", "dap2"}
)

PPI_PRIOR_DF = 5.0
"""Weight, in labels, of the model-implied residual variance in `SliceStats.ppi_interval`."""


def binary_floor(m: int, y_bar: float, z: float) -> float:
    """Per-label variance to add to a residual variance estimated from ``m`` binary
    labels whose (weighted) mean is ``y_bar``: the labels' own part, ``y_bar (1 - y_bar)``,
    is raised to the Wilson score centre's ``p (1 - p)``, ``p = (m y_bar + z^2 / 2) /
    (m + z^2)`` (Agresti and Coull 1998). A Wald-type interval built on the plain
    estimate collapses when the labels agree (all wrong on a hard slice: variance 0)
    and under-covers near 0 and 1; this is the classic repair, and it vanishes as
    ``m`` grows or ``y_bar`` nears 1/2.

    >>> round(binary_floor(20, 0.0, 1.96), 4), binary_floor(20, 0.5, 1.96)
    (0.0741, 0.0)
    """
    p = (m * y_bar + z * z / 2.0) / (m + z * z)
    return max(0.0, p * (1.0 - p) - y_bar * (1.0 - y_bar))


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level!r} must be in (0, 1), e.g. 0.95")
    return float(norm.ppf(0.5 + level / 2.0))
