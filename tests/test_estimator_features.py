"""Feature sets and trace signatures of the correctness estimator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import entropy_sentinel as es
from entropy_sentinel.estimator import (
    BASELINE_FEATURES,
    TraceSignature,
    feature_names,
    featurize,
    trace_signature,
)
from tests.conftest import SMOLLM2_FIXTURES


@pytest.fixture(scope="module")
def smollm2() -> es.TraceBatch:
    """Real SmolLM2 responses with top-20 logprobs (one recorded empty response rejected)."""
    return es.read_traces(SMOLLM2_FIXTURES / "traces.jsonl", errors="collect")


@pytest.fixture(scope="module")
def entropies() -> es.TraceBatch:
    rng = np.random.default_rng(0)
    return es.read_traces(
        [{"id": f"e{i}", "token_entropy": rng.gamma(1.0, 0.4, 5 + i).tolist()} for i in range(8)]
    )


@pytest.mark.parametrize("mode", es.ENTROPY_MODES)
def test_feature_sets_are_columns_of_the_profile(smollm2: es.TraceBatch, mode: str) -> None:
    profile = es.entropy_profile(smollm2, mode)
    assert featurize(smollm2, "profile", mode).tolist() == profile.tolist()
    assert featurize(smollm2, "profile10", mode).tolist() == profile[:, :10].tolist()
    assert featurize(smollm2, "sea", mode).tolist() == profile[:, [10]].tolist()
    full = featurize(smollm2, "profile+baselines", mode)
    scores = es.baseline_scores(smollm2, mode=mode)
    assert full.shape == (len(smollm2), 11 + len(BASELINE_FEATURES))
    for j, name in enumerate(BASELINE_FEATURES):
        assert full[:, 11 + j].tolist() == scores[name].tolist(), name


def test_feature_names_follow_the_columns() -> None:
    assert feature_names("profile") == es.FEATURE_NAMES
    assert feature_names("profile10") == es.FEATURE_NAMES[:10]
    assert feature_names("sea") == ("h_sea",)
    assert feature_names("profile+baselines") == es.FEATURE_NAMES + BASELINE_FEATURES
    assert "lntp" not in BASELINE_FEATURES  # exp(-nll_avg): no new information
    with pytest.raises(es.ConfigError, match="feature set 'entropy' is unknown"):
        feature_names("entropy")


def test_step_stats_are_reused_and_their_mode_is_checked(smollm2: es.TraceBatch) -> None:
    stats = es.StepStats(smollm2, "topk_tail")
    assert featurize(stats, "profile", "topk_tail").tolist() == es.entropy_profile(stats).tolist()
    with pytest.raises(es.ArtifactMismatchError, match=r"mode 'topk_tail'.*need mode 'topk'"):
        featurize(stats, "profile", "topk")


def test_a_given_profile_is_used_not_recomputed(smollm2: es.TraceBatch) -> None:
    stats = es.StepStats(smollm2)
    profile = es.entropy_profile(stats)
    for name in ("profile10", "profile+baselines"):
        assert featurize(stats, name, profile=profile).tolist() == featurize(stats, name).tolist()
    marked = profile.copy()
    marked[:, 0] = -1.0  # not a profile anyone would compute: proves it is the one used
    assert (featurize(stats, "profile10", profile=marked)[:, 0] == -1.0).all()
    with pytest.raises(es.ConfigError, match=r"profile has shape \(3, 11\)"):
        featurize(stats, "profile", profile=profile[:3])


def test_baselines_need_logprobs(entropies: es.TraceBatch) -> None:
    with pytest.raises(es.ConfigError, match=r"needs logprobs, but 8 trace\(s\) \(first: 'e0'\)"):
        featurize(entropies, "profile+baselines")


def test_signatures(smollm2: es.TraceBatch, entropies: es.TraceBatch) -> None:
    assert trace_signature(smollm2) == TraceSignature("logprobs", 20)
    assert trace_signature(entropies) == TraceSignature("precomputed", 0)
    with pytest.raises(es.ConfigError, match="mix logprobs and precomputed entropies"):
        trace_signature(es.TraceBatch.concat([smollm2, entropies]))


def test_signature_check(smollm2: es.TraceBatch, entropies: es.TraceBatch) -> None:
    TraceSignature("logprobs", 20).check(smollm2)
    TraceSignature("precomputed", 0).check(entropies)
    TraceSignature("logprobs", 20).check(es.TraceBatch.empty())
    with pytest.raises(es.ArtifactMismatchError, match="carry precomputed entropies"):
        TraceSignature("logprobs", 20).check(entropies)
    with pytest.raises(es.ArtifactMismatchError, match="carry logprobs"):
        TraceSignature("precomputed", 0).check(smollm2)
    with pytest.raises(es.ArtifactMismatchError, match="fitted on top-5 logprobs"):
        TraceSignature("logprobs", 5).check(smollm2)
    # Keep the first 5 alternatives of each step: as if top_logprobs=5 had been asked.
    top5 = dataclasses.replace(smollm2, topk_logprobs=smollm2.topk_logprobs[:, :5].copy())
    with pytest.raises(es.ArtifactMismatchError, match="Request top_logprobs=20"):
        TraceSignature("logprobs", 20).check(top5)
    # A response whose steps all merged one alternative away still matches (16..20 of 20).
    top17 = dataclasses.replace(smollm2, topk_logprobs=smollm2.topk_logprobs[:, :17].copy())
    TraceSignature("logprobs", 20).check(top17)
