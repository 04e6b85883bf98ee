"""Configurations the harness compares, by name: each builds a slice estimator.

A `Configuration` is a named recipe whose `build` returns a fresh, unfitted
`entropy_sentinel.estimator.SliceEstimator`; the harness fits it on a group's reference
traces and estimates every domain, exactly as ``sentinel fit`` / ``sentinel estimate``
would. Three kinds:

* ``preset``: a named estimator configuration of the product
  (`entropy_sentinel.estimator.presets`: ``sentinel``, ``sentinel-entropy``, ``paper``),
  built by `entropy_sentinel.estimator.preset` itself, so what we measure is what we ship;
* ``classifier``: a bare `CorrectnessEstimator` (mean P, the classic interval) for the
  ablations; grid names read ``FAMILY.FEATURES.CALIBRATION.BALANCE[@MODE]``, e.g.
  ``rf.profile.isotonic.bal`` (``uncal`` / ``unbal`` for none);
* ``baseline``: `ScoreBaseline`: ``atc.SCORE``, ``ac.SCORE`` (isotonic-calibrated) and
  ``doc.SCORE`` (raw probability scores only: `DOC_SCORES`).

>>> [c.name for c in resolve(["paper", "atc.max_entropy", "lr.sea.isotonic.bal"])]
['paper', 'atc.max_entropy', 'lr.sea.isotonic.bal']
>>> [c.name for c in score_baselines(["atc", "doc"], ["max_entropy", "lntp"])]
['atc.max_entropy', 'atc.lntp', 'doc.lntp']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.baselines import BASELINE_METHODS, ScoreBaseline
from entropy_sentinel.estimator.calibration import check_calibration
from entropy_sentinel.estimator.features import check_feature_set
from entropy_sentinel.estimator.grids import check_family
from entropy_sentinel.estimator.interface import SliceEstimator
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.estimator.presets import PRESETS, preset
from entropy_sentinel.scores import SCORES
from entropy_sentinel.steps import check_mode

__all__ = [
    "DOC_SCORES",
    "METHOD_VERSION",
    "Configuration",
    "grid",
    "preset_configurations",
    "resolve",
    "score_baselines",
    "select_configurations",
]

Kind = Literal["preset", "classifier", "baseline"]

DOC_SCORES: tuple[str, ...] = ("lntp", "mtp")
"""Scores that are probabilities in [0, 1], the only ones DoC takes raw."""

METHOD_VERSION = "2"
"""Part of every recipe's hash: bumped when the estimators' code changes what they
compute, so that cached results of the old code are recomputed."""


@dataclass(frozen=True)
class Configuration:
    """A named way of estimating slice accuracy (see the module docstring).

    Attributes:
        name: unique, file-name safe.
        kind: ``preset``, ``classifier`` or ``baseline``.
        params: what `build` needs (JSON-compatible values).
        description: one line for reports.
    """

    name: str
    kind: Kind
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in '/\\:*?"<>| '):
            raise ConfigError(
                f"configuration name {self.name!r} must be non-empty and file-name safe "
                "(letters, digits, '.', '_', '-', '+', '@')"
            )
        if self.kind not in ("preset", "classifier", "baseline"):
            raise ConfigError(f"configuration kind {self.kind!r} is unknown")

    def spec(self) -> dict[str, Any]:
        """The recipe without the name (JSON-compatible): two configurations with the same
        spec compute the same thing. A preset's spec holds its full definition."""
        spec: dict[str, Any] = {
            "kind": self.kind,
            "params": dict(self.params),
            "method_version": METHOD_VERSION,
        }
        if self.kind == "preset":
            spec["definition"] = json.loads(json.dumps(PRESETS[self.params["preset"]]))
        return spec

    def spec_hash(self) -> str:
        """SHA-256 (hex, 16 chars) of `spec`."""
        text = json.dumps(self.spec(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build(self, seed: int) -> SliceEstimator:
        """A fresh, unfitted slice estimator (``seed`` seeds its folds and models)."""
        p = dict(self.params)
        if self.kind == "baseline":
            return ScoreBaseline(p["method"], p["score"], p.get("mode", "topk"))
        if self.kind == "preset":
            return preset(p.pop("preset"), random_state=seed, **p)
        mode = p.pop("mode", "topk")
        return CorrectnessEstimator(**p, entropy_mode=mode, random_state=seed)

    # Report helpers: the attributes each summary groups by.
    @property
    def classifier_params(self) -> Mapping[str, Any]:
        """The classifier's parameters (empty for a baseline)."""
        if self.kind == "preset":
            return dict(PRESETS[self.params["preset"]]["classifier"])
        return {} if self.kind == "baseline" else dict(self.params)

    @property
    def method(self) -> str:
        """``classifier``, the baseline (``atc``...) or the preset's name."""
        if self.kind == "baseline":
            return str(self.params["method"])
        if self.kind == "preset":
            return str(self.params["preset"])
        return "classifier"


def preset_configurations(names: Iterable[str] | None = None) -> list[Configuration]:
    """A configuration per preset (all by default)."""
    out = []
    for name in PRESETS if names is None else names:
        if name not in PRESETS:
            raise ConfigError(f"preset {name!r} is unknown; use one of {list(PRESETS)}")
        out.append(
            Configuration(name, "preset", {"preset": name}, f"the {name!r} preset (what we ship)")
        )
    return out


def _classifier(
    family: str, features: str, calibration: str | None, balance: bool, mode: str
) -> Configuration:
    check_family(family)
    check_feature_set(features)
    check_calibration(calibration)
    check_mode(mode)
    label = features if mode == "topk" else f"{features}@{mode}"
    name = ".".join([family, label, calibration or "uncal", "bal" if balance else "unbal"])
    return Configuration(
        name=name,
        kind="classifier",
        params={
            "family": family,
            "features": features,
            "calibration": calibration,
            "balance": balance,
            "mode": mode,
        },
        description=(
            f"{family} on {label}, {calibration or 'no'} calibration, "
            f"{'balanced' if balance else 'unbalanced'} classes; estimate = mean P"
        ),
    )


def grid(
    families: Sequence[str],
    features: Sequence[str],
    calibrations: Sequence[str | None],
    balances: Sequence[bool],
    mode: str = "topk",
) -> list[Configuration]:
    """Every bare-classifier configuration of the grid."""
    return [
        _classifier(f, fs, c, b, mode)
        for f in families
        for fs in features
        for c in calibrations
        for b in balances
    ]


def score_baselines(
    methods: Sequence[str], scores: Sequence[str], mode: str = "topk"
) -> list[Configuration]:
    """Baseline configurations: each method on each score (DoC on `DOC_SCORES` only)."""
    out = []
    for m in methods:
        if m not in BASELINE_METHODS:
            raise ConfigError(f"baseline {m!r} is unknown; use one of {list(BASELINE_METHODS)}")
        for s in scores:
            if s not in SCORES:
                raise ConfigError(f"score {s!r} is unknown; use one of {list(SCORES)}")
            if m == "doc" and s not in DOC_SCORES:
                continue
            desc = {"atc": "ATC on", "ac": "average calibrated confidence of", "doc": "DoC on"}[m]
            out.append(
                Configuration(
                    name=f"{m}.{s}",
                    kind="baseline",
                    params={"method": m, "score": s, "mode": mode},
                    description=f"{desc} {s}",
                )
            )
    return out


def resolve(names: Iterable[str]) -> list[Configuration]:
    """Configurations by name: presets, grid names (``rf.profile.isotonic.bal``) and
    baseline names (``atc.max_entropy``)."""
    out = []
    for name in names:
        if name in PRESETS:
            out += preset_configurations([name])
            continue
        parts = name.split(".")
        try:
            if len(parts) == 2:
                found = score_baselines([parts[0]], [parts[1]])
                if found:
                    out += found
                    continue
            if len(parts) == 4:
                family, feats, cal, bal = parts
                mode = "topk"
                if "@" in feats:
                    feats, mode = feats.split("@", 1)
                balance = {"bal": True, "unbal": False}[bal]
                calibration = None if cal == "uncal" else cal
                out.append(_classifier(family, feats, calibration, balance, mode))
                continue
        except (ConfigError, KeyError):
            pass
        raise ConfigError(
            f"configuration {name!r} is unknown; use a preset ({', '.join(PRESETS)}), a "
            "grid name FAMILY.FEATURES.CALIBRATION.BALANCE (e.g. rf.profile.isotonic.bal) or "
            "a baseline METHOD.SCORE (e.g. atc.max_entropy)"
        )
    return out


def select_configurations(
    *,
    presets: Sequence[str] | None = None,
    families: Sequence[str] = (),
    features: Sequence[str] = ("profile10",),
    calibrations: Sequence[str | None] = ("isotonic",),
    balances: Sequence[bool] = (True,),
    baselines: Sequence[str] = (),
    scores: Sequence[str] | None = None,
    names: Sequence[str] = (),
    mode: str = "topk",
    has_logprobs: bool = True,
) -> tuple[list[Configuration], list[str]]:
    """What ``sentinel evaluate`` runs, and notes on what it left out, in this order
    (duplicates once): the presets (None: those that can run on these traces: every one
    with logprobs, all but ``sentinel`` without), the classifier grid, the score baselines
    (on ``scores``, default the paper's nine where these traces define them) and
    configurations named explicitly.

    A score that needs logprobs on traces without them is a `ConfigError` when asked for
    by name, and left out (with a note) when it comes from the default list.
    """
    from entropy_sentinel.scores import PAPER_SCORES

    notes: list[str] = []
    if presets is None:
        presets = [n for n in PRESETS if has_logprobs or n != "sentinel"]
        if not has_logprobs:
            notes.append("preset sentinel needs logprobs (its nll_avg member): left out")
    out = preset_configurations(presets)
    out += grid(families, features, calibrations, balances, mode)
    if baselines:
        wanted = list(scores) if scores else list(PAPER_SCORES)
        usable = [s for s in wanted if has_logprobs or not SCORES[s].needs_logprobs]
        left = sorted(set(wanted) - set(usable))
        if left and scores:
            raise ConfigError(
                f"scores {left} need logprobs, which these traces lack (they carry precomputed "
                "entropies only)"
            )
        if left:
            notes.append(f"scores {left} need logprobs, which these traces lack: left out")
        out += score_baselines(baselines, usable, mode)
        if "doc" in baselines:
            notes.append("DoC runs on probability scores only (lntp, mtp)")
    out += resolve(names)
    unique = list({c.name: c for c in out}.values())
    if not unique:
        raise ConfigError("no configuration to run: give presets, a grid, baselines or names")
    return unique, notes
