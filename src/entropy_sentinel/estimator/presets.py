"""Named estimator configurations: ours (the default of ``sentinel fit``) and the paper's.

==============  ===================================================================
``sentinel``    the paper's configuration blended with ATC on max entropy and
                isotonic average confidence of ``nll_avg`` (needs logprobs): median
                AEE 0.116 against 0.141 for ``paper`` and 0.148 for ATC on max entropy
                over every training pair of the SmolLM2 corpus, with a higher median
                Spearman rho (docs/results/README.md)
``sentinel-entropy``  the same without the ``nll_avg`` member, for traces that carry
                only per-token entropies (median AEE 0.123 there)
``paper``       arXiv 2601.09001's: random forest (the paper's grid), isotonic
                calibration, balanced classes, the 10-D profile without SEA
==============  ===================================================================

>>> preset("paper").get_params()["features"], preset("sentinel").blend
('profile10', ('atc:max_entropy', 'ac:nll_avg'))
>>> preset("sentinel", family="lr").family
'lr'
"""

from __future__ import annotations

from typing import Any

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.estimator.model import CorrectnessEstimator

__all__ = ["DEFAULT_PRESET", "PRESETS", "preset"]

_PAPER: dict[str, Any] = {
    "family": "rf",
    "calibration": "isotonic",
    "balance": True,
    "features": "profile10",
    "blend": (),
}
PRESETS: dict[str, dict[str, Any]] = {
    "sentinel": {**_PAPER, "blend": ("atc:max_entropy", "ac:nll_avg")},
    "sentinel-entropy": {**_PAPER, "blend": ("atc:max_entropy",)},
    "paper": _PAPER,
}
"""Parameters of each named configuration."""

DEFAULT_PRESET = "sentinel"


def preset(name: str = DEFAULT_PRESET, **overrides: Any) -> CorrectnessEstimator:
    """A `CorrectnessEstimator` with the parameters of preset ``name``, then ``overrides``."""
    if name not in PRESETS:
        raise ConfigError(f"preset {name!r} is unknown; use one of {list(PRESETS)}")
    return CorrectnessEstimator(**{**PRESETS[name], **overrides})
