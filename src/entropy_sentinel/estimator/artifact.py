"""Versioned, pickle-free artifacts of a fitted slice estimator.

An artifact is one zip file holding two members:

* ``artifact.json``: ``{"format": "entropy-sentinel/estimator", "format_version": 2,
  "saved_at": ISO-8601 UTC, "card": {...}}``, the model card
  (feature set and names, entropy mode, k, training slices and their sizes,
  library versions, cross-validated AUROC, Brier score, calibration error,
  ``model_sd``), readable without loading the model (`read_card`);
* ``model.skops``: the estimator in the skops format, which rebuilds objects
  from a declarative schema instead of running pickle. Loading refuses any type
  outside skops' trusted set (scikit-learn, numpy, scipy, builtins) and
  `TRUSTED_TYPES` (this package's own classes), naming what it refused.

A later format version, an unknown format, or a file that is not an artifact is
an `ArtifactError`; so is an untrusted type inside.

Versions: 2 holds a `SentinelEstimator` (the classifier with its slice calibration, shift
reference and transfer relation). 1 (``entropy-sentinel/correctness-estimator``) held a
bare `CorrectnessEstimator`; `load_estimator` migrates it in one place (`_migrate_v1`):
wrapped in a `SentinelEstimator` without slice calibration and without a shift reference,
whose intervals then carry the transfer relation's widest half-width for every slice
(nothing tells how far its traffic is from the training traces).
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
    from entropy_sentinel.estimator.sentinel import SentinelEstimator

__all__ = [
    "ARTIFACT_FORMAT",
    "ARTIFACT_VERSION",
    "TRUSTED_TYPES",
    "load_estimator",
    "read_card",
    "save_estimator",
]

ARTIFACT_FORMAT = "entropy-sentinel/estimator"
ARTIFACT_VERSION = 2
_V1_FORMAT = "entropy-sentinel/correctness-estimator"

TRUSTED_TYPES: tuple[str, ...] = (
    "entropy_sentinel.estimator.model.CorrectnessEstimator",
    "entropy_sentinel.estimator.calibration.Calibrator",
    "entropy_sentinel.estimator.grids.NormalScores",
    "entropy_sentinel.estimator.grids.RandomOversampler",
    "entropy_sentinel.estimator.features.TraceSignature",
    "entropy_sentinel.estimator.baselines.ATC",  # blend members
    "entropy_sentinel.estimator.baselines.AverageConfidence",
    "entropy_sentinel.estimator.sentinel.SentinelEstimator",
    "entropy_sentinel.estimator.slicecal.SliceCalibration",
    "entropy_sentinel.estimator.slicecal.Offset",
    "entropy_sentinel.estimator.shiftscore.ShiftReference",
    "entropy_sentinel.estimator.transfer.TransferModel",
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


def save_estimator(estimator: SentinelEstimator | CorrectnessEstimator, path: str | Path) -> Path:
    """Write ``estimator`` (fitted; a bare `CorrectnessEstimator` is wrapped in a
    `SentinelEstimator` without slice calibration, `_wrap`) to ``path``; returns the path."""
    import skops
    import skops.io as sio

    from entropy_sentinel.estimator.model import CorrectnessEstimator

    if isinstance(estimator, CorrectnessEstimator):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator)
        estimator = _wrap(estimator)
    if not hasattr(estimator, "classifier_"):
        raise ConfigError("the estimator is not fitted: call fit_traces before saving it")
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
    if fmt == _V1_FORMAT and version == 1:
        return meta, zf
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


def load_estimator(path: str | Path) -> SentinelEstimator:
    """Load an artifact written by `save_estimator` (see the module docstring)."""
    import skops.io as sio  # imported here: it imports every scikit-learn module (~5 s)

    from entropy_sentinel.estimator.model import CorrectnessEstimator
    from entropy_sentinel.estimator.sentinel import SentinelEstimator

    meta, zf = _open(path)
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
    if meta.get("format_version") == 1:
        if not isinstance(estimator, CorrectnessEstimator):
            raise ArtifactError(
                f"{str(path)!r} holds a {type(estimator).__name__}, not a CorrectnessEstimator"
            )
        return _migrate_v1(estimator)
    if not isinstance(estimator, SentinelEstimator):
        raise ArtifactError(
            f"{str(path)!r} holds a {type(estimator).__name__}, not a SentinelEstimator"
        )
    return estimator


def _migrate_v1(classifier: CorrectnessEstimator) -> SentinelEstimator:
    """A version-1 artifact's `CorrectnessEstimator` as a `SentinelEstimator` (module
    docstring): no slice calibration, no shift reference, the transfer relation of the
    preset it resembles, and version 1's reading of ``k`` (the widest step)."""
    from entropy_sentinel.estimator.features import TraceSignature

    if not hasattr(classifier, "blend"):  # written before blends existed: none
        classifier.blend = ()
        classifier.blend_models_ = []
    if not hasattr(classifier, "family_"):
        classifier.family_ = classifier.family
    old = classifier.signature_
    if old is not None:  # version 1's k was the widest step: judge traces as it did
        classifier.signature_ = TraceSignature(old.source, old.k, legacy=True)
    return _wrap(classifier)


def _wrap(classifier: CorrectnessEstimator) -> SentinelEstimator:
    """A fitted bare `CorrectnessEstimator` as a `SentinelEstimator`: no slice calibration,
    no shift reference, the transfer relation of the preset it resembles."""
    from entropy_sentinel.estimator.sentinel import SentinelEstimator
    from entropy_sentinel.estimator.slicecal import SliceCalibration
    from entropy_sentinel.estimator.transfer import load_transfer

    name = "sentinel" if classifier.blend else "paper"
    estimator = SentinelEstimator(classifier=classifier, calibrate=False, transfer=name)
    estimator.classifier_ = classifier
    estimator.calibration_ = SliceCalibration()
    estimator.shift_ = None
    estimator.transfer_ = load_transfer(name)
    estimator.card_ = estimator._card()
    return estimator
