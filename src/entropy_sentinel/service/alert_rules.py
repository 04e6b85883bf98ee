"""Alert rules, and the pure decision of whether a slice's evidence breaks one.

Three kinds of rule, each evaluated per value of one slice dimension over the most
recent ``window`` seconds (bucket-aligned), on the numbers of the model's estimator
(`entropy_sentinel.service.slice_numbers.finish_slice`):

* ``below``: the slice's estimated accuracy (or, with ``bound = "upper"``, the upper
  end of its interval, so the alert fires only when the slice is *confidently* below)
  is under ``threshold``. The slice's best numbers are judged: the label-corrected
  estimate and interval when the window holds labels of the slice, else the label-free
  ones (``evidence.basis`` says which). An unseen slice's label-free interval is wide
  (transfer error), so a ``bound = "upper"`` rule rarely fires on it until labels come:
  the ``shift`` rule is the alert for that.
* ``drop``: the label-free estimate fell by at least ``min_drop`` against the
  ``reference`` seconds just before the current window, and the fall is significant:
  at least ``z`` standard errors of the difference. The standard error is the
  Poisson-binomial sampling error of both windows in quadrature; the estimator's own
  error (calibration and transfer) is left out because the same estimator scores both
  windows, so its bias largely cancels in a difference.
* ``shift``: the slice looks unlike the training data: the shift score of its responses
  without calibration (0.5: like the training traces, 1: nothing alike;
  `entropy_sentinel.estimator.shiftscore`) is at least ``threshold`` (e.g. 0.75, where
  the shift word becomes "unlike the training data: label some"). Its estimates then
  rest on the transfer relation alone: label some of it.

A slice with fewer than ``min_count`` traces in the current window (or, for ``drop``,
in the reference window; for ``shift``, responses without calibration) gives no
verdict: an open alert stays open and a quiet slice stays quiet until there is enough
evidence either way. So does a ``shift`` rule while the slice's shift is unknown.
Every verdict's evidence carries the slice's shift, shift word and unseen fraction.

>>> from entropy_sentinel.aggregate import SliceStats
>>> from entropy_sentinel.estimator.intervals import finish
>>> rule = AlertRule.from_mapping({"name": "low", "kind": "below", "dimension": "domain",
...                                "threshold": 0.7, "window": "1h", "min_count": 2})
>>> judge(rule, finish(SliceStats.from_arrays([0.5, 0.6, 0.55])), None).firing
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.intervals import SliceInterval
from entropy_sentinel.estimator.slices import word_of
from entropy_sentinel.timeutil import format_duration, parse_duration

__all__ = ["AlertRule", "Verdict", "judge"]

RuleKind = Literal["below", "drop", "shift"]
_KINDS = ("below", "drop", "shift")
_BOUNDS = ("estimate", "upper")
_FIELDS = {
    "name",
    "kind",
    "dimension",
    "window",
    "min_count",
    "threshold",
    "bound",
    "reference",
    "min_drop",
    "z",
    "level",
}


@dataclass(frozen=True)
class AlertRule:
    """One alert rule (see the module docstring). Durations are in seconds.

    Attributes:
        name: unique rule name, used in alerts, logs and the webhook payload.
        kind: ``"below"``, ``"drop"`` or ``"shift"``.
        dimension: the slice dimension evaluated (``"domain"``), or ``"*"`` for all traffic.
        window: length of the current window, seconds.
        min_count: traces needed in a window for a verdict.
        threshold: ``below``: accuracy (fraction) under which the rule fires; ``shift``:
            the shift score (in (0.5, 1)) at or above which it fires.
        bound: ``below`` only: compare the ``"estimate"`` or the interval's ``"upper"`` end.
        reference: ``drop`` only: length of the reference window just before the current one.
        min_drop: ``drop`` only: smallest fall in estimated accuracy (fraction) that fires.
        z: ``drop`` only: smallest fall in standard errors of the difference that fires.
        level: interval level for the evidence and for ``bound = "upper"``.
    """

    name: str
    kind: RuleKind
    dimension: str
    window: int
    min_count: int = 30
    threshold: float | None = None
    bound: Literal["estimate", "upper"] = "estimate"
    reference: int | None = None
    min_drop: float = 0.05
    z: float = 3.0
    level: float = 0.95

    def __post_init__(self) -> None:
        who = f"alert rule {self.name!r}"
        if not self.name:
            raise ConfigError("an alert rule needs a non-empty `name`")
        if self.kind not in _KINDS:
            raise ConfigError(f"{who}: kind {self.kind!r} is unknown; use one of {list(_KINDS)}")
        if not self.dimension:
            raise ConfigError(f"{who}: `dimension` must name a slice dimension, or '*' for all")
        if self.min_count < 1:
            raise ConfigError(f"{who}: min_count={self.min_count!r} must be >= 1")
        if self.bound not in _BOUNDS:
            raise ConfigError(f"{who}: bound {self.bound!r} is unknown; use one of {list(_BOUNDS)}")
        if not 0.0 < self.level < 1.0:
            raise ConfigError(f"{who}: level={self.level!r} must be in (0, 1), e.g. 0.95")
        if self.kind == "below":
            if self.threshold is None or not 0.0 < self.threshold <= 1.0:
                raise ConfigError(
                    f"{who}: a `below` rule needs threshold in (0, 1], e.g. 0.7, "
                    f"got {self.threshold!r}"
                )
        elif self.kind == "shift":
            if self.threshold is None or not 0.5 < self.threshold < 1.0:
                raise ConfigError(
                    f"{who}: a `shift` rule needs threshold, a shift score in (0.5, 1), "
                    f"e.g. 0.75, got {self.threshold!r}"
                )
        else:
            if self.reference is None:
                raise ConfigError(f"{who}: a `drop` rule needs `reference`, e.g. '24h'")
            if not 0.0 <= self.min_drop < 1.0:
                raise ConfigError(f"{who}: min_drop={self.min_drop!r} must be in [0, 1)")
            if not (math.isfinite(self.z) and self.z >= 0.0):
                raise ConfigError(f"{who}: z={self.z!r} must be finite and >= 0")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> AlertRule:
        """A rule from a config table; durations may be text (``"1h"``) or seconds."""
        unknown = set(raw) - _FIELDS
        name = raw.get("name", "")
        if unknown:
            raise ConfigError(
                f"alert rule {name!r}: unknown keys {sorted(unknown)}; valid keys are "
                f"{sorted(_FIELDS)}"
            )
        for key in ("name", "kind", "dimension", "window"):
            if key not in raw:
                raise ConfigError(f"alert rule {name!r}: `{key}` is required")
        values = dict(raw)
        values["window"] = parse_duration(raw["window"], what=f"alert rule {name!r} window")
        if raw.get("reference") is not None:
            values["reference"] = parse_duration(
                raw["reference"], what=f"alert rule {name!r} reference"
            )
        try:
            return cls(**values)
        except TypeError as exc:  # a value of the wrong type
            raise ConfigError(f"alert rule {name!r}: {exc}") from None

    def describe(self) -> str:
        """One line for logs: ``low-accuracy: domain estimate < 0.7 over 1h (n >= 30)``."""
        dim = "all traffic" if self.dimension == "*" else self.dimension
        if self.kind == "below":
            what = f"{self.bound} < {self.threshold}"
        elif self.kind == "shift":
            what = f"shift >= {self.threshold} (unlike the training data)"
        else:
            assert self.reference is not None
            what = (
                f"drop >= {self.min_drop} and >= {self.z} SE "
                f"vs the previous {format_duration(self.reference)}"
            )
        return (
            f"{self.name}: {dim} {what} over {format_duration(self.window)} (n >= {self.min_count})"
        )


@dataclass(frozen=True)
class Verdict:
    """The decision for one slice: ``firing`` is None when the evidence is too thin."""

    firing: bool | None
    evidence: dict[str, Any]


def judge(rule: AlertRule, current: SliceInterval, reference: SliceInterval | None) -> Verdict:
    """Apply ``rule`` to one slice's numbers in the current (and reference) window."""
    labelled = current.labels is not None and math.isfinite(current.ppi_estimate)
    evidence: dict[str, Any] = {
        "n": current.n,
        "estimate": _num(current.estimate),
        "lower": _num(current.lower),
        "upper": _num(current.upper),
        "level": rule.level,
        "shift": _num(current.shift),
        "shift_word": word_of(current),
        "unseen_fraction": _num(current.unseen_fraction),
        "n_labelled": 0 if current.labels is None else current.labels.n_labels,
        "label_corrected": {
            "estimate": _num(current.ppi_estimate),
            "lower": _num(current.ppi_lower),
            "upper": _num(current.ppi_upper),
        }
        if labelled
        else None,
    }
    if current.n < rule.min_count:
        return Verdict(None, evidence)
    if rule.kind == "below":
        assert rule.threshold is not None
        est, upper = current.estimate, current.upper
        if labelled:
            est, upper = current.ppi_estimate, current.ppi_upper
        value = upper if rule.bound == "upper" else est
        evidence.update(
            threshold=rule.threshold, basis="label-corrected" if labelled else "label-free"
        )
        return Verdict(value < rule.threshold, evidence)
    if rule.kind == "shift":
        assert rule.threshold is not None
        unseen = round(current.unseen_fraction * current.n) if current.n else 0
        evidence.update(threshold=rule.threshold, n_unseen=unseen)
        if unseen == 0:
            return Verdict(False, evidence)
        if unseen < rule.min_count or not math.isfinite(current.shift):
            return Verdict(None, evidence)
        return Verdict(current.shift >= rule.threshold, evidence)
    ref_n = 0 if reference is None else reference.n
    evidence["reference_n"] = ref_n
    if reference is None or ref_n < rule.min_count:
        return Verdict(None, evidence)
    drop = reference.estimate - current.estimate
    se = math.hypot(current.sampling_sd, reference.sampling_sd)
    z = drop / se if se > 0 else (math.inf if drop > 0 else 0.0)
    evidence.update(
        reference_estimate=_num(reference.estimate),
        drop=_num(drop),
        drop_z=_num(z),
        min_drop=rule.min_drop,
        z_threshold=rule.z,
    )
    return Verdict(drop >= rule.min_drop and z >= rule.z, evidence)


def _num(x: float) -> float | None:
    """JSON-safe float: NaN and infinities become None."""
    return x if math.isfinite(x) else None
