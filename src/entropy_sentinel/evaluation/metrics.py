"""Metrics of the protocol: per domain, then per (configuration, training group).

Per evaluated domain ``D`` (accuracies are fractions in [0, 1]):

* ``true_accuracy`` A(D) and ``estimate`` Â(D); ``abs_error`` = |Â(D) - A(D)|;
* ``auroc``: how well the per-response confidence ranks correct above wrong
  responses (NaN when the domain's evaluated rows are all correct or all wrong);
* ``brier``: mean squared error of the per-response P(correct) (NaN for methods
  that give no per-response probability, e.g. ATC and DoC).

Per training group, over its evaluated domains:

* ``aee``: mean absolute error over all domains (in-domain 20% parts and
  held-out domains), the paper's AEE;
* ``aee_heldout``: over the domains outside the training group only (NaN when
  the group holds every domain); ``aee_indomain``: over the training domains'
  20% parts;
* ``spearman`` rho and ``pearson`` r between estimated and true accuracies over
  all domains (NaN when either side is constant);
* ``mean_auroc`` and ``mean_brier``: means over the domains where they are defined.

>>> rows = [domain_metrics("a", "in", 0.8, 0.7, [0.9, 0.2], [1.0, 0.0], [0.9, 0.2]),
...         domain_metrics("b", "heldout", 0.3, 0.5, [0.4, 0.6], [0.0, 1.0], None)]
>>> round(group_summary(rows)["aee"], 3), group_summary(rows)["aee_heldout"]
(0.15, 0.2)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.metrics import roc_auc_score

from entropy_sentinel._typing import FloatArray

__all__ = ["GROUP_METRICS", "domain_metrics", "group_summary"]


GROUP_METRICS: tuple[str, ...] = (
    "aee",
    "aee_heldout",
    "aee_indomain",
    "spearman",
    "pearson",
    "mean_auroc",
    "mean_brier",
    "n_domains",
)
"""The per-group summary columns, in order."""


def domain_metrics(
    domain: str,
    role: str,
    estimate: float,
    true_accuracy: float,
    confidence: npt.ArrayLike,
    labels: npt.ArrayLike,
    proba: npt.ArrayLike | None,
) -> dict[str, Any]:
    """One evaluated domain's record (see the module docstring).

    Args:
        domain: its name.
        role: ``"in"`` (20% part of a training domain) or ``"heldout"``.
        estimate: the estimated accuracy.
        true_accuracy: the accuracy of its evaluated rows.
        confidence: per-row confidence (higher = more likely correct), for AUROC.
        labels: per-row labels in {0, 1}.
        proba: per-row P(correct), for the Brier score; None if the method has none.
    """
    y = np.asarray(labels, dtype=np.float64)
    conf = np.asarray(confidence, dtype=np.float64)
    auroc = math.nan
    if 0.0 < y.mean() < 1.0 and np.isfinite(conf).all():
        auroc = float(roc_auc_score(y, conf))
    brier = math.nan
    if proba is not None:
        p = np.asarray(proba, dtype=np.float64)
        brier = float(np.mean((p - y) ** 2))
    return {
        "domain": domain,
        "role": role,
        "n": int(y.shape[0]),
        "true_accuracy": float(true_accuracy),
        "estimate": float(estimate),
        "abs_error": abs(float(estimate) - float(true_accuracy)),
        "auroc": auroc,
        "brier": brier,
    }


def _correlation(kind: str, est: FloatArray, true: FloatArray) -> float:
    if est.shape[0] < 3 or np.ptp(est) == 0.0 or np.ptp(true) == 0.0:
        return math.nan  # undefined for constant sides; 2 points give +-1 trivially
    with warnings.catch_warnings():
        # Nearly constant sides (e.g. ATC estimates of 0 on several domains) are valid
        # data; scipy's warning about their precision would not change the number.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        value = (
            stats.spearmanr(est, true)[0] if kind == "spearman" else stats.pearsonr(est, true)[0]
        )
    return float(value)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def group_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The per-group metrics of `GROUP_METRICS` from its domain records."""
    if not rows:
        return dict.fromkeys(GROUP_METRICS, math.nan) | {"n_domains": 0}
    est = np.array([r["estimate"] for r in rows], dtype=np.float64)
    true = np.array([r["true_accuracy"] for r in rows], dtype=np.float64)
    err = np.abs(est - true)
    held = np.array([r["role"] == "heldout" for r in rows])
    return {
        "aee": float(err.mean()),
        "aee_heldout": float(err[held].mean()) if held.any() else math.nan,
        "aee_indomain": float(err[~held].mean()) if (~held).any() else math.nan,
        "spearman": _correlation("spearman", est, true),
        "pearson": _correlation("pearson", est, true),
        "mean_auroc": _mean([r["auroc"] for r in rows]),
        "mean_brier": _mean([r["brier"] for r in rows]),
        "n_domains": len(rows),
    }
