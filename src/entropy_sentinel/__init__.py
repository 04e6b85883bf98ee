"""entropy-sentinel: label-free, per-slice accuracy monitoring for LLMs from decoding entropy.

The method (arXiv 2601.09001, "Entropy Sentinel"): summarise each response's
top-k entropy trajectory into an 11-D profile, predict P(correct) with a light
calibrated classifier, and estimate a slice's accuracy as the mean P(correct).

>>> import entropy_sentinel as es
>>> batch = es.read_traces([{"id": "r1", "token_entropy": [0.2, 0.9, 0.1]}])
>>> es.entropy_profile(batch).shape
(1, 11)
"""

from typing import TYPE_CHECKING, Any

from entropy_sentinel.errors import (
    ArtifactError,
    ArtifactMismatchError,
    ConfigError,
    EstimatorError,
    SentinelError,
    StorageError,
    TraceError,
    UpstreamError,
)
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile, profile_from_entropy
from entropy_sentinel.scores import PAPER_SCORES, SCORES, baseline_scores, confidence_of
from entropy_sentinel.steps import ENTROPY_MODES, StepStats
from entropy_sentinel.traces import Rejection, TraceBatch, read_traces

if TYPE_CHECKING:
    from entropy_sentinel.estimator import (
        ATC,
        FEATURE_SETS,
        AverageConfidence,
        CorrectnessEstimator,
        DoC,
        SliceAccuracy,
        SliceRecord,
        estimate_accuracy,
        label_corrected_accuracy,
        read_card,
    )

# The estimator layer needs scikit-learn, SciPy and pandas: it loads on first use, so that
# reading traces and computing features stays a numpy + msgspec import.
_LAZY = dict.fromkeys(
    (
        "ATC",
        "FEATURE_SETS",
        "AverageConfidence",
        "CorrectnessEstimator",
        "DoC",
        "SliceAccuracy",
        "SliceRecord",
        "estimate_accuracy",
        "label_corrected_accuracy",
        "read_card",
    ),
    "entropy_sentinel.estimator",
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "ATC",
    "ENTROPY_MODES",
    "FEATURE_NAMES",
    "FEATURE_SETS",
    "PAPER_SCORES",
    "SCORES",
    "ArtifactError",
    "ArtifactMismatchError",
    "AverageConfidence",
    "ConfigError",
    "CorrectnessEstimator",
    "DoC",
    "EstimatorError",
    "Rejection",
    "SentinelError",
    "SliceAccuracy",
    "SliceRecord",
    "StepStats",
    "StorageError",
    "TraceBatch",
    "TraceError",
    "UpstreamError",
    "__version__",
    "baseline_scores",
    "confidence_of",
    "entropy_profile",
    "estimate_accuracy",
    "label_corrected_accuracy",
    "profile_from_entropy",
    "read_card",
    "read_traces",
]
