"""The vectorised entropy profile and scores against the per-trace reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import entropy_sentinel as es
from entropy_sentinel.steps import StepStats
from tests import reference as ref
from tests.conftest import SMOLLM2_FIXTURES

MODES = ("topk", "topk_renorm", "topk_tail")
SCORE_NAMES = tuple(es.SCORES)


def random_batch(seed: int, n: int = 60, max_len: int = 120) -> es.TraceBatch:
    """Random traces with realistic logprobs: log-softmax of random logits, top-k
    alternatives of varying width, sampled tokens sometimes outside the set, some
    -9999 sentinels, and some single-token traces."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len, size=n)
    lengths[: n // 10] = 1
    total = int(lengths.sum())
    k = 20
    logits = rng.normal(scale=rng.uniform(0.5, 6.0, size=(total, 1)), size=(total, 200))
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    order = np.argsort(-logp, axis=1)
    top = np.take_along_axis(logp, order[:, :k], axis=1)
    widths = rng.integers(0, k + 1, size=total)
    widths[rng.random(total) < 0.7] = k
    top = np.where(np.arange(k)[None, :] < widths[:, None], top, -np.inf)
    sampled_rank = np.minimum(rng.geometric(0.6, size=total) - 1, 199)
    sampled = np.take_along_axis(logp, order[:, sampled_rank][:, :1], axis=1)[:, 0]
    sampled = logp[np.arange(total), order[np.arange(total), sampled_rank]]
    in_topk = sampled_rank < widths
    sentinel = rng.random(total) < 0.01
    sampled = np.where(sentinel & ~in_topk, -9999.0, sampled)
    perm = rng.permuted(np.tile(np.arange(k), (total, 1)), axis=1)
    top = np.take_along_axis(top, perm, axis=1)  # alternatives in no particular order
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return es.TraceBatch.from_arrays(
        offsets, sampled_logprob=sampled, topk_logprobs=top, sampled_in_topk=in_topk
    )


def reference_profile(batch: es.TraceBatch, mode: str) -> npt.NDArray[np.float64]:
    rows = []
    for i in range(len(batch)):
        a, b = batch.offsets[i], batch.offsets[i + 1]
        h = ref.step_entropies(
            batch.sampled_logprob[a:b], batch.sampled_in_topk[a:b], batch.topk_logprobs[a:b], mode
        )
        rows.append(ref.profile(h))
    return np.array(rows)


def assert_features_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    # Shape statistics of nearly-flat traces amplify rounding: compare them with an
    # absolute tolerance scaled like the others.
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 10)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", MODES)
def test_float64_matches_reference_on_random_traces(seed: int, mode: str) -> None:
    batch = random_batch(seed)
    got = es.entropy_profile(batch, mode, precision="float64")
    assert got.dtype == np.float64 and got.shape == (len(batch), 11)
    assert_features_close(got, reference_profile(batch, mode), rtol=1e-9)


@pytest.mark.parametrize("mode", MODES)
def test_float32_fast_path_matches_reference(mode: str) -> None:
    batch = random_batch(11, n=200)
    want = reference_profile(batch, mode)
    got = es.entropy_profile(batch, mode)
    # Per-step probabilities in float32: 1e-6 relative on the entropy-valued columns.
    cols = [0, 1, 2, 3, 4, 5, 6, 7, 10]
    np.testing.assert_allclose(got[:, cols], want[:, cols], rtol=1e-6, atol=2e-6)
    np.testing.assert_allclose(got[:, 8:10], want[:, 8:10], rtol=1e-4, atol=1e-4)


def _fixture(name: str) -> Any:
    return json.loads((SMOLLM2_FIXTURES / name).read_text())


def _real_shapes() -> list[tuple[str, Any, tuple[Any, Any, Any]]]:
    cases = []
    for i, resp in enumerate(_fixture("chat.json")):
        lp = resp["choices"][0]["logprobs"]
        cases.append((f"chat-{i}", resp, ref.arrays_from_chat_content(lp["content"])))
    for i, chunks in enumerate(_fixture("chat_stream.json")):
        cases.append((f"stream-{i}", chunks, ref.arrays_from_chunks(chunks)))
    for i, resp in enumerate(_fixture("completions.json")):
        lp = resp["choices"][0]["logprobs"]
        if lp["tokens"]:  # one recorded completion is empty (the model stopped at once)
            cases.append((f"completion-{i}", resp, ref.arrays_from_legacy(lp)))
    return cases


@pytest.mark.parametrize("mode", MODES)
def test_real_recorded_responses_match_reference(mode: str) -> None:
    cases = _real_shapes()
    assert len(cases) >= 15
    batch = es.read_traces([resp for _, resp, _ in cases])
    stats = StepStats(batch, mode, precision="float64")
    got = es.entropy_profile(stats)
    got_scores = es.baseline_scores(stats)
    for i, (name, _, (sampled, in_topk, alts)) in enumerate(cases):
        h = ref.step_entropies(sampled, in_topk, alts, mode)
        assert_features_close(got[i], ref.profile(h), rtol=1e-9)
        want_scores = ref.scores(sampled, in_topk, alts, h)
        for key, value in want_scores.items():
            assert got_scores[key][i] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)


def test_scores_match_reference_on_random_traces() -> None:
    batch = random_batch(5)
    stats = StepStats(batch, "topk", precision="float64")
    got = es.baseline_scores(stats)
    assert set(got) == set(SCORE_NAMES)
    for i in range(len(batch)):
        a, b = batch.offsets[i], batch.offsets[i + 1]
        s, m, t = batch.sampled_logprob[a:b], batch.sampled_in_topk[a:b], batch.topk_logprobs[a:b]
        want = ref.scores(s, m, t, ref.step_entropies(s, m, t, "topk"))
        for key, value in want.items():
            assert got[key][i] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_each_score_declares_an_orientation() -> None:
    assert set(es.PAPER_SCORES) <= set(es.SCORES)
    assert len(es.PAPER_SCORES) == 9
    for spec in es.SCORES.values():
        assert spec.orientation in ("confidence", "uncertainty")
        assert spec.description
    oriented = es.confidence_of("nll_avg", np.array([1.0, 2.0]))
    assert oriented.tolist() == [-1.0, -2.0]
    assert es.confidence_of("mtp", np.array([0.5])).tolist() == [0.5]


def test_confidence_scores_are_higher_for_confident_traces() -> None:
    sure = {
        "id": "sure",
        "logprobs": {
            "content": [
                {
                    "token": "a",
                    "logprob": -0.001,
                    "top_logprobs": [
                        {"token": "a", "logprob": -0.001},
                        {"token": "b", "logprob": -7.0},
                    ],
                }
            ]
        },
    }
    unsure = {
        "id": "unsure",
        "logprobs": {
            "content": [
                {
                    "token": "a",
                    "logprob": -0.9,
                    "top_logprobs": [
                        {"token": "a", "logprob": -0.9},
                        {"token": "b", "logprob": -1.0},
                    ],
                }
            ]
        },
    }
    scores = es.baseline_scores(es.read_traces([sure, unsure]))
    for name, spec in es.SCORES.items():
        if name == "length":
            continue
        conf = es.confidence_of(name, scores[name])
        assert conf[0] > conf[1], name
        assert spec.orientation in ("confidence", "uncertainty")


def test_phi35_token_entropy_path(phi35_path: Path) -> None:
    from sklearn.metrics import roc_auc_score

    batch = es.read_traces(phi35_path)
    assert len(batch) == 1319 and not batch.rejected
    assert batch.n_steps == 247_966  # sum of n_tokens in the file
    assert float(np.nanmean(batch.labels)) == pytest.approx(0.8415, abs=1e-4)
    profile = es.entropy_profile(batch)
    want = reference_profile_entropy(batch)
    assert_features_close(profile, want, rtol=1e-9)
    # The data README reports AUROC 0.740 for mean entropy -> failure.
    auroc = roc_auc_score(batch.labels == 0, profile[:, 1])
    assert auroc == pytest.approx(0.740, abs=0.001)
    scores = es.baseline_scores(batch)
    assert np.isnan(scores["nll_avg"]).all()  # no logprobs in this file
    assert np.allclose(scores["mean_entropy"], profile[:, 1])


def reference_profile_entropy(batch: es.TraceBatch) -> npt.NDArray[np.float64]:
    return np.array(
        [
            ref.profile(batch.token_entropy[batch.offsets[i] : batch.offsets[i + 1]])
            for i in range(len(batch))
        ]
    )


def test_flat_and_single_token_traces() -> None:
    batch = es.read_traces(
        [
            {"id": "one", "token_entropy": [0.7]},
            {"id": "flat", "token_entropy": [0.3, 0.3, 0.3, 0.3]},
            {"id": "zeros", "token_entropy": [0.0, 0.0]},
        ]
    )
    X = es.entropy_profile(batch)
    names = list(es.FEATURE_NAMES)
    for row in X:
        assert row[names.index("h_std")] == 0.0
        assert row[names.index("h_skew")] == 0.0
        assert row[names.index("h_kurt")] == 0.0
    assert X[0, names.index("h_sea")] == pytest.approx(0.7)
    assert X[1, names.index("h_q50")] == pytest.approx(0.3)


# ------------------------------------------------------------------ properties
def _trace(data: st.DataObject) -> dict[str, Any]:
    n = data.draw(st.integers(1, 12), label="n_steps")
    steps = []
    for t in range(n):
        k = data.draw(st.integers(1, 6))
        probs = data.draw(st.lists(st.floats(1e-6, 1.0), min_size=k, max_size=k))
        total = sum(probs) * data.draw(st.floats(1.0, 3.0))  # returned mass <= 1
        tops = [
            {"token": f"t{j}", "logprob": float(np.log(p / total))} for j, p in enumerate(probs)
        ]
        steps.append(
            {"token": f"t{t % k}", "logprob": tops[t % k]["logprob"], "top_logprobs": tops}
        )
    return {"id": "h", "logprobs": {"content": steps}}


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_order_of_alternatives_does_not_matter(data: st.DataObject) -> None:
    record = _trace(data)
    shuffled = json.loads(json.dumps(record))
    for step in shuffled["logprobs"]["content"]:
        step["top_logprobs"] = data.draw(st.permutations(step["top_logprobs"]))
    for mode in MODES:
        a = es.entropy_profile(es.read_traces([record]), mode, precision="float64")
        b = es.entropy_profile(es.read_traces([shuffled]), mode, precision="float64")
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_quantiles_are_ordered_and_sea_is_n_times_mean(data: st.DataObject) -> None:
    batch = es.read_traces([_trace(data) for _ in range(data.draw(st.integers(1, 4)))])
    X = es.entropy_profile(batch, data.draw(st.sampled_from(MODES)))
    q = X[:, [3, 4, 5, 6, 7, 0]]  # q10..q90, max
    assert (np.diff(q, axis=1) >= -1e-15).all()
    np.testing.assert_allclose(X[:, 10], batch.lengths * X[:, 1], rtol=1e-12)
    assert (X[:, 2] >= 0).all()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_renorm_equals_topk_when_the_returned_mass_is_one(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 10))
    steps = []
    for _ in range(n):
        probs = np.asarray(data.draw(st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=8)))
        probs = probs / probs.sum()
        tops = [{"token": f"v{j}", "logprob": float(np.log(p))} for j, p in enumerate(probs)]
        steps.append({"token": "v0", "logprob": tops[0]["logprob"], "top_logprobs": tops})
    batch = es.read_traces([{"id": "full", "logprobs": {"content": steps}}])
    topk = es.entropy_profile(batch, "topk", precision="float64")
    renorm = es.entropy_profile(batch, "topk_renorm", precision="float64")
    tail = es.entropy_profile(batch, "topk_tail", precision="float64")
    np.testing.assert_allclose(renorm, topk, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(tail, topk, rtol=1e-9, atol=1e-9)


def test_sampled_token_outside_the_returned_set_joins_it() -> None:
    inside = {
        "token": "a",
        "logprob": np.log(0.5),
        "top_logprobs": [
            {"token": "a", "logprob": np.log(0.5)},
            {"token": "b", "logprob": np.log(0.3)},
        ],
    }
    outside = {
        "token": "c",
        "logprob": np.log(0.1),
        "top_logprobs": [
            {"token": "a", "logprob": np.log(0.5)},
            {"token": "b", "logprob": np.log(0.3)},
        ],
    }
    batch = es.read_traces(
        [
            {"id": "in", "logprobs": {"content": [inside]}},
            {"id": "out", "logprobs": {"content": [outside]}},
        ]
    )
    h = StepStats(batch, precision="float64").entropy
    assert h[0] == pytest.approx(-(0.5 * np.log(0.5) + 0.3 * np.log(0.3)))
    assert h[1] == pytest.approx(-(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.1 * np.log(0.1)))
