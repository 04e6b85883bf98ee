"""Storage cost of a trace waiting for an estimator of its model: its stored steps.

    .venv/bin/python benchmarks/waiting_steps_size.py

For every trace of the committed SmolLM2 corpus (top-20 logprobs), the bytes that
`entropy_sentinel.service.waiting.pack_steps` stores for it (a compressed ``.npz`` of its
per-step arrays, float64); prints the median, the 90th percentile and the median bytes
per generated token, and checks that unpacking gives the arrays back exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from entropy_sentinel.service.waiting import pack_steps, unpack_steps
from entropy_sentinel.traces.corpus import read_corpus
from entropy_sentinel.traces.parse import Parsed

__all__: list[str] = []

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus" / "smollm2" / "corpus.parquet"


def main() -> None:
    batch = read_corpus(CORPUS)
    sizes, tokens = [], []
    for i in range(len(batch)):
        lo, hi = int(batch.offsets[i]), int(batch.offsets[i + 1])
        topk = batch.topk_logprobs[lo:hi]
        width = int(np.isfinite(topk).sum(axis=1).max())
        trace = Parsed(
            id=batch.ids[i],
            sampled_logprob=batch.sampled_logprob[lo:hi],
            sampled_in_topk=batch.sampled_in_topk[lo:hi],
            topk_logprobs=topk[:, :width],
            token_entropy=None,
            slice={},
            label=math.nan,
            meta={},
        )
        data = pack_steps(trace)
        back = unpack_steps(trace.id, data)
        assert np.array_equal(back.topk_logprobs, trace.topk_logprobs)
        assert np.array_equal(back.sampled_logprob, trace.sampled_logprob)
        sizes.append(len(data))
        tokens.append(hi - lo)
    size, n = np.array(sizes), np.array(tokens)
    print(
        f"{len(size)} traces (median {np.median(n):.0f} tokens): stored steps median "
        f"{np.median(size):.0f} B, 90th percentile {np.percentile(size, 90):.0f} B, "
        f"median {np.median(size / n):.0f} B per token"
    )


if __name__ == "__main__":
    main()
