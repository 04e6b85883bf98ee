"""The fast top-logprobs selection is exact, and the patched server answers identically."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy_sentinel.llama_launch import TOP_N, fast_sorted


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


def _chat(base_url: str, model: str, **extra: Any) -> dict[str, Any]:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Name three colours."}],
        "max_tokens": 24,
        "temperature": 0.5,
        "seed": 3,
        "logprobs": True,
        "top_logprobs": 20,
        **extra,
    }
    req = urllib.request.Request(
        f"{base_url}/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    for key in ("id", "created"):
        out.pop(key)
    return out


@pytest.mark.model
def test_patched_server_answers_exactly_like_the_untouched_one(model_server: Any) -> None:
    from entropy_sentinel.model_server import LocalModelServer

    patched = _chat(model_server.base_url, model_server.alias)
    with LocalModelServer(fast_logprobs=False) as plain:
        untouched = _chat(plain.base_url, plain.alias)
    assert patched == untouched
    assert len(patched["choices"][0]["logprobs"]["content"]) > 0
