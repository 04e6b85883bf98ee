"""A slice's numbers from its stored sums: one model's estimator finishes them, and
several models' finished numbers combine into one.

**One model.** The sums of a slice in a window (`SliceSums`: the flat `SliceStats` and
``n_shift_unknown``) are finished by the model's estimator itself, through the
`SliceFinisher` stored with its scorer (`SentinelEstimator.finisher`): the same
`entropy_sentinel.estimator.intervals.finish` the library, the CLI's ``estimate`` and the
Spark engine call, so the service's estimate, interval, shift and label-corrected
numbers are the library's. Two service-side cases:

* responses whose whitened profile is not known (``n_shift_unknown > 0``: stored before
  the service kept it and not rescored yet, or scored by an estimator without a shift
  reference) make the slice's shift unknown: it is finished without a shift reference,
  so its uncalibrated part carries the transfer relation's widest half-width;
* a scorer registered before finishers were kept, and not served since, has none: its
  slices get `WORST_CASE`, a transfer half-width of 1 (an interval over everything for
  the uncalibrated part).

**Several models** (all models together, each trace scored by its own estimator), with
``n_m`` responses of model ``m`` in the slice and ``N`` in all, weights ``a_m = n_m / N``:

* the estimate is the count-weighted mean ``sum a_m est_m``;
* sampling errors are independent across models: ``s = sqrt(sum (a_m s_m)^2)``;
* the calibration and transfer parts are not sampling noise and can hit every model
  alike, so their half-widths add linearly: ``c = sum a_m c_m``, ``t = sum a_m t_m``;
* ``half = sqrt((z s)^2 + (z c)^2 + t^2) + 1 / (2 N)``, as `finish` puts them together;
* the shift is the largest of the models' shift scores (unknown if any is), the unseen
  fraction ``sum a_m u_m``;
* labels: counts add; the label-corrected estimate is ``sum a_m e_m`` and its interval
  ``[sum a_m l_m, sum a_m u_m]`` over each model's label-corrected estimate and interval
  (its label-free ones where it has no labels): what holds when every model's interval
  holds, without assuming their errors independent.

>>> from entropy_sentinel.aggregate import SliceStats
>>> a = SliceSums(SliceStats.from_arrays([0.8, 0.6]), 0)
>>> (a + a).stats.n, (a + a).n_shift_unknown
(4, 0)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from entropy_sentinel.aggregate import FLAT_FIELDS, SliceStats
from entropy_sentinel.estimator.intervals import LabelPart, SliceFinisher, SliceInterval
from entropy_sentinel.estimator.transfer import TransferModel
from entropy_sentinel.service.records import ScorerInfo

__all__ = ["WORST_CASE", "SliceSums", "combine", "finish_slice"]

WORST_CASE = SliceFinisher(
    TransferModel(
        name="worst case",
        edges=(1.0,),
        levels=(0.5, 0.99),
        half_widths=((1.0,), (1.0,)),
        n_points=0,
        n_domains=0,
        source="no transfer relation known for this scorer: the honest worst case",
    ),
    0,
)
"""The finisher of a scorer whose estimator's own is not known (module docstring)."""


@dataclass(frozen=True)
class SliceSums:
    """A slice's stored sums over some buckets: its `SliceStats`, and the responses whose
    whitened profile is not known (``n_shift_unknown``). ``a + b`` merges."""

    stats: SliceStats
    n_shift_unknown: int = 0

    def __add__(self, other: SliceSums) -> SliceSums:
        return SliceSums(self.stats + other.stats, self.n_shift_unknown + other.n_shift_unknown)

    @classmethod
    def from_columns(cls, values: npt.ArrayLike) -> SliceSums:
        """From summed ``slice_buckets`` columns (`SUM_COLUMNS` order)."""
        v = np.asarray(values, dtype=np.float64)
        k = len(FLAT_FIELDS)
        return cls(SliceStats.from_flat(v[:k]), max(0, round(float(v[k]))))


def finish_slice(scorer: ScorerInfo, sums: SliceSums, level: float) -> SliceInterval:
    """One model's numbers for a slice: its estimator's finisher on the sums (module
    docstring)."""
    finisher = scorer.finisher or WORST_CASE
    if sums.n_shift_unknown > 0 and finisher.n_reference:
        finisher = dataclasses.replace(finisher, n_reference=0)
    return finisher(sums.stats, level)


def combine(parts: Sequence[SliceInterval], level: float) -> SliceInterval:
    """Several models' numbers for one slice as one (module docstring)."""
    used = [p for p in parts if p.n > 0]
    if len(used) == 1:
        return used[0]
    if not used:
        nan = math.nan
        return SliceInterval(0, nan, nan, nan, level, nan, nan, nan, nan, nan, None,
                             nan, nan, nan)  # fmt: skip
    n = sum(p.n for p in used)
    a = np.array([p.n / n for p in used])
    z = float(norm.ppf(0.5 + level / 2.0))
    est = float(a @ [p.estimate for p in used])
    sampling = math.sqrt(float(((a * [p.sampling_sd for p in used]) ** 2).sum()))
    calibration = float(a @ [p.calibration_sd for p in used])
    transfer = float(a @ [p.transfer_half_width for p in used])
    half = math.sqrt((z * sampling) ** 2 + (z * calibration) ** 2 + transfer**2) + 0.5 / n
    unseen = [p for p in used if p.unseen_fraction > 0]
    shifts = [p.shift for p in unseen]
    shift = max(shifts) if shifts and all(math.isfinite(x) for x in shifts) else math.nan
    labelled = [p for p in used if p.labels is not None]
    labels = None
    ppi = (math.nan, math.nan, math.nan)
    if labelled:
        m = sum(p.labels.n_labels for p in labelled if p.labels is not None)
        acc = sum(p.labels.n_labels * p.labels.labelled_accuracy for p in labelled if p.labels)
        labels = LabelPart(
            n_labels=m,
            n_plain=sum(p.labels.n_plain for p in labelled if p.labels is not None),
            labelled_accuracy=acc / m,
            lam=math.nan,
            estimate=math.nan,
            variance=math.nan,
            df=0,
        )
        triples = np.array(
            [
                (p.ppi_estimate, p.ppi_lower, p.ppi_upper)
                if p.labels is not None
                else (p.estimate, p.lower, p.upper)
                for p in used
            ]
        )
        e, lo, hi = (float(x) for x in a @ triples)
        ppi = (e, lo, hi)
    return SliceInterval(
        n=n,
        estimate=est,
        lower=max(0.0, est - half),
        upper=min(1.0, est + half),
        level=level,
        sampling_sd=sampling,
        calibration_sd=calibration,
        transfer_half_width=transfer,
        shift=shift,
        unseen_fraction=float(a @ [p.unseen_fraction for p in used]),
        labels=labels,
        ppi_estimate=ppi[0],
        ppi_lower=ppi[1],
        ppi_upper=ppi[2],
    )
