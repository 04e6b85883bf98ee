"""Configurations the harness compares, by name.

A `Configuration` is a named recipe: which input columns it reads (`InputSpec`)
and how to build a fresh `SliceMethod` from them. Three kinds:

* ``classifier``: a `CorrectnessEstimator` (family, calibration, balancing) over a
  feature set; grid names read ``FAMILY.FEATURES.CALIBRATION.BALANCE``, e.g.
  ``rf.profile10.isotonic.bal`` (``uncal`` / ``unbal`` for none);
* ``baseline``: ``atc.SCORE``, ``ac.SCORE`` (isotonic-calibrated score) and
  ``doc.SCORE`` (raw probability scores only: `DOC_SCORES`);
* ``shift``: an estimator of `entropy_sentinel.estimator.shift`.

Named presets (`PRESETS`) include the paper's configuration, ``paper_rf``
(random forest, isotonic-calibrated, balanced, 10-D profile without SEA); a grid
configuration with the same recipe takes the preset's name, so it runs once.

>>> PRESETS["paper_rf"].name, PRESETS["paper_rf"].inputs.label
('paper_rf', 'profile10')
>>> [c.name for c in grid(["lr"], ["sea"], ["isotonic"], [True])]
['lr.sea.isotonic.bal']
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
from entropy_sentinel.estimator.calibration import check_calibration
from entropy_sentinel.estimator.grids import check_family
from entropy_sentinel.estimator.shift import (
    ClassifierATC,
    DomainHoldoutCalibrated,
    ImportanceWeighted,
    QuantificationAdjusted,
    SliceEnsemble,
)
from entropy_sentinel.evaluation.data import InputSpec
from entropy_sentinel.evaluation.methods import (
    BASELINES,
    ClassifierMethod,
    FitMemo,
    ScoreBaselineMethod,
    SliceEstimatorMethod,
    SliceMethod,
)

__all__ = [
    "DOC_SCORES",
    "PRESETS",
    "SHIFT_ESTIMATORS",
    "Configuration",
    "grid",
    "resolve",
    "score_baselines",
]

Kind = Literal["classifier", "baseline", "shift"]

DOC_SCORES: tuple[str, ...] = ("lntp", "mtp")
"""Scores that are probabilities in [0, 1], the only ones DoC takes raw."""

SHIFT_ESTIMATORS: Mapping[str, type] = {
    "ensemble": SliceEnsemble,
    "classifier_atc": ClassifierATC,
    "quantification": QuantificationAdjusted,
    "importance": ImportanceWeighted,
    "domain_holdout": DomainHoldoutCalibrated,
}
"""Estimator classes of the ``shift`` kind, by the ``estimator`` parameter."""


@dataclass(frozen=True)
class Configuration:
    """A named way of estimating slice accuracy (see the module docstring).

    Attributes:
        name: unique, file-name safe.
        kind: ``classifier``, ``baseline`` or ``shift``.
        inputs: the input columns.
        params: parameters of the method (JSON-compatible values).
        description: one line for reports.
    """

    name: str
    kind: Kind
    inputs: InputSpec
    params: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in '/\\:*?"<>| '):
            raise ConfigError(
                f"configuration name {self.name!r} must be non-empty and file-name safe "
                "(letters, digits, '.', '_', '-', '+', '@')"
            )
        if self.kind not in ("classifier", "baseline", "shift"):
            raise ConfigError(f"configuration kind {self.kind!r} is unknown")

    def spec(self) -> dict[str, Any]:
        """The recipe without the name (JSON-compatible): two configurations with the same
        spec compute the same thing."""
        return {"kind": self.kind, "inputs": self.inputs.to_dict(), "params": dict(self.params)}

    def spec_hash(self) -> str:
        """SHA-256 (hex, 16 chars) of `spec`."""
        text = json.dumps(self.spec(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build(self, seed: int, memo: FitMemo | None = None) -> SliceMethod:
        """A fresh, unfitted method (``seed`` seeds its folds and models; ``memo`` shares
        classifier fits between the configurations of one training group)."""
        p = dict(self.params)
        if self.kind == "baseline":
            return ScoreBaselineMethod(p["method"], self.inputs.scores[0])
        clf = {name: p.pop(name) for name in ("family", "calibration", "balance")}
        if self.kind == "classifier":
            return ClassifierMethod(clf, seed, memo)
        cls = SHIFT_ESTIMATORS[p.pop("estimator")]
        return SliceEstimatorMethod(cls, p, clf, seed, memo)

    # Report helpers: the attributes each summary groups by.
    @property
    def family(self) -> str | None:
        return self.params.get("family")

    @property
    def method(self) -> str:
        """``classifier``, the baseline (``atc``...) or the shift estimator's name."""
        if self.kind == "baseline":
            return str(self.params["method"])
        if self.kind == "shift":
            return str(self.params["estimator"])
        return "classifier"


def _classifier(
    family: str, inputs: InputSpec, calibration: str | None, balance: bool
) -> Configuration:
    check_family(family)
    check_calibration(calibration)
    name = ".".join([family, inputs.label, calibration or "uncal", "bal" if balance else "unbal"])
    return Configuration(
        name=name,
        kind="classifier",
        inputs=inputs,
        params={"family": family, "calibration": calibration, "balance": balance},
        description=(
            f"{family} on {inputs.label}, {calibration or 'no'} calibration, "
            f"{'balanced' if balance else 'unbalanced'} classes"
        ),
    )


def _shift(
    name: str, estimator: str, inputs: InputSpec, description: str, **params: Any
) -> Configuration:
    base = {"family": "rf", "calibration": "isotonic", "balance": True}
    return Configuration(
        name=name,
        kind="shift",
        inputs=inputs,
        params={"estimator": estimator, **base, **params},
        description=description,
    )


_P10 = InputSpec("profile10")


def _paper(name: str, inputs: InputSpec, description: str) -> Configuration:
    c = _classifier("rf", inputs, "isotonic", True)
    return Configuration(name, c.kind, c.inputs, c.params, description)


PRESETS: Mapping[str, Configuration] = {
    c.name: c
    for c in (
        _paper(
            "paper_rf",
            _P10,
            "the paper's configuration: random forest, isotonic-calibrated, balanced, 10-D "
            "profile (no SEA); estimate = mean P(correct)",
        ),
        _paper(
            "paper_rf_tail",
            InputSpec("profile10", mode="topk_tail"),
            "paper_rf with entropies in topk_tail mode (leftover mass as one more outcome)",
        ),
        _paper(
            "paper_rf_len",
            InputSpec("profile10", ("length", "tail_mass")),
            "paper_rf plus response length and mean leftover mass outside the top-k",
        ),
        _shift(
            "blend_rf",
            "ensemble",
            _P10,
            "mean of paper_rf's estimate and ATC on max entropy (h_max), equal weights",
            members=["classifier", "atc:0:uncertainty"],
        ),
        _shift(
            "blend_rf_plus",
            "ensemble",
            InputSpec("profile+baselines"),
            "blend_rf with the classifier on the profile plus the logprob baseline scores",
            members=["classifier", "atc:0:uncertainty"],
        ),
        _shift(
            "ens_rf_nll",
            "ensemble",
            InputSpec("profile10", ("nll_avg",)),
            "mean of paper_rf's estimate, ATC on max entropy and average calibrated "
            "confidence of nll_avg, equal weights",
            members=["classifier", "atc:0:uncertainty", "ac:10:uncertainty"],
            classifier_columns=10,
        ),
        _shift(
            "atc_clf_rf",
            "classifier_atc",
            _P10,
            "ATC with paper_rf's P(correct) as the score (threshold on out-of-fold P)",
        ),
        _shift(
            "pacc_rf",
            "quantification",
            _P10,
            "paper_rf's mean P adjusted for base-rate shift (PACC)",
            method="pacc",
        ),
        _shift(
            "emq_rf",
            "quantification",
            _P10,
            "paper_rf's posteriors re-weighted to the slice's prior by EM (Saerens et al.)",
            method="emq",
        ),
        _shift(
            "iw_rf",
            "importance",
            _P10,
            "paper_rf plus a doubly robust correction with domain-classifier importance weights",
        ),
        _shift(
            "ldo_rf",
            "domain_holdout",
            _P10,
            "random forest calibrated on leave-one-domain-out scores",
        ),
    )
}
"""Named configurations: the paper's, and the shift-robust candidates."""


def _alias(config: Configuration) -> Configuration:
    """The preset with the same recipe, if any (so it runs once, under one name)."""
    for preset in PRESETS.values():
        if preset.spec() == config.spec():
            return preset
    return config


def grid(
    families: Sequence[str],
    features: Sequence[str],
    calibrations: Sequence[str | None],
    balances: Sequence[bool],
    mode: str = "topk",
) -> list[Configuration]:
    """Every classifier configuration of the product (presets keep their names)."""
    return [
        _alias(_classifier(f, InputSpec(fs, mode=mode), c, b))
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
        if m not in BASELINES:
            raise ConfigError(f"baseline {m!r} is unknown; use one of {list(BASELINES)}")
        for s in scores:
            if m == "doc" and s not in DOC_SCORES:
                continue
            desc = {"atc": "ATC on", "ac": "average calibrated confidence of", "doc": "DoC on"}[m]
            out.append(
                Configuration(
                    name=f"{m}.{s}",
                    kind="baseline",
                    inputs=InputSpec(scores=(s,), mode=mode),
                    params={"method": m},
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
            out.append(PRESETS[name])
            continue
        parts = name.split(".")
        try:
            if len(parts) == 2:
                found = score_baselines([parts[0]], [parts[1]])
                if found:
                    out.extend(found)
                    continue
            if len(parts) == 4:
                family, feats, cal, bal = parts
                mode = "topk"
                if "@" in feats:
                    feats, mode = feats.split("@", 1)
                out.append(
                    _alias(
                        _classifier(
                            family,
                            InputSpec(feats, mode=mode),
                            None if cal == "uncal" else cal,
                            {"bal": True, "unbal": False}[bal],
                        )
                    )
                )
                continue
        except (ConfigError, KeyError):
            pass
        raise ConfigError(
            f"configuration {name!r} is unknown; use a preset ({', '.join(PRESETS)}), a "
            "grid name FAMILY.FEATURES.CALIBRATION.BALANCE (e.g. rf.profile.isotonic.bal) or "
            "a baseline METHOD.SCORE (e.g. atc.max_entropy)"
        )
    return out
