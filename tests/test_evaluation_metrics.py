"""Per-domain and per-group metrics against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from entropy_sentinel.evaluation import domain_metrics, group_summary


def _rows(est: list[float], true: list[float], roles: list[str]) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    out = []
    for i, (e, t, r) in enumerate(zip(est, true, roles, strict=True)):
        y = np.array([1.0, 0.0, 1.0, 0.0])
        out.append(domain_metrics(f"d{i}", r, e, t, rng.uniform(size=4), y, rng.uniform(size=4)))
    return out


def test_domain_metrics_match_sklearn_and_the_brier_definition() -> None:
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=50) < 0.4).astype(float)
    p = rng.uniform(size=50)
    row = domain_metrics("a", "in", 0.3, float(y.mean()), p, y, p)
    assert row["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert row["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert row["abs_error"] == pytest.approx(abs(0.3 - y.mean()))
    assert row["n"] == 50 and row["role"] == "in"


def test_auroc_is_nan_for_one_class_and_brier_nan_without_probabilities() -> None:
    row = domain_metrics("a", "heldout", 0.1, 0.0, [0.2, 0.3], [0.0, 0.0], None)
    assert math.isnan(row["auroc"]) and math.isnan(row["brier"])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 1), st.sampled_from(["in", "heldout"])),
        min_size=3,
        max_size=15,
    )
)
def test_group_summary_is_the_mean_error_and_the_correlations(
    triples: list[tuple[float, float, str]],
) -> None:
    est = [t[0] for t in triples]
    true = [t[1] for t in triples]
    roles = [t[2] for t in triples]
    s = group_summary(_rows(est, true, roles))
    err = np.abs(np.array(est) - np.array(true))
    held = np.array(roles) == "heldout"
    assert s["aee"] == pytest.approx(err.mean())
    if held.any():
        assert s["aee_heldout"] == pytest.approx(err[held].mean())
    else:
        assert math.isnan(s["aee_heldout"])
    if np.ptp(est) > 0 and np.ptp(true) > 0:
        assert s["spearman"] == pytest.approx(stats.spearmanr(est, true)[0], nan_ok=True)
        assert s["pearson"] == pytest.approx(stats.pearsonr(est, true)[0], abs=1e-9, nan_ok=True)
    else:
        assert math.isnan(s["spearman"]) and math.isnan(s["pearson"])
    assert s["n_domains"] == len(triples)


def test_correlations_need_three_domains() -> None:
    s = group_summary(_rows([0.1, 0.9], [0.2, 0.8], ["in", "heldout"]))
    assert math.isnan(s["spearman"])
    assert s["aee"] == pytest.approx(0.1)
