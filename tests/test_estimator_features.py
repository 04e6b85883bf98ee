"""Feature sets and trace signatures of the correctness estimator."""

from __future__ import annotations

import dataclasses
from typing import Any

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
    # Wider traces are fine: they are cut to the estimator's k (see test_conform_...).
    TraceSignature("logprobs", 5).check(smollm2)
    # Keep the first 5 alternatives of each step: as if top_logprobs=5 had been asked.
    top5 = dataclasses.replace(smollm2, topk_logprobs=smollm2.topk_logprobs[:, :5].copy())
    with pytest.raises(es.ArtifactMismatchError, match="Request top_logprobs=20"):
        TraceSignature("logprobs", 20).check(top5)
    # A response whose steps all merged alternatives away still matches (15..20 of 20).
    top15 = dataclasses.replace(smollm2, topk_logprobs=smollm2.topk_logprobs[:, :15].copy())
    TraceSignature("logprobs", 20).check(top15)


def _step(token: str, logprob: float, alternatives: list[tuple[str, float]]) -> dict[str, object]:
    return {
        "token": token,
        "logprob": logprob,
        "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives],
    }


def _alts(n: int, start: float = -0.05) -> list[tuple[str, float]]:
    return [(f"t{j}", start - 0.4 * j) for j in range(n)]


def test_k_is_inferred_per_trace_from_its_own_steps() -> None:
    alts20 = _alts(20)
    records: list[dict[str, Any]] = [
        # OpenAI: the sampled token is among the 20, or left out when outside them
        {
            "id": "openai",
            "logprobs": {"content": [_step("t0", -0.05, alts20), _step("zz", -12.0, alts20)]},
        },
        # llama-cpp-python: a 21st entry, the sampled token, appended below the others
        {
            "id": "llama",
            "logprobs": {
                "content": [
                    _step("t0", -0.05, alts20),
                    _step("zz", -12.0, [*alts20, ("zz", -12.0)]),
                ]
            },
        },
        # alternatives merged away, and a one-token answer
        {"id": "merged", "logprobs": {"content": [_step("t0", -0.05, _alts(16))]}},
        # the record says what was asked for
        {"id": "stated", "k": 20, "logprobs": {"content": [_step("t0", -0.05, _alts(12))]}},
        {"id": "top5", "logprobs": {"content": [_step("t0", -0.05, _alts(5))]}},
        {"id": "entropies", "token_entropy": [0.1, 0.2]},
    ]
    batch = es.read_traces(records)
    assert batch.k == 21  # the storage width, not any trace's k
    assert batch.inferred_k.tolist() == [20, 20, 16, 12, 5, 0]
    assert batch.trace_k.tolist() == [20, 20, 16, 20, 5, 0]
    sig = TraceSignature("logprobs", 20)
    assert sig.refused(batch).tolist() == [False, False, False, False, True, True]
    # one trace's fate does not depend on its neighbours
    for i in range(4):
        sig.check(batch.subset([i]))
    with pytest.raises(es.ArtifactMismatchError, match=r"1 trace\(s\) \(first: 'top5', top-5\)"):
        sig.check(batch.subset([0, 1, 4]))
    with pytest.raises(es.ArtifactMismatchError, match="fitted on top-20"):
        sig.check(es.read_traces([{**records[3], "k": 10}]))


def test_conform_cuts_wider_traces_exactly(smollm2: es.TraceBatch) -> None:
    """A top-20 trace cut to 5 has the entropies a top-5 request would have returned:
    the 5 most probable alternatives, plus the sampled token where it falls outside."""
    cut = TraceSignature("logprobs", 5).conform(smollm2)
    assert cut.k == 5 and cut.trace_k.max() == 5
    top = smollm2.topk_logprobs
    for step in range(smollm2.n_steps):
        row = top[step][np.isfinite(top[step])]
        kept = np.sort(row)[::-1][:5]
        assert cut.topk_logprobs[step][np.isfinite(cut.topk_logprobs[step])].tolist() == (
            kept.tolist()
        )
        sampled = smollm2.sampled_logprob[step]
        assert cut.sampled_in_topk[step] == (
            bool(smollm2.sampled_in_topk[step]) and (row > sampled).sum() < 5
        )
    h = es.StepStats(cut).entropy
    p = np.exp(cut.topk_logprobs)
    expected = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    outside = ~cut.sampled_in_topk
    ps = np.exp(cut.sampled_logprob)
    expected[outside] -= ps[outside] * cut.sampled_logprob[outside]
    np.testing.assert_allclose(h, expected, rtol=1e-6)
    assert TraceSignature("logprobs", 20).conform(smollm2) is smollm2


def test_fit_then_estimate_on_output_of_the_same_collector() -> None:
    """The README flow on real llama-cpp-python answers, whose steps list the sampled token
    as a 21st alternative when it falls outside the top 20 (some traces have such steps,
    most do not): no trace is refused, whichever traces share its batch."""
    from entropy_sentinel.estimator import preset
    from tests.conftest import load_corpus_batch

    corpus = load_corpus_batch()
    assert isinstance(corpus, es.TraceBatch)
    wide = np.maximum.reduceat(np.isfinite(corpus.topk_logprobs).sum(axis=1), corpus.offsets[:-1])
    assert (wide == 21).any() and (wide <= 20).any()
    domains = corpus.slice_values("domain")
    train = corpus.subset(np.isin(domains, ["synth_mul_1d", "gsm8k"]))
    est = preset("paper", family="lr", random_state=0).fit_traces(train)
    assert est.classifier_.signature_ == TraceSignature("logprobs", 20)
    narrow_only = corpus.subset(np.flatnonzero(wide <= 20)[:50])
    with_wide = corpus.subset(np.flatnonzero(wide == 21)[:5])
    alone = est.predict_traces(narrow_only)
    together = est.predict_traces(es.TraceBatch.concat([narrow_only, with_wide]))
    np.testing.assert_allclose(together[:50], alone, rtol=0, atol=1e-12)
    # the collector now states the k it asked for: the same traces, the same numbers
    stated = dataclasses.replace(with_wide, requested_k=np.full(len(with_wide), 20))
    np.testing.assert_array_equal(est.predict_traces(stated), est.predict_traces(with_wide))
    result = es.estimate_accuracy(corpus, est, by="domain")
    assert sum(r.n for r in result) == len(corpus)
