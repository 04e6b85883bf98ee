"""The fast top-logprobs selection is exact, and the patched server answers identically."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.collect.llama_launch import TOP_N, fast_sorted


def _full(values: np.ndarray) -> list[tuple[float, int]]:
    return [(float(v), i) for v, i in sorted(zip(values, range(len(values))), reverse=True)]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 3000),
    decimals=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_fast_sorted_equals_the_full_sort_prefix(
    n: int, decimals: int, seed: int, dtype: type[np.floating]
) -> None:
    values = np.round(np.random.default_rng(seed).normal(size=n) * 3, decimals).astype(dtype)
    got = fast_sorted(zip(values, range(n)), reverse=True)
    want = _full(values)[:TOP_N]
    assert [(float(v), i) for v, i in got] == want
    assert all(type(g[0]) is dtype for g in got)  # same scalar types as the full sort


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 3000), decimals=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_fast_sorted_on_a_list_equals_the_full_sort_prefix(
    n: int, decimals: int, seed: int
) -> None:
    """llama-cpp-python's streaming path sorts ``logprobs.tolist()``: a list of floats."""
    values = np.round(np.random.default_rng(seed).normal(size=n) * 3, decimals)
    listed = values.astype(np.float32).tolist()
    got = fast_sorted(zip(listed, range(n)), reverse=True)
    want = sorted(zip(listed, range(n)), reverse=True)[:TOP_N]
    assert got == want
    assert all(type(v) is float for v, _ in got)


def test_other_calls_go_to_the_builtin_sort() -> None:
    values = np.array([0.5, 2.0, 1.0], dtype=np.float32)
    assert fast_sorted([3, 1, 2]) == [1, 2, 3]
    assert fast_sorted(zip(values, range(3))) == sorted(zip(values, range(3)))  # not reversed
    assert fast_sorted(zip(values, range(1, 4)), reverse=True) == sorted(
        zip(values, range(1, 4)), reverse=True
    )
    started = zip(values, range(3))
    next(started)
    assert fast_sorted(started, reverse=True) == [(np.float32(2.0), 1), (np.float32(1.0), 2)]
    nan = np.array([np.nan, 1.0])
    assert len(fast_sorted(zip(nan, range(2)), reverse=True)) == 2


def _body(model: str, question: str, **extra: Any) -> dict[str, Any]:
    """A chat request at temperature 0.5 with the top-20 logprobs (``extra`` on top)."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "temperature": 0.5,
        "logprobs": True,
        "top_logprobs": 20,
        **extra,
    }


def _post(base_url: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(
        f"{base_url}/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )


def _chat(base_url: str, model: str, **extra: Any) -> dict[str, Any]:
    body = _body(model, "Name three colours.", max_tokens=24, seed=3, **extra)
    with urllib.request.urlopen(_post(base_url, body), timeout=120) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    for key in ("id", "created"):
        out.pop(key)
    return out


def _chat_stream(base_url: str, model: str) -> list[dict[str, Any]]:
    """The streamed answer's chunks (llama-cpp-python sorts a list on this path)."""
    body = _body(model, "Name two animals.", max_tokens=16, seed=5, stream=True)
    chunks = []
    with urllib.request.urlopen(_post(base_url, body), timeout=120) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunk = json.loads(line[6:])
                chunk.pop("id")
                chunk.pop("created")
                chunks.append(chunk)
    return chunks


@pytest.mark.model
def test_patched_server_answers_exactly_like_the_untouched_one(model_server: Any) -> None:
    from entropy_sentinel.collect.model_server import LocalModelServer

    patched = _chat(model_server.base_url, model_server.alias)
    patched_stream = _chat_stream(model_server.base_url, model_server.alias)
    with LocalModelServer(fast_logprobs=False) as plain:
        untouched = _chat(plain.base_url, plain.alias)
        untouched_stream = _chat_stream(plain.base_url, plain.alias)
    assert patched == untouched
    assert len(patched["choices"][0]["logprobs"]["content"]) > 0
    assert patched_stream == untouched_stream
    with_logprobs = [c for c in patched_stream if (c["choices"][0].get("logprobs") or {})]
    assert len(with_logprobs) > 5
