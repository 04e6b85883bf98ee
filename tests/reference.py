"""A deliberately simple reference implementation, one trace at a time.

Written straight from docs/definitions.md with plain numpy/scipy and
stdlib ``json`` dict walking, sharing no code with the package. The vectorised
implementation must match it (tests) and beat it (benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]

QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)


def step_entropies(
    sampled: FloatArray, in_topk: npt.NDArray[np.bool_], alts: FloatArray, mode: str
) -> FloatArray:
    """H(t) of one trace. ``alts`` is ``(n, k)`` with -inf padding (probability 0)."""
    p = np.exp(alts)
    plogp = np.where(p > 0, p * np.where(np.isfinite(alts), alts, 0.0), 0.0)
    h = -plogp.sum(axis=1)
    mass = p.sum(axis=1)
    ps = np.exp(sampled)
    extra = ~in_topk
    h = h - np.where(extra & (ps > 0), ps * sampled, 0.0)
    mass = mass + np.where(extra, ps, 0.0)
    if mode == "topk":
        return np.asarray(h, dtype=np.float64)
    if mode == "topk_renorm":
        out: FloatArray = np.zeros(h.shape[0])
        for t in range(h.shape[0]):  # explicit, per step
            probs = list(p[t][p[t] > 0]) + ([ps[t]] if extra[t] and ps[t] > 0 else [])
            m = sum(probs)
            out[t] = -sum((q / m) * math.log(q / m) for q in probs) if m > 0 else 0.0
        return out
    if mode == "topk_tail":
        r = np.clip(1.0 - mass, 0.0, 1.0)
        tail: FloatArray = h - np.where(r > 0, r * np.log(np.where(r > 0, r, 1.0)), 0.0)
        return tail
    raise ValueError(mode)


def profile(h: Sequence[float] | FloatArray) -> FloatArray:
    """The 11 features of one trace from its step entropies."""
    x = np.asarray(h, dtype=np.float64)
    mean = float(np.mean(x))
    std = float(np.std(x))
    flat = std <= 1e-9 * max(1.0, abs(mean))
    q = np.quantile(x, QUANTILES)
    skew = 0.0 if flat else float(stats.skew(x, bias=True))
    kurt = 0.0 if flat else float(stats.kurtosis(x, fisher=True, bias=True))
    return np.array([x.max(), mean, 0.0 if flat else std, *q, skew, kurt, float(np.sum(x))])


def scores(
    sampled: FloatArray, in_topk: npt.NDArray[np.bool_], alts: FloatArray, h: FloatArray
) -> dict[str, float]:
    """The baseline scores of one trace (docs/definitions.md)."""
    n = sampled.shape[0]
    p = np.exp(alts)
    ps = np.exp(sampled)
    margins, tails = [], []
    for t in range(n):
        probs = sorted([*p[t][p[t] > 0], *([ps[t]] if not in_topk[t] else [])], reverse=True)
        probs += [0.0, 0.0]
        margins.append(probs[0] - probs[1])
        tails.append(max(0.0, 1.0 - sum(probs)))
    return {
        "mean_entropy": float(np.mean(h)),
        "max_entropy": float(np.max(h)),
        "sea": float(np.sum(h)),
        "nll_avg": float(-np.mean(sampled)),
        "nll_max": float(-np.min(sampled)),
        "nll_sum": float(-np.sum(sampled)),
        "lntp": math.exp(float(np.mean(sampled))),
        "mtp": math.exp(float(np.min(sampled))),
        "perplexity": math.exp(float(-np.mean(sampled))),
        "top2_margin": float(np.mean(margins)),
        "length": float(n),
        "tail_mass": float(np.mean(tails)),
    }


# --------------------------------------------------------- dict-walking parsers
def arrays_from_chat_content(
    content: list[dict[str, Any]],
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """(sampled, in_topk, alts) from an OpenAI chat ``logprobs.content`` list."""
    k = max((len(s.get("top_logprobs") or []) for s in content), default=0)
    alts = np.full((len(content), k), -np.inf)
    sampled = np.empty(len(content))
    in_topk = np.zeros(len(content), dtype=bool)
    for t, step in enumerate(content):
        sampled[t] = step["logprob"]
        tops = step.get("top_logprobs") or []
        for j, alt in enumerate(tops):
            alts[t, j] = alt["logprob"]
        in_topk[t] = any(alt["token"] == step["token"] for alt in tops)
    return sampled, in_topk, alts


def arrays_from_legacy(
    logprobs: dict[str, Any],
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """(sampled, in_topk, alts) from an OpenAI legacy completions ``logprobs`` object."""
    tokens = logprobs["tokens"]
    tops = logprobs["top_logprobs"]
    k = max((len(d or {}) for d in tops), default=0)
    alts = np.full((len(tokens), k), -np.inf)
    for t, d in enumerate(tops):
        for j, v in enumerate((d or {}).values()):
            alts[t, j] = v
    in_topk = np.array([tok in (d or {}) for tok, d in zip(tokens, tops, strict=True)])
    return np.asarray(logprobs["token_logprobs"], dtype=np.float64), in_topk, alts


def arrays_from_chunks(
    chunks: list[dict[str, Any]],
) -> tuple[FloatArray, npt.NDArray[np.bool_], FloatArray]:
    """Reassemble a single-choice stream, then as for chat."""
    content: list[dict[str, Any]] = []
    for chunk in chunks:
        for choice in chunk["choices"]:
            lp = choice.get("logprobs")
            if lp and lp.get("content"):
                content.extend(lp["content"])
    return arrays_from_chat_content(content)
