"""Versioned, pickle-free artifacts of a fitted `CorrectnessEstimator`.

An artifact is one zip file holding two members:

* ``artifact.json``: ``{"format": "entropy-sentinel/correctness-estimator",
  "format_version": 1, "saved_at": ISO-8601 UTC, "card": {...}}``, the model card
  (feature set and names, entropy mode, k, training slices and their sizes,
  library versions, cross-validated AUROC, Brier score, calibration error,
  ``model_sd``), readable without loading the model (`read_card`);
* ``model.skops``: the estimator in the skops format, which rebuilds objects
  from a declarative schema instead of running pickle. Loading refuses any type
  outside skops' trusted set (scikit-learn, numpy, scipy, builtins) and
  `TRUSTED_TYPES` (this package's own classes), naming what it refused.

A later format version, an unknown format, or a file that is not an artifact is
an `ArtifactError`; so is an untrusted type inside.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entropy_sentinel.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from entropy_sentinel.estimator.model import CorrectnessEstimator

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "TRUSTED_TYPES",
    "load_estimator",
    "read_card",
    "save_estimator",
]

ARTIFACT_FORMAT = "entropy-sentinel/correctness-estimator"
ARTIFACT_VERSION = 1

TRUSTED_TYPES: tuple[str, ...] = (
    "entropy_sentinel.estimator.model.CorrectnessEstimator",
    "entropy_sentinel.estimator.calibration.Calibrator",
    "entropy_sentinel.estimator.grids.NormalScores",
    "entropy_sentinel.estimator.grids.RandomOversampler",
    "entropy_sentinel.estimator.features.TraceSignature",
    "entropy_sentinel.estimator.baselines.ATC",  # blend members
    "entropy_sentinel.estimator.baselines.AverageConfidence",
    # scikit-learn's tree structures (random forests, histogram gradient boosting):
    # skops rebuilds them from their node arrays, like the rest of scikit-learn, but
    # does not list them as trusted by default.
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
)
"""Classes beyond skops' default trusted set that may appear in ``model.skops``: this
package's own, and scikit-learn types skops does not trust by default."""

_META = "artifact.json"
_MODEL = "model.skops"


def save_estimator(estimator: CorrectnessEstimator, path: str | Path) -> Path:
    """Write ``estimator`` (fitted) to ``path``; returns the path."""
    import skops
    import skops.io as sio
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"artifact path {str(target)!r} is a directory; give a file name")
    card = dict(estimator.card_)
    card["versions"] = {**card.get("versions", {}), "skops": skops.__version__}
    meta = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_VERSION,
        "saved_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "card": card,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    model = sio.dumps(estimator)
    tmp = target.with_name(target.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_META, json.dumps(meta, indent=2, sort_keys=True))
        zf.writestr(_MODEL, model)
    tmp.replace(target)  # atomic: a crash never leaves a half-written artifact
    return target


def _open(path: str | Path) -> tuple[dict[str, Any], zipfile.ZipFile]:
    source = Path(path)
    if not source.is_file():
        raise ArtifactError(f"estimator artifact {str(source)!r} does not exist")
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise ArtifactError(
            f"{str(source)!r} is not an estimator artifact (not a zip file); write one with "
            "CorrectnessEstimator.save or `sentinel fit`"
        ) from None
    try:
        meta = json.loads(zf.read(_META))
    except KeyError:
        zf.close()
        raise ArtifactError(
            f"{str(source)!r} is not an estimator artifact (no {_META} inside)"
        ) from None
    except json.JSONDecodeError as exc:
        zf.close()
        raise ArtifactError(f"{str(source)!r}: {_META} is not valid JSON ({exc})") from None
    fmt, version = meta.get("format"), meta.get("format_version")
    if fmt != ARTIFACT_FORMAT:
        zf.close()
        raise ArtifactError(f"{str(source)!r} has format {fmt!r}, expected {ARTIFACT_FORMAT!r}")
    if not isinstance(version, int) or version > ARTIFACT_VERSION or version < 1:
        zf.close()
        raise ArtifactError(
            f"{str(source)!r} has format version {version!r}; this entropy-sentinel reads "
            f"versions 1 to {ARTIFACT_VERSION}: upgrade entropy-sentinel to load it"
        )
    return meta, zf


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card stored in an artifact, without loading the model."""
    meta, zf = _open(path)
    zf.close()
    card: dict[str, Any] = meta["card"]
    return card


def load_estimator(path: str | Path) -> CorrectnessEstimator:
    """Load an artifact written by `save_estimator` (see the module docstring)."""
    import skops.io as sio  # imported here: it imports every scikit-learn module (~5 s)

    from entropy_sentinel.estimator.model import CorrectnessEstimator

    _, zf = _open(path)
    with zf:
        try:
            data = zf.read(_MODEL)
        except KeyError:
            raise ArtifactError(f"{str(path)!r} has no {_MODEL} inside") from None
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises assorted errors on a corrupt schema
        raise ArtifactError(f"{str(path)!r}: the model could not be read ({exc})") from None
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise ArtifactError(
            f"{str(path)!r} contains types that are not trusted: {refused}; refusing to load "
            "it (an artifact written by entropy-sentinel never contains these)"
        )
    try:
        estimator = sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ArtifactError(f"{str(path)!r}: the model could not be rebuilt ({exc})") from None
    if not isinstance(estimator, CorrectnessEstimator):
        raise ArtifactError(
            f"{str(path)!r} holds a {type(estimator).__name__}, not a CorrectnessEstimator"
        )
    if not hasattr(estimator, "blend"):  # written before blends existed: none
        estimator.blend = ()
        estimator.blend_models_ = []
    return estimator
