"""Honest intervals and the label loop, assessed from a results folder without refitting.

The runner keeps, for every preset task (configuration, training group), the estimator's
per-trace outputs on the evaluated rows (`entropy_sentinel.estimator.TraceScores`, in
``cache/<configuration>/<group>.npz``). From them this module recomputes, cheaply and
for any transfer relation:

* `transfer_points`: per (group, held-out domain) the shift score and the transfer part
  of the error, the data a `TransferModel` is fitted on (`fit_transfer`);
* `label_free`: each domain's label-free interval under a relation chosen per domain —
  in particular one fitted *without* that domain (leave-one-domain-out), which is how an
  interval would fare on a domain the shipped relation never saw;
* `label_curve`: the label loop. For each domain's evaluation part and each budget ``m``
  (expected labels per slice) and repetition: labels alone (a simple random sample of
  ``m``, its mean with an exact finite-population, hypergeometric interval), plain PPI
  (the same sample; the estimator's P, ``lambda = 1``, `SliceStats.ppi_interval`) and
  ours (an active design, `entropy_sentinel.estimator.design`, drawn by Poisson sampling
  with expected size ``m``; `finish`: power-tuned, design-weighted PPI combined with the
  label-free estimate).

Accuracies are fractions in [0, 1]; every row carries the domain's true accuracy over its
evaluated responses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import hypergeom

from entropy_sentinel._typing import BoolArray, FloatArray, IntArray
from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.design import draw, inclusion_probabilities
from entropy_sentinel.estimator.intervals import finish
from entropy_sentinel.estimator.transfer import TransferModel, transfer_magnitude
from entropy_sentinel.evaluation.data import EvalData
from entropy_sentinel.evaluation.runner import CACHE, MANIFEST

__all__ = [
    "ScoredTask",
    "exact_interval",
    "label_curve",
    "label_free",
    "load_scored",
    "transfer_points",
]

RelationFor = Callable[[str], TransferModel | None]
"""The transfer relation to use for a domain (by name)."""


@dataclass(frozen=True, eq=False)
class ScoredTask:
    """A preset's outputs on the evaluated rows of one training group.

    Attributes:
        configuration: its name.
        group: the training domains.
        rows: corpus row numbers of the evaluated traces.
        p, p_classifier, seen, cal, w: `TraceScores` fields on those rows.
        n_reference: training traces behind its shift reference.
    """

    configuration: str
    group: tuple[str, ...]
    rows: IntArray
    p: FloatArray
    p_classifier: FloatArray
    seen: BoolArray
    cal: FloatArray
    w: FloatArray
    n_reference: int

    def part(self, domains: np.ndarray, name: str) -> BoolArray:
        """Mask over `rows` of the evaluated traces of domain ``name``."""
        return np.asarray(domains[self.rows] == name, dtype=bool)

    def stats(self, mask: BoolArray, y: FloatArray | None = None,
              pi: FloatArray | None = None) -> SliceStats:  # fmt: skip
        """The slice statistics of the masked rows (labels and inclusion optional)."""
        return SliceStats.from_arrays(
            self.p[mask],
            None if y is None else y,
            pi=pi,
            unseen=~self.seen[mask],
            cal=self.cal[mask],
            w=self.w[mask],
        )


def load_scored(results_dir: str | Path, configuration: str) -> list[ScoredTask]:
    """The current (non-stale) scored tasks of one preset in a results folder."""
    out = Path(results_dir)
    manifest = json.loads((out / MANIFEST).read_text())
    info = manifest.get("configurations", {}).get(configuration)
    if info is None:
        raise ConfigError(f"{out} has no configuration {configuration!r}")
    tasks = []
    for entry_path in sorted((out / CACHE / configuration).glob("*.json")):
        entry = json.loads(entry_path.read_text())
        npz = entry_path.with_suffix(".npz")
        if entry.get("key") != info["key"] or entry.get("status") != "ok" or not npz.exists():
            continue
        with np.load(npz) as z:
            tasks.append(
                ScoredTask(
                    configuration=configuration,
                    group=tuple(entry["group"]),
                    rows=z["rows"],
                    p=z["p"],
                    p_classifier=z["p_classifier"],
                    seen=z["seen"],
                    cal=z["cal"],
                    w=z["w"],
                    n_reference=int(z["n_reference"]),
                )
            )
    return tasks


def _domain_parts(task: ScoredTask, data: EvalData) -> Iterator[tuple[str, str, BoolArray]]:
    for name in data.domain_names:
        mask = task.part(data.domains, name)
        if mask.any():
            yield name, ("in" if name in task.group else "heldout"), mask


def transfer_points(tasks: Sequence[ScoredTask], data: EvalData, prefix: str = "") -> pd.DataFrame:
    """Per (group, held-out domain): ``shift``, ``error`` (label-free estimate minus the
    truth), ``sampling_sd``, the transfer ``magnitude`` (`transfer_magnitude`), ``n``,
    ``k`` and the ``domain`` (prefixed, to keep corpora apart)."""
    rows = []
    for task in tasks:
        for name, role, mask in _domain_parts(task, data):
            if role != "heldout":
                continue
            iv = finish(task.stats(mask), n_reference=task.n_reference)
            truth = float(data.labels[task.rows][mask].mean())
            rows.append(
                {
                    "group": "+".join(task.group),
                    "k": len(task.group),
                    "domain": prefix + name,
                    "n": iv.n,
                    "shift": iv.shift,
                    "estimate": iv.estimate,
                    "truth": truth,
                    "error": iv.estimate - truth,
                    "sampling_sd": iv.sampling_sd,
                }
            )
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["magnitude"] = transfer_magnitude(frame["error"], frame["sampling_sd"])
    return frame


def label_free(
    tasks: Sequence[ScoredTask], data: EvalData, relation_for: RelationFor, level: float = 0.95
) -> pd.DataFrame:
    """Each (group, domain)'s label-free estimate and interval, the relation chosen per
    domain by ``relation_for``; with ``covered``, ``width`` and ``sampling_width`` (the
    width of the interval from the estimator's own P alone: Poisson-binomial only)."""
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + level / 2.0))
    rows = []
    for task in tasks:
        for name, role, mask in _domain_parts(task, data):
            iv = finish(
                task.stats(mask), level, transfer=relation_for(name), n_reference=task.n_reference
            )
            p_raw = task.p[mask]
            truth = float(data.labels[task.rows][mask].mean())
            rows.append(
                {
                    "configuration": task.configuration,
                    "group": "+".join(task.group),
                    "k": len(task.group),
                    "domain": name,
                    "role": role,
                    "n": iv.n,
                    "estimate": iv.estimate,
                    "lower": iv.lower,
                    "upper": iv.upper,
                    "truth": truth,
                    "abs_error": abs(iv.estimate - truth),
                    "covered": iv.lower <= truth <= iv.upper,
                    "width": iv.upper - iv.lower,
                    "sampling_width": 2 * z * math.sqrt(float(np.sum(p_raw * (1 - p_raw)))) / iv.n,
                    "shift": iv.shift,
                }
            )
    return pd.DataFrame(rows)


def exact_interval(x: int, m: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact finite-population interval of a population's accuracy from ``x`` correct
    of a simple random sample of ``m`` out of ``n``: every count ``K`` of correct
    responses in the population that the sample does not reject at either tail (the
    hypergeometric analogue of Clopper-Pearson), as fractions of ``n``.

    >>> [round(x, 3) for x in exact_interval(5, 10, 30)]
    [0.233, 0.767]
    """
    alpha = (1.0 - level) / 2.0
    ks = np.arange(n + 1)
    ok = (hypergeom.sf(x - 1, n, ks, m) > alpha) & (hypergeom.cdf(x, n, ks, m) > alpha)
    inside = ks[ok]
    return float(inside.min()) / n, float(inside.max()) / n


def label_curve(
    tasks: Sequence[ScoredTask],
    data: EvalData,
    relation_for: RelationFor,
    *,
    budgets: Sequence[int] = (5, 10, 20),
    repetitions: int = 10,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """The label loop on every (group, domain, budget ``m`` < the part's size, repetition):
    one row per method (``labels``, ``ppi``, ``ours``) with its estimate and interval."""
    rows: list[dict[str, Any]] = []
    for t_index, task in enumerate(tasks):
        y_all = data.labels[task.rows]
        for d_index, (name, role, mask) in enumerate(_domain_parts(task, data)):
            idx = np.flatnonzero(mask)
            n = idx.shape[0]
            y = y_all[idx]
            truth = float(y.mean())
            relation = relation_for(name)
            base = {"group": "+".join(task.group), "k": len(task.group), "domain": name,
                    "role": role, "n": n, "truth": truth}  # fmt: skip
            for m in budgets:
                if m >= n:
                    continue
                for rep in range(repetitions):
                    rng = np.random.default_rng([seed, t_index, d_index, m, rep])
                    sample = rng.choice(n, m, replace=False)
                    x = int(y[sample].sum())
                    lo, hi = exact_interval(x, m, n, level)
                    rows.append({**base, "m": m, "rep": rep, "method": "labels",
                                 "estimate": x / m, "lower": lo, "upper": hi})  # fmt: skip
                    plain = np.full(n, np.nan)
                    plain[sample] = y[sample]
                    iv = SliceStats.from_arrays(task.p[idx], plain).ppi_interval(level)
                    rows.append({**base, "m": m, "rep": rep, "method": "ppi",
                                 "estimate": iv.estimate, "lower": iv.lower,
                                 "upper": iv.upper})  # fmt: skip
                    pi = inclusion_probabilities(task.p_classifier[idx], m)
                    chosen = draw(pi, rng)
                    labels = np.where(chosen, y, np.nan)
                    stats = task.stats(mask, labels, np.where(chosen, pi, np.nan))
                    ours = finish(stats, level, transfer=relation, n_reference=task.n_reference)
                    if ours.labels is None:  # nothing drawn: the label-free interval
                        est, lo2, hi2 = ours.estimate, ours.lower, ours.upper
                    else:
                        est, lo2, hi2 = ours.ppi_estimate, ours.ppi_lower, ours.ppi_upper
                    rows.append({**base, "m": m, "rep": rep, "method": "ours",
                                 "n_drawn": int(chosen.sum()), "estimate": est,
                                 "lower": lo2, "upper": hi2})  # fmt: skip
    frame = pd.DataFrame(rows)
    if len(frame):
        frame["abs_error"] = (frame["estimate"] - frame["truth"]).abs()
        frame["covered"] = (frame["lower"] <= frame["truth"] + 1e-12) & (
            frame["truth"] <= frame["upper"] + 1e-12
        )
        frame["width"] = frame["upper"] - frame["lower"]
    return frame
