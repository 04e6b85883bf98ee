"""Correctness estimators, their artifacts, and per-slice accuracy with intervals.

* `CorrectnessEstimator`: calibrated P(correct) from entropy features (`model`),
  optionally blended with score baselines (`blend`); named configurations `preset`
  (`presets`: ``sentinel``, the default of ``sentinel fit``, and the paper's).
* feature sets and trace signatures (`features`); families and grids (`grids`);
  calibration maps and metrics (`calibration`).
* artifacts: `save_estimator` / `load_estimator` / `read_card` (`artifact`),
  the Markdown model card and reliability diagram (`card`).
* `estimate_accuracy` -> `SliceAccuracy` of `SliceRecord` (`slices`).
* baselines `AverageConfidence`, `ATC`, `DoC` (`baselines`); the label-corrected
  estimate `label_corrected_accuracy` (`ppi`).
* shift-robust slice estimators `SliceEnsemble`, `ClassifierATC`,
  `QuantificationAdjusted`, `ImportanceWeighted`, `DomainHoldoutCalibrated` (`shift`).
"""

from entropy_sentinel.estimator.artifact import load_estimator, read_card, save_estimator
from entropy_sentinel.estimator.baselines import ATC, AverageConfidence, DoC
from entropy_sentinel.estimator.features import (
    BASELINE_FEATURES,
    FEATURE_SETS,
    TraceSignature,
    feature_names,
    featurize,
    trace_signature,
)
from entropy_sentinel.estimator.grids import FAMILIES, PAPER_GRIDS
from entropy_sentinel.estimator.model import CorrectnessEstimator
from entropy_sentinel.estimator.ppi import label_corrected_accuracy
from entropy_sentinel.estimator.presets import DEFAULT_PRESET, PRESETS, preset
from entropy_sentinel.estimator.shift import (
    ClassifierATC,
    DomainHoldoutCalibrated,
    ImportanceWeighted,
    QuantificationAdjusted,
    SliceEnsemble,
)
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
    "ClassifierATC",
    "CorrectnessEstimator",
    "DoC",
    "DomainHoldoutCalibrated",
    "ImportanceWeighted",
    "QuantificationAdjusted",
    "SliceAccuracy",
    "SliceEnsemble",
    "SliceRecord",
    "TraceSignature",
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
