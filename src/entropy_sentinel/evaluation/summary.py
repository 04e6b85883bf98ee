"""Summary tables of a results folder: per k, side by side, best and worst groups.

All functions take the ``groups`` table of `EvaluationResults` (one row per
configuration and training group) and return pandas DataFrames.

* `summary_by_k`: per configuration and k: groups run, failed, and the median and
  interquartile range of AEE (all domains and held-out only), Spearman rho,
  Pearson r, mean AUROC and mean Brier.
* `side_by_side`: configurations compared on the *same* groups (those where every
  one of them succeeded), against a reference: median AEE and rho, the share of
  groups where each beats the reference, the median paired difference and a
  Wilcoxon signed-rank p-value. Groups share domains, so these p-values treat
  dependent groups as independent: read them as a rough guide, not a test.
* `extreme_groups`: the best and worst training groups per k of a configuration.
* `marginal`: medians per value of one attribute (family, features, ...).

>>> import pandas as pd
>>> g = pd.DataFrame({"configuration": ["a", "a", "b", "b"], "k": [1, 1, 1, 1],
...                   "group": ["x", "y", "x", "y"], "status": ["ok"] * 4,
...                   "aee": [0.1, 0.3, 0.2, 0.2], "aee_heldout": [0.1, 0.3, 0.2, 0.2],
...                   "spearman": [0.5, 0.7, 0.6, 0.6]})
>>> side_by_side(g, ["a", "b"], reference="a", k=1)[["configuration", "n_groups", "aee"]]
  configuration  n_groups  aee
0             a         2  0.2
1             b         2  0.2
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import pandas as pd
from scipy import stats

__all__ = [
    "SIDE_BY_SIDE_COLUMNS",
    "common_groups",
    "extreme_groups",
    "marginal",
    "side_by_side",
    "succeeded",
    "summary_by_k",
]


def _q(values: pd.Series, q: float) -> float:
    finite = values.dropna()
    return float(finite.quantile(q)) if len(finite) else math.nan


def summary_by_k(groups: pd.DataFrame, configurations: Sequence[str] | None = None) -> pd.DataFrame:
    """Per configuration and k: counts, and medians / IQRs of the group metrics."""
    names = (
        list(configurations)
        if configurations is not None
        else list(dict.fromkeys(groups["configuration"]))
    )
    rows = []
    for name in names:
        part = groups[groups["configuration"] == name]
        for k, at_k in part.groupby("k"):
            ok = at_k[at_k["status"] == "ok"]
            rows.append(
                {
                    "configuration": name,
                    "k": int(str(k)),
                    "n_groups": len(at_k),
                    "n_failed": int((at_k["status"] != "ok").sum()),
                    "aee": _q(ok["aee"], 0.5),
                    "aee_q25": _q(ok["aee"], 0.25),
                    "aee_q75": _q(ok["aee"], 0.75),
                    "aee_heldout": _q(ok["aee_heldout"], 0.5),
                    "spearman": _q(ok["spearman"], 0.5),
                    "spearman_q25": _q(ok["spearman"], 0.25),
                    "spearman_q75": _q(ok["spearman"], 0.75),
                    "pearson": _q(ok["pearson"], 0.5),
                    "auroc": _q(ok["mean_auroc"], 0.5) if "mean_auroc" in ok else math.nan,
                    "brier": _q(ok["mean_brier"], 0.5) if "mean_brier" in ok else math.nan,
                }
            )
    return pd.DataFrame(rows)


def common_groups(groups: pd.DataFrame, configurations: Sequence[str], k: int | None) -> list[str]:
    """Groups (of size ``k``, or any) where every configuration ran and succeeded."""
    part = groups[groups["configuration"].isin(configurations) & (groups["status"] == "ok")]
    if k is not None:
        part = part[part["k"] == k]
    counts = part.groupby("group")["configuration"].nunique()
    return sorted(counts[counts == len(set(configurations))].index)


def succeeded(groups: pd.DataFrame, k: int | None) -> set[str]:
    """Configurations with at least one successful group (of size ``k``, or any)."""
    part = groups[groups["status"] == "ok"]
    if k is not None:
        part = part[part["k"] == k]
    return set(part["configuration"])


SIDE_BY_SIDE_COLUMNS = [
    "configuration",
    "n_groups",
    "aee",
    "aee_q25",
    "aee_q75",
    "aee_heldout",
    "spearman",
    "win_rate",
    "median_diff",
    "wilcoxon_p",
]


def side_by_side(
    groups: pd.DataFrame, configurations: Sequence[str], *, reference: str, k: int | None
) -> pd.DataFrame:
    """Configurations on their common groups (see the module docstring), best AEE first.

    Configurations that failed on every group of size ``k`` are left out (they would
    leave no common group); an empty table if the reference is one of them.

    Columns: configuration, n_groups, aee, aee_q25, aee_q75, aee_heldout, spearman,
    win_rate (share of groups with lower AEE than the reference; ties count half),
    median_diff (median of AEE minus the reference's), wilcoxon_p.
    """
    names = [n for n in dict.fromkeys([reference, *configurations]) if n in succeeded(groups, k)]
    if reference not in names:
        return pd.DataFrame(columns=SIDE_BY_SIDE_COLUMNS)
    common = common_groups(groups, names, k)
    part = groups[groups["configuration"].isin(names) & groups["group"].isin(common)]
    if k is not None:
        part = part[part["k"] == k]
    wide = part.pivot_table(index="group", columns="configuration", values="aee")
    rho = part.pivot_table(index="group", columns="configuration", values="spearman")
    held = part.pivot_table(index="group", columns="configuration", values="aee_heldout")
    rows = []
    for name in names:
        if name not in wide:
            continue
        diff = wide[name] - wide[reference]
        p = math.nan
        if name != reference and (diff != 0).any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.wilcoxon(wide[name], wide[reference]).pvalue)
        rows.append(
            {
                "configuration": name,
                "n_groups": len(common),
                "aee": float(wide[name].median()),
                "aee_q25": float(wide[name].quantile(0.25)),
                "aee_q75": float(wide[name].quantile(0.75)),
                "aee_heldout": _q(held[name], 0.5),
                "spearman": _q(rho[name], 0.5),
                "win_rate": float(((diff < 0) + 0.5 * (diff == 0)).mean()),
                "median_diff": float(diff.median()),
                "wilcoxon_p": p,
            }
        )
    out = pd.DataFrame(rows, columns=SIDE_BY_SIDE_COLUMNS)
    if len(out):
        out = out.sort_values(["aee", "configuration"]).reset_index(drop=True)
    return out


def extreme_groups(
    groups: pd.DataFrame, configuration: str, *, n: int = 3, metric: str = "aee"
) -> pd.DataFrame:
    """The ``n`` best and ``n`` worst groups per k of ``configuration`` by ``metric``."""
    part = groups[(groups["configuration"] == configuration) & (groups["status"] == "ok")]
    rows = []
    for k, at_k in part.groupby("k"):
        ranked = at_k.sort_values([metric, "group"])
        best = ranked.head(n)
        worst = ranked.tail(min(n, max(0, len(ranked) - len(best)))).iloc[::-1]
        for which, frame in (("best", best), ("worst", worst)):
            for _, row in frame.iterrows():
                rows.append(
                    {
                        "k": int(str(k)),
                        "rank": which,
                        "group": row["group"],
                        "aee": row["aee"],
                        "aee_heldout": row["aee_heldout"],
                        "spearman": row["spearman"],
                    }
                )
    return pd.DataFrame(rows, columns=["k", "rank", "group", "aee", "aee_heldout", "spearman"])


def marginal(
    groups: pd.DataFrame, attribute: str, configurations: Sequence[str], k: int | None = None
) -> pd.DataFrame:
    """Median AEE and rho per value of ``attribute`` over ``configurations``' common groups."""
    common = common_groups(groups, configurations, k)
    part = groups[groups["configuration"].isin(configurations) & groups["group"].isin(common)]
    if k is not None:
        part = part[part["k"] == k]
    rows = []
    for value, sub in part.groupby(attribute, dropna=False):
        rows.append(
            {
                attribute: value,
                "n_configurations": int(sub["configuration"].nunique()),
                "n_groups": len(common),
                "aee": float(sub["aee"].median()),
                "aee_q25": float(sub["aee"].quantile(0.25)),
                "aee_q75": float(sub["aee"].quantile(0.75)),
                "spearman": _q(sub["spearman"], 0.5),
            }
        )
    return pd.DataFrame(rows)
