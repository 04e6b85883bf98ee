"""The public API is exactly what we mean it to be."""

from __future__ import annotations

import importlib
import pkgutil

import entropy_sentinel as es

CORE = {
    "ENTROPY_MODES",
    "FEATURE_NAMES",
    "PAPER_SCORES",
    "SCORES",
    "ArtifactError",
    "ArtifactMismatchError",
    "ConfigError",
    "EstimatorError",
    "Rejection",
    "SentinelError",
    "StepStats",
    "StorageError",
    "TraceBatch",
    "TraceError",
    "UpstreamError",
    "__version__",
    "baseline_scores",
    "confidence_of",
    "entropy_profile",
    "profile_from_entropy",
    "read_traces",
}


def test_core_names_are_public() -> None:
    assert set(es.__all__) >= CORE
    for name in es.__all__:
        assert hasattr(es, name), name


def test_every_module_declares_all_and_exports_what_it_defines() -> None:
    for info in pkgutil.walk_packages(es.__path__, "entropy_sentinel."):
        if info.name.endswith("__main__") or ".migrations" in info.name:
            continue  # Alembic migration scripts are loaded by Alembic, not imported as API
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.__all__ lists missing {name}"


def test_errors_share_one_root() -> None:
    for name in (
        "TraceError",
        "ConfigError",
        "ArtifactError",
        "ArtifactMismatchError",
        "EstimatorError",
        "UpstreamError",
        "StorageError",
    ):
        assert issubclass(getattr(es, name), es.SentinelError)
    assert issubclass(es.TraceError, ValueError)
    assert issubclass(es.ArtifactMismatchError, es.ArtifactError)
