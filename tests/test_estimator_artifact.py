"""Estimator artifacts: round trip, card, versioning, trust, and mismatching traces."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio

import entropy_sentinel as es
from entropy_sentinel.estimator import load_estimator, read_card
from entropy_sentinel.estimator.artifact import ARTIFACT_FORMAT, ARTIFACT_VERSION
from tests.conftest import SMOLLM2_FIXTURES


@pytest.fixture(scope="module")
def phi35(phi35_path: Path) -> es.TraceBatch:
    return es.read_traces(phi35_path)


@pytest.fixture(scope="module")
def fitted(phi35: es.TraceBatch) -> es.CorrectnessEstimator:
    return es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(phi35.subset(range(700)))


@pytest.fixture(scope="module")
def saved(fitted: es.CorrectnessEstimator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fitted.save(tmp_path_factory.mktemp("artifact") / "model.skops")


def _rewrite(source: Path, target: Path, **replace: bytes) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name.replace(".", "_"), zin.read(name)))
    return target


def test_round_trip(fitted: es.CorrectnessEstimator, saved: Path, phi35: es.TraceBatch) -> None:
    loaded = es.CorrectnessEstimator.load(saved)
    rest = phi35.subset(range(700, 1319))
    np.testing.assert_array_equal(loaded.predict_traces(rest), fitted.predict_traces(rest))
    assert loaded.model_sd_ == fitted.model_sd_
    assert loaded.get_params() == fitted.get_params()
    assert loaded.card_ == fitted.card_


def test_card_is_readable_without_the_model(saved: Path, fitted: es.CorrectnessEstimator) -> None:
    card = read_card(saved)
    for key in ("params", "features", "training", "metrics", "tuning"):
        assert card[key] == json.loads(json.dumps(fitted.card_[key])), key
    assert card["versions"]["skops"]
    assert card["versions"]["scikit_learn"]
    assert card["features"]["entropy_mode"] == "topk"
    assert card["training"]["n"] == 700
    for metric in ("cv_auroc", "brier", "ece", "model_sd"):
        assert 0 < card["metrics"][metric] < 1
    with zipfile.ZipFile(saved) as zf:
        meta = json.loads(zf.read("artifact.json"))
    assert meta["format"] == ARTIFACT_FORMAT
    assert meta["format_version"] == ARTIFACT_VERSION


def test_traces_of_another_kind_are_refused(saved: Path) -> None:
    """Fitted on full-vocabulary entropies; top-20 logprob traces are another scale."""
    loaded = load_estimator(saved)
    logprob_traces = es.read_traces(SMOLLM2_FIXTURES / "traces.jsonl", errors="collect")
    with pytest.raises(es.ArtifactMismatchError, match="fitted on traces with precomputed"):
        loaded.predict_traces(logprob_traces)


def test_step_stats_in_another_mode_are_refused(saved: Path, phi35: es.TraceBatch) -> None:
    loaded = load_estimator(saved)
    with pytest.raises(es.ArtifactMismatchError, match="entropy mode 'topk_renorm'"):
        loaded.predict_traces(es.StepStats(phi35.subset(range(5)), "topk_renorm"))
    assert loaded.predict_traces(es.StepStats(phi35.subset(range(5)), "topk")).shape == (5,)


def test_unfitted_estimators_are_not_saved(tmp_path: Path) -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        es.CorrectnessEstimator().save(tmp_path / "m.skops")


def test_newer_format_versions_are_refused(saved: Path, tmp_path: Path) -> None:
    meta = json.loads(zipfile.ZipFile(saved).read("artifact.json"))
    meta["format_version"] = ARTIFACT_VERSION + 1
    newer = _rewrite(saved, tmp_path / "newer.skops", artifact_json=json.dumps(meta).encode())
    with pytest.raises(es.ArtifactError, match=r"format version 2; .* upgrade entropy-sentinel"):
        load_estimator(newer)
    with pytest.raises(es.ArtifactError, match="format version 2"):
        read_card(newer)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip", "not a zip file"),
        (None, "no artifact.json inside"),
    ],
)
def test_other_files_are_refused(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "x.skops"
    if content is None:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("model.skops", b"")
    else:
        path.write_bytes(content)
    with pytest.raises(es.ArtifactError, match=message):
        load_estimator(path)
    with pytest.raises(es.ArtifactError, match="does not exist"):
        load_estimator(tmp_path / "missing.skops")


class Payload:
    """A type no artifact should carry (stands for anything a hostile file could smuggle)."""

    def __init__(self) -> None:
        self.command = "echo owned"


def test_untrusted_types_are_refused(saved: Path, tmp_path: Path) -> None:
    hostile = _rewrite(saved, tmp_path / "hostile.skops", model_skops=sio.dumps(Payload()))
    with pytest.raises(es.ArtifactError, match=r"not trusted: \['tests.test_estimator_artifact"):
        load_estimator(hostile)
    other = _rewrite(saved, tmp_path / "other.skops", model_skops=sio.dumps({"a": 1}))
    with pytest.raises(es.ArtifactError, match="holds a dict, not a CorrectnessEstimator"):
        load_estimator(other)
