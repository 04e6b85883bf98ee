"""Named estimator configurations: ours (the default of ``sentinel fit``) and the paper's.

Each preset is a `SentinelEstimator` around a per-response `CorrectnessEstimator`:

====================  =========================================================================
``sentinel``          the classifier family chosen by cross-validated AUROC among L1 logistic
                      regression, random forest and gradient boosting (`grids.AUTO_FAMILIES`),
                      isotonic-calibrated, balanced, on the 11-D profile; for responses of
                      slices unseen in training blended with ATC on max entropy and isotonic
                      average confidence of ``nll_avg`` (needs logprobs); a calibration
                      offset per training slice value; transfer error in the intervals
``sentinel-entropy``  the same without the ``nll_avg`` member, for traces that carry only
                      per-token entropies
``paper``             arXiv 2601.09001's estimate: random forest (the paper's grid), isotonic,
                      balanced, the 10-D profile without SEA, the mean P per slice; no slice
                      calibration, and (beyond the paper) intervals with its own transfer
                      relation
====================  =========================================================================

Measured results of each: docs/results/README.md.

>>> preset("paper").classifier.get_params()["features"], preset("sentinel").classifier.blend
('profile10', ('atc:max_entropy', 'ac:nll_avg'))
>>> custom = preset("sentinel", family="lr", slice_dim="topic")
>>> custom.classifier.family, custom.slice_dim
('lr', 'topic')
"""

from __future__ import annotations

from typing import Any

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.estimator.sentinel import SentinelEstimator
from entropy_sentinel.traces.batch import TraceBatch

__all__ = ["DEFAULT_PRESET", "PRESETS", "choose_preset", "classifier_of", "preset"]

_PAPER: dict[str, Any] = {
    "family": "rf",
    "calibration": "isotonic",
    "balance": True,
    "features": "profile10",
    "blend": (),
}
PRESETS: dict[str, dict[str, Any]] = {
    "sentinel": {
        "classifier": {
            **_PAPER,
            "family": "auto",
            "features": "profile",
            "blend": ("atc:max_entropy", "ac:nll_avg"),
        },
        "estimator": {"calibrate": True, "transfer": "sentinel"},
    },
    "sentinel-entropy": {
        "classifier": {
            **_PAPER,
            "family": "auto",
            "features": "profile",
            "blend": ("atc:max_entropy",),
        },
        "estimator": {"calibrate": True, "transfer": "sentinel-entropy"},
    },
    "paper": {
        "classifier": _PAPER,
        "estimator": {"calibrate": False, "transfer": "paper"},
    },
}
"""Parameters of each named configuration: its classifier's and its slice estimator's."""

DEFAULT_PRESET = "sentinel"

_ESTIMATOR_PARAMS = frozenset(SentinelEstimator().get_params(deep=False)) - {"classifier"}


def _check(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is unknown; use one of {list(PRESETS)}")
    return PRESETS[name]


def classifier_of(name: str = DEFAULT_PRESET, **overrides: Any) -> CorrectnessEstimator:
    """The per-response `CorrectnessEstimator` of preset ``name``, with ``overrides``."""
    return CorrectnessEstimator(**{**_check(name)["classifier"], **overrides})


def preset(name: str = DEFAULT_PRESET, **overrides: Any) -> SentinelEstimator:
    """A `SentinelEstimator` with the parameters of preset ``name``, then ``overrides``
    (those of `SentinelEstimator`, e.g. ``slice_dim``, go to it; the others, e.g.
    ``family`` or ``random_state``, to its classifier)."""
    spec = _check(name)
    outer = {k: v for k, v in overrides.items() if k in _ESTIMATOR_PARAMS}
    inner = {k: v for k, v in overrides.items() if k not in _ESTIMATOR_PARAMS}
    return SentinelEstimator(
        classifier=classifier_of(name, **inner), **{**spec["estimator"], **outer}
    )


def choose_preset(batch: TraceBatch) -> str:
    """The preset for these training traces: ``sentinel`` when every trace carries logprobs
    (its ``nll_avg`` member needs them), else ``sentinel-entropy``."""
    return DEFAULT_PRESET if len(batch) and batch.has_logprobs.all() else "sentinel-entropy"
