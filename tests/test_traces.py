"""Parsing every accepted input shape, and the errors for bad input."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import entropy_sentinel as es
from entropy_sentinel.traces import decode_record
from tests.conftest import SMOLLM2_FIXTURES


def _load(name: str) -> Any:
    return json.loads((SMOLLM2_FIXTURES / name).read_text())


def _step(token: str, logprob: float, alts: dict[str, float]) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": None,
        "top_logprobs": [{"token": t, "logprob": v, "bytes": [1, 2]} for t, v in alts.items()],
    }


CHAT_STEPS = [
    _step("4", -0.1, {"4": -0.1, "5": -2.5}),
    _step("2", -0.7, {"3": -0.5, "2": -0.7, "1": -3.0}),
]


# ----------------------------------------------------------------- the shapes
def test_real_chat_stream_and_completion_shapes_parse() -> None:
    chat = _load("chat.json")
    streams = _load("chat_stream.json")
    batch = es.read_traces(chat + streams)
    assert len(batch) == len(chat) + len(streams)
    assert batch.ids[0] == chat[0]["id"]  # bare responses keep their own id
    # llama-cpp-python always adds the sampled token to the alternatives.
    assert batch.sampled_in_topk.all()
    assert 20 <= batch.k <= 21
    # A stream reassembles to the same tokens as the non-streamed answer (same seed).
    n = len(chat)
    np.testing.assert_array_equal(
        batch.subset(range(n)).sampled_logprob, batch.subset(range(n, 2 * n)).sampled_logprob
    )


def test_real_completions_shape_and_its_empty_answer() -> None:
    completions = _load("completions.json")
    batch = es.read_traces(completions, errors="collect")
    empty = [i for i, c in enumerate(completions) if not c["choices"][0]["logprobs"]["tokens"]]
    assert len(empty) == 1  # recorded: the model stopped at once on one prompt
    assert len(batch) == len(completions) - 1
    (rej,) = batch.rejected
    assert rej.index == empty[0] and rej.record_id == completions[empty[0]]["id"]
    assert rej.field == "$.choices[0].logprobs.tokens"
    assert "empty response" in rej.reason


def test_real_sse_stream_reassembles_in_order() -> None:
    raw = (SMOLLM2_FIXTURES / "chat_stream.sse").read_bytes()
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    tokens = [
        s["token"]
        for c in chunks
        if c["choices"][0]["logprobs"]
        for s in c["choices"][0]["logprobs"]["content"]
    ]
    assert "".join(tokens) == text
    batch = es.read_traces([{"id": "s", "logprobs": chunks}])
    assert batch.n_steps == len(tokens)


def test_canonical_record_with_chat_logprobs_object() -> None:
    rec = {
        "id": "r1",
        "slice": {"domain": "algebra", "customer": "acme"},
        "correct": True,
        "logprobs": {"content": CHAT_STEPS},
        "meta": {"k": 1},
    }
    batch = es.read_traces([rec])
    assert batch.ids == ("r1",)
    assert dict(batch.slices[0]) == {"domain": "algebra", "customer": "acme"}
    assert batch.labels.tolist() == [1.0]
    assert dict(batch.meta[0]) == {"k": 1}
    assert batch.sampled_logprob.tolist() == [-0.1, -0.7]
    assert batch.topk_logprobs.shape == (2, 3)
    assert batch.topk_logprobs[0].tolist() == [-0.1, -2.5, -math.inf]


def test_legacy_completions_logprobs() -> None:
    legacy = {
        "tokens": ["4", "2"],
        "token_logprobs": [-0.1, -0.7],
        "top_logprobs": [{"4": -0.1, "5": -2.5}, {"3": -0.5, "1": -3.0}],
        "text_offset": [0, 1],
    }
    batch = es.read_traces([{"id": "c", "logprobs": legacy}])
    assert batch.sampled_in_topk.tolist() == [True, False]  # "2" is not among step 2's
    h = es.StepStats(batch, precision="float64").entropy
    p = np.exp([-0.5, -3.0, -0.7])
    assert h[1] == pytest.approx(float(-(p * np.log(p)).sum()))


def test_legacy_completions_response_with_null_top_logprobs() -> None:
    resp = {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [
            {
                "index": 0,
                "text": "x",
                "logprobs": {"tokens": ["x"], "token_logprobs": [-0.2], "top_logprobs": None},
            }
        ],
    }
    batch = es.read_traces([resp])
    assert batch.k == 0 and batch.sampled_in_topk.tolist() == [False]


def test_stream_chunks_with_two_choices_give_two_traces() -> None:
    def chunk(index: int, step: dict[str, Any] | None) -> dict[str, Any]:
        lp = {"content": [step]} if step else None
        return {
            "id": "chatcmpl-x",
            "object": "chat.completion.chunk",
            "choices": [{"index": index, "delta": {}, "logprobs": lp}],
        }

    chunks = [
        chunk(0, None),
        chunk(0, CHAT_STEPS[0]),
        chunk(1, CHAT_STEPS[1]),
        chunk(0, CHAT_STEPS[1]),
        chunk(1, None),
    ]
    batch = es.read_traces([{"id": "multi", "logprobs": chunks}])
    assert batch.ids == ("multi/0", "multi/1")
    assert batch.lengths.tolist() == [2, 1]
    assert batch.sampled_logprob.tolist() == [-0.1, -0.7, -0.7]


def test_vllm_response_shape() -> None:
    # vLLM's OpenAI server answers in OpenAI's shapes: a chat completion with n=2.
    resp = {
        "id": "chatcmpl-v",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "42"},
                "logprobs": {"content": CHAT_STEPS},
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {"role": "assistant", "content": "4"},
                "logprobs": {"content": CHAT_STEPS[:1]},
                "finish_reason": "stop",
            },
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }
    batch = es.read_traces([resp])
    assert batch.ids == ("chatcmpl-v/0", "chatcmpl-v/1")
    assert batch.lengths.tolist() == [2, 1]


def test_llama_cpp_server_completion_probabilities() -> None:
    # llama.cpp server /completion with n_probs (logprob format, token ids on both sides).
    resp = {
        "content": " 42",
        "completion_probabilities": [
            {
                "id": 11,
                "token": " 4",
                "bytes": [32, 52],
                "logprob": -0.2,
                "top_logprobs": [
                    {"id": 11, "token": " 4", "bytes": [32, 52], "logprob": -0.2},
                    {"id": 12, "token": " 5", "bytes": [32, 53], "logprob": -1.9},
                ],
            },
            {
                "id": 7,
                "token": "2",
                "bytes": [50],
                "logprob": -2.3,
                "top_logprobs": [{"id": 8, "token": "2", "bytes": [50], "logprob": -0.3}],
            },
        ],
    }
    batch = es.read_traces([{"id": "lc", "logprobs": resp}, resp])
    assert batch.ids == ("lc", "trace-1")
    # Matched by id: token 7 differs from alternative 8 although both decode to "2".
    assert batch.sampled_in_topk.tolist() == [True, False, True, False]


def test_llama_cpp_probability_formats() -> None:
    post = {
        "completion_probabilities": [
            {
                "id": 3,
                "token": "a",
                "prob": 0.6,
                "top_probs": [
                    {"id": 3, "token": "a", "prob": 0.6},
                    {"id": 4, "token": "b", "prob": 0.4},
                ],
            }
        ]
    }
    old = {
        "completion_probabilities": [
            {
                "content": "a",
                "probs": [{"tok_str": "a", "prob": 0.6}, {"tok_str": "b", "prob": 0.4}],
            }
        ]
    }
    batch = es.read_traces([post, old])
    h = es.StepStats(batch, precision="float64").entropy
    want = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    assert h.tolist() == pytest.approx([want, want])


def test_openai_client_objects_are_accepted() -> None:
    openai = pytest.importorskip("openai")
    chat = _load("chat.json")[0]
    model = openai.types.chat.ChatCompletion.model_validate(chat)
    chunks = [
        openai.types.chat.ChatCompletionChunk.model_validate(c)
        for c in _load("chat_stream.json")[0]
    ]
    batch = es.read_traces([model, chunks])
    np.testing.assert_array_equal(
        batch.subset([0]).sampled_logprob, batch.subset([1]).sampled_logprob
    )


def test_numpy_numbers_in_python_records() -> None:
    rec = {"id": "np", "token_entropy": np.array([0.5, 1.0]), "correct": np.bool_(True)}
    batch = es.read_traces([rec])
    assert batch.token_entropy.tolist() == [0.5, 1.0] and batch.labels.tolist() == [1.0]


def test_jsonl_and_gzip_files(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"r{i}", "token_entropy": [0.1 * i, 0.2]}) for i in range(3)]
    plain = tmp_path / "t.jsonl"
    plain.write_text("\n".join(lines[:2]) + "\n\n" + lines[2] + "\n")
    zipped = tmp_path / "t.jsonl.gz"
    with gzip.open(zipped, "wt") as fh:
        fh.write("\n".join(lines))
    seen: list[int] = []
    a = es.read_traces(plain, on_progress=seen.append)
    b = es.read_traces(zipped)
    assert a.ids == b.ids == ("r0", "r1", "r2")
    assert sum(seen) == plain.stat().st_size  # blank lines counted too
    with pytest.raises(es.ConfigError, match="does not exist"):
        es.read_traces(tmp_path / "missing.jsonl")


def test_slices_and_labels_are_normalised_or_rejected() -> None:
    batch = es.read_traces(
        [{"id": "a", "slice": {"tier": 2, "beta": True}, "correct": 0, "token_entropy": [0.1]}]
    )
    assert dict(batch.slices[0]) == {"tier": "2", "beta": "true"}
    assert batch.labels.tolist() == [0.0]
    with pytest.raises(es.TraceError, match=r"\$\.slice\.tier") as err:
        es.read_traces([{"id": "a", "slice": {"tier": [1]}, "token_entropy": [0.1]}])
    assert err.value.record_id == "a"
    with pytest.raises(es.TraceError, match=r"correct = 2"):
        es.read_traces([{"id": "a", "correct": 2, "token_entropy": [0.1]}])


def test_subset_and_concat_keep_everything_aligned() -> None:
    batch = es.read_traces(_load("chat.json")[:4])
    sub = batch.subset([3, 1])
    assert sub.ids == (batch.ids[3], batch.ids[1])
    np.testing.assert_array_equal(es.entropy_profile(sub), es.entropy_profile(batch)[[3, 1]])
    joined = es.TraceBatch.concat([sub, es.read_traces([{"id": "e", "token_entropy": [1.0]}])])
    assert len(joined) == 3 and joined.k == batch.k
    assert joined.has_logprobs.tolist() == [True, True, False]


# ------------------------------------------------------------------- errors
BAD: list[tuple[str, Any, str, str | None]] = [
    (
        "positive",
        {"id": "p", "logprobs": {"content": [_step("a", 0.5, {"a": 0.5})]}},
        "is positive",
        "$.logprobs.content[0].logprob",
    ),
    (
        "alt-positive",
        {"id": "p", "logprobs": {"content": [_step("a", -0.5, {"a": -0.5, "b": 0.1})]}},
        "is positive",
        "$.logprobs.content[0].top_logprobs[1].logprob",
    ),
    ("empty", {"id": "e", "logprobs": {"content": []}}, "empty response", "$.logprobs.content"),
    ("no-logprobs", {"id": "n", "slice": {"domain": "x"}}, "has no logprobs", "$"),
    (
        "null-choice-logprobs",
        {"id": "c", "logprobs": {"choices": [{"index": 0, "logprobs": None}]}},
        "request logprobs=true",
        "$.logprobs.choices[0].logprobs",
    ),
    (
        "string-logprob",
        {"id": "s", "logprobs": {"content": [{"token": "a", "logprob": "x"}]}},
        "Expected `float | null`, got `str`",
        "$.logprobs.content[0].logprob",
    ),
    (
        "null-logprob",
        {"id": "z", "logprobs": {"content": [{"token": "a", "logprob": None}]}},
        "missing",
        "$.logprobs.content[0].logprob",
    ),
    (
        "both",
        {"id": "b", "token_entropy": [0.1], "logprobs": {"content": CHAT_STEPS}},
        "not both",
        "$",
    ),
    (
        "negative-entropy",
        {"id": "h", "token_entropy": [0.1, -0.2]},
        "entropy -0.2",
        "$.token_entropy[1]",
    ),
    (
        "legacy-echo",
        {
            "id": "l",
            "logprobs": {"tokens": ["a"], "token_logprobs": [None], "top_logprobs": [None]},
        },
        "echo",
        "$.logprobs.token_logprobs[0]",
    ),
    (
        "legacy-mismatch",
        {"id": "l", "logprobs": {"tokens": ["a", "b"], "token_logprobs": [-0.1]}},
        "one logprob per token",
        "$.logprobs.token_logprobs",
    ),
    ("unknown-shape", {"id": "u", "logprobs": {"weird": 1}}, "unrecognised", "$.logprobs"),
    ("empty-id", {"id": "", "token_entropy": [0.1]}, "non-empty", "$.id"),
]


@pytest.mark.parametrize(("case", "record", "message", "field"), BAD, ids=[b[0] for b in BAD])
def test_bad_records_name_the_record_and_field(
    case: str, record: Any, message: str, field: str | None
) -> None:
    with pytest.raises(es.TraceError) as err:
        es.read_traces([record])
    assert message in str(err.value)
    assert err.value.field == field
    if record.get("id"):
        assert err.value.record_id == record["id"]
        assert repr(record["id"]) in str(err.value)
    # The same record as a JSON line gives the same error.
    with pytest.raises(es.TraceError) as err2:
        decode_record(json.dumps(record), 0)
    assert err2.value.field == err.value.field


def test_nan_and_infinity_are_rejected() -> None:
    with pytest.raises(es.TraceError, match="NaN is not JSON") as err:
        decode_record(b'{"id": "n", "token_entropy": [NaN]}', 0)
    assert (err.value.record_id, err.value.field) == ("n", "$.token_entropy[0]")
    with pytest.raises(es.TraceError, match="not finite") as err:
        es.read_traces(
            [
                {
                    "id": "n",
                    "logprobs": {
                        "content": [{"token": "a", "logprob": float("nan"), "top_logprobs": []}]
                    },
                }
            ]
        )
    assert err.value.record_id == "n"
    with pytest.raises(es.TraceError, match="not finite"):
        es.read_traces(
            [
                {
                    "id": "i",
                    "logprobs": {
                        "content": [
                            {
                                "token": "a",
                                "logprob": -1.0,
                                "top_logprobs": [{"token": "a", "logprob": float("-inf")}],
                            }
                        ]
                    },
                }
            ]
        )


def test_openai_sentinel_means_probability_zero() -> None:
    rec = {
        "id": "s",
        "logprobs": {
            "content": [
                {
                    "token": "z",
                    "logprob": -9999.0,
                    "top_logprobs": [
                        {"token": "a", "logprob": math.log(0.7)},
                        {"token": "b", "logprob": -9999.0},
                    ],
                }
            ]
        },
    }
    h = es.StepStats(es.read_traces([rec]), precision="float64").entropy
    assert h[0] == pytest.approx(-0.7 * math.log(0.7))


def test_bulk_mode_lists_every_rejection_and_keeps_order(tmp_path: Path) -> None:
    good = json.dumps({"id": "g1", "token_entropy": [0.1]})
    lines = [
        good,
        "{not json",
        json.dumps({"id": "bad", "token_entropy": []}),
        json.dumps({"id": "g2", "token_entropy": [0.2]}),
        "[1, 2]",
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    batch = es.read_traces(path, errors="collect")
    assert batch.ids == ("g1", "g2")
    assert [r.index for r in batch.rejected] == [1, 2, 4]
    assert batch.rejected[1].record_id == "bad"
    assert "not valid JSON" in batch.rejected[0].reason
    assert len(batch) + len(batch.rejected) == len(lines)
    with pytest.raises(es.TraceError):
        es.read_traces(path)
    with pytest.raises(es.ConfigError, match="errors="):
        es.read_traces(path, errors="ignore")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "id",
                            "logprobs",
                            "content",
                            "token",
                            "logprob",
                            "top_logprobs",
                            "choices",
                            "tokens",
                            "token_logprobs",
                            "token_entropy",
                            "slice",
                            "correct",
                            "completion_probabilities",
                            "probs",
                            "prob",
                            "x",
                        ]
                    ),
                    children,
                    max_size=5,
                )
            ),
            max_leaves=25,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_parsers_survive_arbitrary_input(raw: bytes) -> None:
    """Any input either parses into valid traces or raises TraceError: nothing else."""
    try:
        parsed = decode_record(raw, 0)
    except es.TraceError as exc:
        assert str(exc)
        return
    for trace in parsed:
        assert trace.n_steps >= 1
        assert np.all(np.isfinite(trace.sampled_logprob) | (trace.token_entropy is not None))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
def test_python_objects_survive_arbitrary_input(obj: dict[str, Any]) -> None:
    try:
        decode_record(obj, 3)
    except es.TraceError as exc:
        assert exc.index == 3


def test_validate_from_arrays_input() -> None:
    with pytest.raises(es.TraceError, match="invalid"):
        es.TraceBatch.from_arrays([0, 1], topk_logprobs=[[0.5]])
    with pytest.raises(es.TraceError, match="at least one"):
        es.TraceBatch.from_arrays([0, 0], token_entropy=[])
    batch = es.TraceBatch.from_arrays([0, 2], topk_logprobs=[[-0.1, -3.0], [-0.2, -np.inf]])
    assert batch.sampled_logprob.tolist() == [-0.1, -0.2]


def test_rejection_round_trips_as_json() -> None:
    rej = es.Rejection(index=4, record_id="r", field="$.x", reason="bad")
    assert msgspec.json.decode(msgspec.json.encode(rej))["field"] == "$.x"
    assert str(rej) == "#4 record 'r' field $.x: bad"


# ------------------------------------------------ real llama.cpp C++ server
LLAMACPP = SMOLLM2_FIXTURES.parent / "llamacpp"


def test_real_llama_cpp_server_shapes_match_the_reference() -> None:
    from tests import reference as ref

    native = json.loads((LLAMACPP / "completion_logprobs.json").read_text())
    post = json.loads((LLAMACPP / "completion_post_sampling.json").read_text())
    chat = json.loads((LLAMACPP / "chat.json").read_text())
    batch = es.read_traces(native + post + chat)
    assert len(batch) == 9
    h = es.StepStats(batch, precision="float64").entropy
    steps = [r["completion_probabilities"] for r in native]
    steps += [
        [
            {
                "token": s["token"],
                "logprob": math.log(s["prob"]),
                "top_logprobs": [
                    {"token": a["token"], "logprob": math.log(a["prob"])}
                    for a in s["top_probs"]
                    if a["prob"] > 0
                ],
            }
            for s in r["completion_probabilities"]
        ]
        for r in post
    ]
    steps += [r["choices"][0]["logprobs"]["content"] for r in chat]
    for i, content in enumerate(steps):
        sampled, in_topk, alts = ref.arrays_from_chat_content(content)
        want = ref.step_entropies(sampled, in_topk, alts, "topk")
        got = h[batch.offsets[i] : batch.offsets[i + 1]]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    # The native response's token-id list ("tokens") is not mistaken for legacy tokens.
    with_ids = dict(native[0], tokens=[1, 2, 3])
    assert es.read_traces([with_ids]).n_steps == len(native[0]["completion_probabilities"])
    with pytest.raises(es.TraceError, match="token strings"):
        es.read_traces([{"id": "x", "logprobs": {"tokens": [1], "token_logprobs": [-0.1]}}])


def test_deeply_nested_input_is_a_trace_error() -> None:
    raw = b'{"id": "deep", "meta": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001
    with pytest.raises(es.TraceError, match="nested too deeply") as err:
        decode_record(raw, 5)
    assert err.value.index == 5
    raw = b'{"id": "deep", "meta": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(es.TraceError, match=r"Expected `object \| null`, got `array`"):
        decode_record(raw, 5)
