"""Correctness estimators, their artifacts, and per-slice accuracy with intervals.

Every slice estimator has one shape (`interface.SliceEstimator`): fitted on labelled
reference traces (``fit_traces``), it estimates analysis traces (``estimate``) into a
`SliceAccuracy` of `SliceRecord` (`slices`).

* `SentinelEstimator` (`sentinel`): the product's slice estimator; named configurations
  `preset` (`presets`: ``sentinel``, the default of ``sentinel fit``, and ``paper``).
* `CorrectnessEstimator` (`model`): calibrated P(correct) per response from entropy
  features, optionally blended with score baselines (`blend`); feature sets and trace
  signatures (`features`); families and grids (`grids`); calibration maps (`calibration`).
* what its intervals are made of: slice calibration (`slicecal`), the shift score
  (`shiftscore`), transfer error (`transfer`), the interval arithmetic with and without
  labels (`intervals`); which responses to label (`design`).
* baselines `AverageConfidence`, `ATC`, `DoC` and `ScoreBaseline` (`baselines`); the
  label-corrected estimate of one slice `label_corrected_accuracy` (`ppi`).
* artifacts: `save_estimator` / `load_estimator` / `read_card` (`artifact`), the Markdown
  model card and reliability diagram (`card`).
"""

from entropy_sentinel.estimator.artifact import load_estimator, read_card, save_estimator
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence, DoC, ScoreBaseline
from entropy_sentinel.estimator.features import (
    BASELINE_FEATURES,
    FEATURE_SETS,
    TraceSignature,
    feature_names,
    featurize,
    trace_signature,
)
from entropy_sentinel.estimator.grids import FAMILIES, PAPER_GRIDS
from entropy_sentinel.estimator.interface import SliceEstimator
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.estimator.ppi import label_corrected_accuracy
from entropy_sentinel.estimator.presets import (
    DEFAULT_PRESET,
    PRESETS,
    choose_preset,
    classifier_of,
    preset,
)
from entropy_sentinel.estimator.sentinel import SentinelEstimator, TraceScores
from entropy_sentinel.estimator.slices import (
    SliceAccuracy,
    SliceRecord,
    estimate_accuracy,
    slice_accuracy,
)

__all__ = [
    "ATC",
    "BASELINE_FEATURES",
    "DEFAULT_PRESET",
    "FAMILIES",
    "FEATURE_SETS",
    "PAPER_GRIDS",
    "PRESETS",
    "AverageConfidence",
    "CorrectnessEstimator",
    "DoC",
    "ScoreBaseline",
    "SentinelEstimator",
    "SliceAccuracy",
    "SliceEstimator",
    "SliceRecord",
    "TraceScores",
    "TraceSignature",
    "choose_preset",
    "classifier_of",
    "estimate_accuracy",
    "feature_names",
    "featurize",
    "label_corrected_accuracy",
    "load_estimator",
    "preset",
    "read_card",
    "save_estimator",
    "slice_accuracy",
    "trace_signature",
]
