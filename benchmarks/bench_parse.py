"""Parsing OpenAI chat JSON with logprobs into arrays: ours vs stdlib json + dict walking.

    .venv/bin/python benchmarks/bench_parse.py [--responses 500] [--tokens 300] [--repeats 5]

Builds OpenAI-style ``chat.completion`` responses as JSON Lines (20 alternatives
per token, each with its ``bytes`` array, as OpenAI returns them; token texts
drawn from the recorded SmolLM2 fixtures), then times in the same run:

* baseline: ``json.loads`` per line, then walking the dicts into the same arrays
  (sampled logprob, [n, k] top-k matrix, sampled-token membership) with numpy;
* ``entropy_sentinel.read_traces`` over the same lines (msgspec typed decoding
  straight into arrays, plus validation).

Prints responses/s, tokens/s and MB/s (medians of ``--repeats`` runs) and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import reference as ref

import entropy_sentinel as es

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "smollm2" / "chat.json"


def make_lines(n_responses: int, n_tokens: int, k: int = 20, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    vocab = sorted(
        {
            alt["token"]
            for resp in json.loads(FIXTURE.read_text())
            for step in resp["choices"][0]["logprobs"]["content"]
            for alt in step["top_logprobs"]
        }
    )
    lines = []
    for r in range(n_responses):
        logits = rng.normal(size=(n_tokens, k)) * rng.uniform(0.5, 6.0, size=(n_tokens, 1))
        logits = -np.sort(-logits, axis=1)
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)) + np.log(0.97)
        words = rng.choice(len(vocab), size=(n_tokens, k))
        content = []
        for t in range(n_tokens):
            tops = [
                {"token": vocab[w], "logprob": float(lp), "bytes": list(vocab[w].encode())}
                for w, lp in zip(words[t], logp[t])
            ]
            content.append(
                {
                    "token": tops[0]["token"],
                    "logprob": tops[0]["logprob"],
                    "bytes": tops[0]["bytes"],
                    "top_logprobs": tops,
                }
            )
        resp = {
            "id": f"chatcmpl-{r}",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "..."},
                    "logprobs": {"content": content, "refusal": None},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": n_tokens},
        }
        lines.append(json.dumps(resp).encode())
    return lines


def stdlib_parse(lines: list[bytes]) -> list[Any]:
    out = []
    for line in lines:
        resp = json.loads(line)
        out.append(ref.arrays_from_chat_content(resp["choices"][0]["logprobs"]["content"]))
    return out


def timed(fn: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=500)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lines = make_lines(args.responses, args.tokens)
    megabytes = sum(map(len, lines)) / 1e6
    n_tokens = args.responses * args.tokens
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"
    )
    print(
        f"input: {args.responses} chat responses x {args.tokens} tokens x 20 alternatives, "
        f"{megabytes:.1f} MB of JSON"
    )

    # Same arrays either way.
    batch = es.read_traces(lines)
    for i, (sampled, in_topk, alts) in enumerate(stdlib_parse(lines[:20])):
        a, b = batch.offsets[i], batch.offsets[i + 1]
        np.testing.assert_array_equal(batch.sampled_logprob[a:b], sampled)
        np.testing.assert_array_equal(batch.sampled_in_topk[a:b], in_topk)
        np.testing.assert_array_equal(batch.topk_logprobs[a:b], alts)

    t_std = timed(lambda: stdlib_parse(lines), args.repeats)
    t_ours = timed(lambda: es.read_traces(lines), args.repeats)
    print(f"\n{'parser':<42}{'responses/s':>13}{'tokens/s':>13}{'MB/s':>9}{'ratio':>8}")
    for name, sec in (
        ("stdlib json.loads + dict walking", t_std),
        ("entropy_sentinel.read_traces (msgspec)", t_ours),
    ):
        print(
            f"{name:<42}{args.responses / sec:>13,.0f}{n_tokens / sec:>13,.0f}"
            f"{megabytes / sec:>9.1f}{t_std / sec:>8.1f}"
        )
    print(f"\n(medians of {args.repeats} runs; outputs checked identical)")


if __name__ == "__main__":
    main()
