"""Estimator artifacts: round trip of a `SentinelEstimator`, the card, versions (version 1
migrated), trust, and traces of another kind."""

from __future__ import annotations

import dataclasses
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.exceptions import NotFittedError

import entropy_sentinel as es
from entropy_sentinel.estimator import (
    SentinelEstimator,
    load_estimator,
    read_card,
    save_estimator,
)
from entropy_sentinel.estimator.artifact import ARTIFACT_FORMAT, ARTIFACT_VERSION
from entropy_sentinel.estimator.transfer import load_transfer
from tests.conftest import FIXTURES
from tests.estimator_data import corpus, entropy_only, halves, sentinel_lr

V1 = FIXTURES / "artifacts"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_estimator(sentinel_lr(), tmp_path_factory.mktemp("artifact") / "model.skops")


def _rewrite(source: Path, target: Path, **replace: bytes) -> Path:
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name.replace(".", "_"), zin.read(name)))
    return target


def _params(est: SentinelEstimator) -> dict[str, object]:
    return {k: v for k, v in est.get_params(deep=True).items() if k != "classifier"}


def test_round_trip(saved: Path) -> None:
    fitted, test = sentinel_lr(), halves()[1]
    loaded = load_estimator(saved)
    assert isinstance(loaded, SentinelEstimator)
    np.testing.assert_array_equal(loaded.predict_traces(test), fitted.predict_traces(test))
    pd.testing.assert_frame_equal(
        loaded.estimate(test, by="domain").to_df(), fitted.estimate(test, by="domain").to_df()
    )
    assert _params(loaded) == _params(fitted)
    assert loaded.card_ == fitted.card_
    assert loaded.calibration_.offsets_ == fitted.calibration_.offsets_
    assert loaded.transfer_ == fitted.transfer_
    assert loaded.shift_ is not None and fitted.shift_ is not None
    profile = np.random.default_rng(0).gamma(2.0, 0.3, size=(5, 11))
    np.testing.assert_array_equal(
        loaded.shift_.transform(profile), fitted.shift_.transform(profile)
    )
    # the per-response classifier alone, for who needs only P(correct)
    clf = es.CorrectnessEstimator.load(saved)
    np.testing.assert_array_equal(clf.predict_traces(test), fitted.classifier_.predict_traces(test))
    assert clf.blend == ("atc:max_entropy", "ac:nll_avg")


def test_card_is_readable_without_the_model(saved: Path) -> None:
    card = read_card(saved)
    fitted = sentinel_lr()
    for key in ("params", "features", "training", "metrics", "tuning", "slice_estimator"):
        assert card[key] == json.loads(json.dumps(fitted.card_[key])), key
    assert card["versions"]["skops"] and card["versions"]["scikit_learn"]
    assert card["features"]["entropy_mode"] == "topk"
    assert (card["features"]["source"], card["features"]["k"]) == ("logprobs", 20)
    assert card["training"]["n"] == len(halves()[0])
    assert len(card["slice_estimator"]["offsets"]) == 13
    for metric in ("cv_auroc", "brier", "ece", "model_sd"):
        assert 0 < card["metrics"][metric] < 1
    with zipfile.ZipFile(saved) as zf:
        meta = json.loads(zf.read("artifact.json"))
    assert meta["format"] == ARTIFACT_FORMAT
    assert meta["format_version"] == ARTIFACT_VERSION == 2


def test_traces_of_another_kind_are_refused(saved: Path) -> None:
    """Fitted on top-20 logprobs; precomputed entropies are another scale."""
    loaded = load_estimator(saved)
    entropies = entropy_only(halves()[1].subset(range(5)))
    with pytest.raises(es.ArtifactMismatchError, match="fitted on traces with top-20 logprobs"):
        loaded.predict_traces(entropies)


def test_step_stats_in_another_mode_are_refused(saved: Path) -> None:
    clf = load_estimator(saved).classifier_
    assert clf.signature_ is not None
    some = clf.signature_.conform(halves()[1].subset(range(5)))  # steps cut to its top-20
    with pytest.raises(es.ArtifactMismatchError, match="entropy mode 'topk_renorm'"):
        clf.predict_traces(es.StepStats(some, "topk_renorm"))
    assert clf.predict_traces(es.StepStats(some, "topk")).shape == (5,)


def test_unfitted_estimators_and_bad_paths_are_refused(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        es.CorrectnessEstimator().save(tmp_path / "m.skops")
    with pytest.raises(es.ConfigError, match="not fitted: call fit_traces"):
        save_estimator(SentinelEstimator(), tmp_path / "m.skops")
    with pytest.raises(es.ConfigError, match="is a directory; give a file name"):
        save_estimator(load_estimator(saved), tmp_path)
    assert not (tmp_path / "m.skops").exists()


def test_newer_format_versions_are_refused(saved: Path, tmp_path: Path) -> None:
    meta = json.loads(zipfile.ZipFile(saved).read("artifact.json"))
    meta["format_version"] = ARTIFACT_VERSION + 1
    newer = _rewrite(saved, tmp_path / "newer.skops", artifact_json=json.dumps(meta).encode())
    with pytest.raises(es.ArtifactError, match=r"format version 3; .* upgrade entropy-sentinel"):
        load_estimator(newer)
    with pytest.raises(es.ArtifactError, match="format version 3"):
        read_card(newer)
    meta["format"] = "someone-else/model"
    other = _rewrite(saved, tmp_path / "other.skops", artifact_json=json.dumps(meta).encode())
    with pytest.raises(es.ArtifactError, match="has format 'someone-else/model', expected"):
        load_estimator(other)


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
    with pytest.raises(es.ArtifactError, match="holds a dict, not a SentinelEstimator"):
        load_estimator(other)


# ------------------------------------------------------------------- version 1
@pytest.mark.parametrize(
    ("name", "relation", "blend"),
    [
        ("v1-sentinel-lr", "sentinel", ("atc:max_entropy", "ac:nll_avg")),
        ("v1-before-blends-lr", "paper", ()),
    ],
)
def test_version_1_artifacts_are_migrated(
    name: str, relation: str, blend: tuple[str, ...], tmp_path: Path
) -> None:
    """Written by the old code (tests/fixtures/artifacts/RECORDING.md): they load as a
    `SentinelEstimator` without slice calibration or shift reference, give the old
    code's numbers, and carry the relation's widest transfer term everywhere."""
    path = V1 / f"{name}.skops"
    expected = json.loads((V1 / f"{name}.expected.json").read_text())
    assert read_card(path)["params"]["family"] == "lr"
    est = load_estimator(path)
    assert isinstance(est, SentinelEstimator)
    assert (est.calibrate, est.transfer, est.shift_) == (False, relation, None)
    assert est.transfer_ == load_transfer(relation)
    assert est.classifier_.blend == blend and est.classifier_.family_ == "lr"
    batch = corpus()
    rows = {trace_id: i for i, trace_id in enumerate(batch.ids)}
    sample = batch.subset([rows[i] for i in expected["ids"]])
    np.testing.assert_array_equal(est.predict_traces(sample), expected["p"])
    assert est.card_["slice_estimator"]["calibrate"] is False
    for r in est.estimate(sample, by="domain"):
        assert r.unseen_fraction == 1.0 and math.isnan(r.shift)
        assert r.transfer_half_width == est.transfer_.half_width(math.nan, 0.95)
    # saved again, it is a version-2 artifact with the same numbers
    again = save_estimator(est, tmp_path / "v2.skops")
    assert json.loads(zipfile.ZipFile(again).read("artifact.json"))["format_version"] == 2
    np.testing.assert_array_equal(load_estimator(again).predict_traces(sample), expected["p"])


def test_a_version_1_artifact_must_hold_a_classifier(tmp_path: Path) -> None:
    other = _rewrite(
        V1 / "v1-sentinel-lr.skops", tmp_path / "v1-dict.skops", model_skops=sio.dumps({"a": 1})
    )
    with pytest.raises(es.ArtifactError, match="holds a dict, not a CorrectnessEstimator"):
        load_estimator(other)


def test_a_migrated_artifact_scores_new_output_of_the_same_collector() -> None:
    """Version 1 recorded k as the widest step (21 for llama-cpp-python's top-20, which
    appends the sampled token): migrated, it judges traces as it did, whatever they state."""
    est = load_estimator(V1 / "v1-sentinel-lr.skops")
    sample = corpus().subset(range(0, 1950, 50))
    stated = dataclasses.replace(sample, requested_k=np.full(len(sample), 20))
    np.testing.assert_array_equal(est.predict_traces(stated), est.predict_traces(sample))
