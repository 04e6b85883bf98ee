"""entropy-sentinel: label-free, per-slice accuracy monitoring for LLMs from decoding entropy.

The method (arXiv 2601.09001, "Entropy Sentinel"): summarise each response's
top-k entropy trajectory into an 11-D profile, predict P(correct) with a light
calibrated classifier, and estimate a slice's accuracy as the mean P(correct).

>>> import entropy_sentinel as es
>>> batch = es.read_traces([{"id": "r1", "token_entropy": [0.2, 0.9, 0.1]}])
>>> es.entropy_profile(batch).shape
(1, 11)
"""

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
from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile, profile_from_entropy
from entropy_sentinel.scores import PAPER_SCORES, SCORES, baseline_scores, confidence_of
from entropy_sentinel.steps import ENTROPY_MODES, StepStats
from entropy_sentinel.traces import Rejection, TraceBatch, read_traces

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
