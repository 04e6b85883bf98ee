"""Alert rules, and the pure decision of whether a slice's evidence breaks one.

Two kinds of rule, each evaluated per value of one slice dimension over the most
recent ``window`` seconds (bucket-aligned):

* ``below``: the slice's estimated accuracy (or, with ``bound = "upper"``, the upper
  end of its interval, so the alert fires only when the slice is *confidently* below)
  is under ``threshold``.
* ``drop``: the estimate fell by at least ``min_drop`` against the ``reference``
  seconds just before the current window, and the fall is significant: at least
  ``z`` standard errors of the difference. The standard error is the
  Poisson-binomial sampling error of both windows in quadrature; the estimator's own
  error (``model_sd``) is left out because the same estimator scores both windows,
  so its bias largely cancels in a difference.

A slice with fewer than ``min_count`` traces in the current window (or, for ``drop``,
in the reference window) gives no verdict: an open alert stays open and a quiet slice
stays quiet until there is enough evidence either way.

>>> rule = AlertRule.from_mapping({"name": "low", "kind": "below", "dimension": "domain",
...                                "threshold": 0.7, "window": "1h", "min_count": 2})
>>> judge(rule, SliceStats.from_arrays([0.5, 0.6, 0.55]), None, model_sd=0.0).firing
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from entropy_sentinel.aggregate import SliceStats
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.timeutil import format_duration, parse_duration

__all__ = ["AlertRule", "Verdict", "judge"]

RuleKind = Literal["below", "drop"]
_KINDS = ("below", "drop")
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
        kind: ``"below"`` or ``"drop"``.
        dimension: the slice dimension evaluated (``"domain"``), or ``"*"`` for all traffic.
        window: length of the current window, seconds.
        min_count: traces needed in a window for a verdict.
        threshold: ``below`` only: accuracy (fraction) under which the rule fires.
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


def judge(
    rule: AlertRule, current: SliceStats, reference: SliceStats | None, *, model_sd: float
) -> Verdict:
    """Apply ``rule`` to one slice's current (and reference) window statistics."""
    cur = current.interval(rule.level, model_sd)
    evidence: dict[str, Any] = {
        "n": current.n,
        "estimate": _num(cur.estimate),
        "lower": _num(cur.lower),
        "upper": _num(cur.upper),
        "level": rule.level,
    }
    if current.n < rule.min_count:
        return Verdict(None, evidence)
    if rule.kind == "below":
        assert rule.threshold is not None
        value = cur.upper if rule.bound == "upper" else cur.estimate
        evidence["threshold"] = rule.threshold
        return Verdict(value < rule.threshold, evidence)
    ref = reference if reference is not None else SliceStats()
    evidence["reference_n"] = ref.n
    if ref.n < rule.min_count:
        return Verdict(None, evidence)
    drop = ref.estimate - current.estimate
    se = math.hypot(current.sampling_sd, ref.sampling_sd)
    z = drop / se if se > 0 else (math.inf if drop > 0 else 0.0)
    evidence.update(
        reference_estimate=_num(ref.estimate),
        drop=_num(drop),
        drop_z=_num(z),
        min_drop=rule.min_drop,
        z_threshold=rule.z,
    )
    return Verdict(drop >= rule.min_drop and z >= rule.z, evidence)


def _num(x: float) -> float | None:
    """JSON-safe float: NaN and infinities become None."""
    return x if math.isfinite(x) else None
