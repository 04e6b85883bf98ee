"""The results of a folder's runs as tables: per (configuration, group) and per domain.

`load_results` reads every cached task of a results folder whose key matches its
configuration's current recipe in the manifest (entries left from an older
recipe are counted in ``n_stale`` and ignored) and builds:

* ``groups``: one row per (configuration, group): configuration, kind, method,
  family, features, calibration, balance, group, k, status, error, seconds and the
  `GROUP_METRICS` (NaN for failed tasks);
* ``domains``: one row per (configuration, group, evaluated domain) of the
  successful tasks: the `domain_metrics` columns.

`EvaluationResults.save` writes both as Parquet and CSV (``groups.*``, ``domains.*``;
the per-domain CSV gzipped).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.evaluation.metrics import GROUP_METRICS, group_summary
from entropy_sentinel.evaluation.runner import CACHE, MANIFEST

__all__ = ["EvaluationResults", "load_results"]

CONFIG_COLUMNS = ("configuration", "kind", "method", "family", "features", "calibration", "balance")
GROUP_COLUMNS = (*CONFIG_COLUMNS, "group", "k", "status", "error", "seconds", *GROUP_METRICS)
DOMAIN_COLUMNS = (
    *CONFIG_COLUMNS,
    "group",
    "k",
    "domain",
    "role",
    "n",
    "true_accuracy",
    "estimate",
    "abs_error",
    "auroc",
    "brier",
    "lower",
    "upper",
    "shift",
    "sampling_sd",
    "calibration_sd",
    "transfer_half_width",
    "unseen_fraction",
)


@dataclass(frozen=True)
class EvaluationResults:
    """Tables of a results folder (see the module docstring)."""

    groups: pd.DataFrame
    domains: pd.DataFrame
    manifest: dict[str, Any]
    n_stale: int = 0

    def save(self, output: str | os.PathLike[str]) -> list[Path]:
        """Write ``groups.{parquet,csv}`` and ``domains.{parquet,csv.gz}`` into ``output``
        (the per-domain table has a row per domain of every task: gzipped CSV)."""
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name, frame, csv in (
            ("groups", self.groups, "groups.csv"),
            ("domains", self.domains, "domains.csv.gz"),
        ):
            frame.to_parquet(out / f"{name}.parquet", index=False)
            frame.to_csv(out / csv, index=False)
            written += [out / f"{name}.parquet", out / csv]
        return written

    def configurations(self) -> list[str]:
        """Configuration names in the order they were first run."""
        return list(dict.fromkeys(self.groups["configuration"]))

    def ok(self) -> pd.DataFrame:
        """The successful group rows."""
        return self.groups[self.groups["status"] == "ok"]


def _config_columns(name: str, info: dict[str, Any]) -> dict[str, Any]:
    spec = info.get("spec", {})
    params = spec.get("params", {})
    kind = spec.get("kind", "")
    if kind == "preset":  # its classifier's parameters, with the configuration's overrides
        overrides = {k: v for k, v in params.items() if k != "preset"}
        clf = {**spec.get("definition", {}).get("classifier", {}), **overrides}
        method = params.get("preset")
    elif kind == "baseline":
        clf, method = {}, params.get("method")
    else:
        clf, method = params, "classifier"
    if kind == "baseline":
        features = str(params.get("score", ""))
    else:
        features = str(clf.get("features", ""))
        blend = clf.get("blend") or ()
        if blend:
            features += "+" + "+".join(blend)
    mode = params.get("mode", clf.get("entropy_mode", "topk")) or "topk"
    if mode != "topk":
        features += f"@{mode}"
    calibration = clf.get("calibration")
    return {
        "configuration": name,
        "kind": kind,
        "method": method,
        "family": clf.get("family"),
        "features": features,
        "calibration": "none" if kind != "baseline" and calibration is None else calibration,
        "balance": clf.get("balance"),
    }


def load_results(output: str | os.PathLike[str]) -> EvaluationResults:
    """Read a results folder written by `run_evaluation`."""
    out = Path(output)
    path = out / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{out} has no {MANIFEST}: it is not a results folder of sentinel evaluate"
        )
    manifest = json.loads(path.read_text())
    configs: dict[str, Any] = manifest.get("configurations", {})
    group_rows: list[dict[str, Any]] = []
    domain_rows: list[dict[str, Any]] = []
    n_stale = 0
    for file in sorted((out / CACHE).glob("*/*.json")):
        entry = json.loads(file.read_text())
        name = entry.get("configuration")
        info = configs.get(name)
        if info is None or entry.get("key") != info.get("key"):
            n_stale += 1
            continue
        meta = _config_columns(name, info)
        group = "+".join(entry["group"])
        base = {**meta, "group": group, "k": int(entry["k"])}
        summary = (
            group_summary(entry["domains"])
            if entry["status"] == "ok"
            else dict.fromkeys(GROUP_METRICS, math.nan)
        )
        group_rows.append(
            {
                **base,
                "status": entry["status"],
                "error": entry.get("error"),
                "seconds": entry.get("seconds", math.nan),
                **summary,
            }
        )
        domain_rows += [{**base, **row} for row in entry["domains"]]
    order = {name: i for i, name in enumerate(configs)}
    groups = pd.DataFrame(group_rows, columns=list(GROUP_COLUMNS))
    domains = pd.DataFrame(domain_rows, columns=list(DOMAIN_COLUMNS))
    if len(groups):
        groups = groups.sort_values(
            ["configuration", "k", "group"],
            key=lambda s: s.map(order) if s.name == "configuration" else s,
        ).reset_index(drop=True)
    if len(domains):
        domains = domains.sort_values(
            ["configuration", "k", "group", "domain"],
            key=lambda s: s.map(order) if s.name == "configuration" else s,
        ).reset_index(drop=True)
    return EvaluationResults(groups, domains, manifest, n_stale)
