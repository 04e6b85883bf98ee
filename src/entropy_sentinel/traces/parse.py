"""Turn one decoded record into flat per-step arrays, validating as it goes.

Each accepted shape (see `entropy_sentinel.traces.shapes`) is flattened by one
small function into a `Parsed` trace: the sampled-token logprob per step, whether
the sampled token is among the returned alternatives, and the alternatives'
logprobs as an ``[n_steps, k]`` matrix padded with ``-inf``. Work per token is a
list comprehension over msgspec structs feeding numpy; everything after that is
vectorised.

Errors are `TraceError` with the record id and a JSON path to the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel.errors import ConfigError, TraceError
from entropy_sentinel.timeutil import parse_instant
from entropy_sentinel.traces.shapes import Alt, Choice, ChoiceLogprobs, Node, Record, Step

__all__ = ["MAX_K", "Parsed", "parse_record"]

MAX_K = 1000
"""Largest ``k`` (requested top logprobs) a record may state."""

_EMPTY_ALTS: list[Alt] = []
_ASK_FOR_LOGPROBS = "request logprobs=true (top_logprobs=20) from the server"


@dataclass(frozen=True, slots=True)
class Parsed:
    """One trace, flattened. Arrays have one row per generated token."""

    id: str
    sampled_logprob: npt.NDArray[np.float64]
    sampled_in_topk: npt.NDArray[np.bool_]
    topk_logprobs: npt.NDArray[np.float64]  # (n, k), -inf padded
    token_entropy: npt.NDArray[np.float64] | None  # precomputed, or None
    slice: Mapping[str, str]
    label: float
    meta: Mapping[str, Any]
    model: str | None = None
    k: int = 0  # top_logprobs the request asked for; 0 when the record does not say
    prompt: str | list[dict[str, Any]] | None = None
    answer: str | None = None
    timestamp: float = math.nan  # Unix epoch seconds (UTC); NaN when the record does not say

    @property
    def n_steps(self) -> int:
        return int(self.sampled_logprob.shape[0])


def parse_record(record: Record | list[Step], index: int) -> list[Parsed]:
    """Flatten one decoded record into one trace per choice.

    ``index`` is the record's position in its source; it names records without
    an id (``trace-<index>``). A response with several choices gives one trace per
    choice, with ids ``<id>/<choice index>``.
    """
    if isinstance(record, list):  # a bare list of stream chunks
        record = Record(logprobs=record)
    rid = _record_id(record, index)
    slice_ = _parse_slice(record.slice, rid)
    label = _parse_label(record.correct, rid)
    meta = record.meta if record.meta is not None else {}
    model, k = _parse_model(record, rid), _parse_k(record.k, rid)
    when = _parse_timestamp(record.timestamp, rid)

    if record.token_entropy is not None:
        if record.logprobs is not None:
            raise TraceError(
                "give either logprobs or token_entropy, not both", record_id=rid, field="$"
            )
        ent = np.asarray(record.token_entropy, dtype=np.float64)
        _check_entropy(ent, rid)
        n = ent.shape[0]
        return [
            Parsed(
                id=rid,
                sampled_logprob=np.full(n, np.nan),
                sampled_in_topk=np.zeros(n, dtype=bool),
                topk_logprobs=np.full((n, 0), -np.inf),
                token_entropy=ent,
                slice=slice_,
                label=label,
                meta=meta,
                model=model,
                k=k,
                prompt=record.prompt,
                answer=record.answer,
                timestamp=when,
            )
        ]

    if record.logprobs is not None:
        flats = _resolve(record.logprobs, rid, "$.logprobs")
    elif record.choices is not None or record.completion_probabilities is not None:
        flats = _resolve(record, rid, "$")
    else:
        raise TraceError(
            "record has no logprobs: give `logprobs` (an OpenAI, vLLM or llama.cpp response or "
            "its logprobs object) or `token_entropy` (per-token entropies in nats)",
            record_id=rid,
            field="$",
        )
    multi = len(flats) > 1
    return [
        Parsed(
            id=f"{rid}/{suffix}" if multi else rid,
            sampled_logprob=sampled,
            sampled_in_topk=in_topk,
            topk_logprobs=topk,
            token_entropy=None,
            slice=slice_,
            label=label,
            meta=meta,
            model=model,
            k=k,
            prompt=record.prompt,
            answer=record.answer,
            timestamp=when,
        )
        for suffix, (sampled, in_topk, topk) in flats
    ]


# --------------------------------------------------------------------- envelope
def _record_id(record: Record, index: int) -> str:
    if record.id is None:
        return f"trace-{index}"
    rid = str(record.id)
    if not rid:
        raise TraceError("id must be a non-empty string", field="$.id", index=index)
    return rid


def _parse_timestamp(value: str | float | None, rid: str) -> float:
    """The record's ``timestamp`` (RFC 3339 text or epoch seconds) in epoch seconds."""
    if value is None:
        return math.nan
    try:
        return parse_instant(value, what="timestamp")
    except ConfigError as exc:
        raise TraceError(str(exc), record_id=rid, field="$.timestamp") from None


def _parse_model(record: Record, rid: str) -> str | None:
    """The record's ``model`` (the model the client asked for), else the model named by
    the response it carries (the answer's), else None."""
    model = record.model
    if model is None and isinstance(record.logprobs, Node):
        model = record.logprobs.model
    if model is not None and not model:
        raise TraceError("model must be a non-empty string", record_id=rid, field="$.model")
    return model


def _parse_k(raw: int | None, rid: str) -> int:
    """The requested number of top logprobs (``k``), 0 when absent."""
    if raw is None:
        return 0
    if isinstance(raw, bool) or not 1 <= raw <= MAX_K:
        raise TraceError(
            f"k={raw!r} must be the number of top logprobs the request asked for, an integer "
            f"from 1 to {MAX_K} (OpenAI's top_logprobs allows up to 20)",
            record_id=rid,
            field="$.k",
        )
    return raw


def _parse_slice(raw: Mapping[str, Any] | None, rid: str) -> Mapping[str, str]:
    if not raw:
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not key:
            raise TraceError(
                "slice dimension names must be non-empty", record_id=rid, field="$.slice"
            )
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            out[key] = str(value)
        else:
            raise TraceError(
                f"slice value {value!r} must be a string (or a number/boolean)",
                record_id=rid,
                field=f"$.slice.{key}",
            )
    return out


def _parse_label(raw: bool | int | None, rid: str) -> float:
    if raw is None:
        return float("nan")
    if isinstance(raw, bool) or raw in (0, 1):
        return float(raw)
    raise TraceError(
        f"correct = {raw!r} must be true/false (or 1/0)", record_id=rid, field="$.correct"
    )


def _check_entropy(ent: npt.NDArray[np.float64], rid: str) -> None:
    if ent.shape[0] == 0:
        raise TraceError(
            "empty response: token_entropy has no steps", record_id=rid, field="$.token_entropy"
        )
    bad = ~(np.isfinite(ent) & (ent >= 0.0))
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise TraceError(
            f"entropy {float(ent[j])!r} is invalid: entropies are finite and >= 0 (nats)",
            record_id=rid,
            field=f"$.token_entropy[{j}]",
        )


# ----------------------------------------------------------------- resolution
_Flat = tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]


def _resolve(node: Node | Record | list[Step], rid: str, path: str) -> list[tuple[str, _Flat]]:
    """Find the shape of ``node`` and flatten it: one entry per choice."""
    if isinstance(node, list):
        if not node:
            raise TraceError("empty response: no generated tokens", record_id=rid, field=path)
        if node[0].choices is not None or node[0].object == "chat.completion.chunk":
            return _from_chunks(node, rid, path)
        return [("0", _from_steps(node, rid, path))]
    if node.choices is not None:
        return _from_choices(node.choices, rid, f"{path}.choices")
    if node.completion_probabilities is not None:
        return [
            (
                "0",
                _from_steps(node.completion_probabilities, rid, f"{path}.completion_probabilities"),
            )
        ]
    if isinstance(node.content, list):
        return [("0", _from_steps(node.content, rid, f"{path}.content"))]
    if node.tokens is not None:
        return [("0", _from_legacy(node, rid, path))]
    raise TraceError(
        "unrecognised logprobs shape: expected chat `content`, legacy `tokens`/"
        "`token_logprobs`/`top_logprobs`, `choices`, or llama.cpp `completion_probabilities`",
        record_id=rid,
        field=path,
    )


def _from_choices(choices: list[Choice], rid: str, path: str) -> list[tuple[str, _Flat]]:
    if not choices:
        raise TraceError("response has no choices", record_id=rid, field=path)
    out = []
    for pos, choice in enumerate(choices):
        where = f"{path}[{pos}].logprobs"
        lp = choice.logprobs
        if lp is None:
            raise TraceError(
                f"choice has no logprobs: {_ASK_FOR_LOGPROBS}", record_id=rid, field=where
            )
        out.append((str(choice.index), _from_choice_logprobs(lp, rid, where)))
    return out


def _from_choice_logprobs(lp: ChoiceLogprobs, rid: str, path: str) -> _Flat:
    if lp.content is not None:
        return _from_steps(lp.content, rid, f"{path}.content")
    if lp.tokens is not None:
        return _from_legacy(lp, rid, path)
    raise TraceError(
        f"logprobs has neither `content` nor `tokens`: {_ASK_FOR_LOGPROBS}",
        record_id=rid,
        field=path,
    )


def _from_chunks(chunks: Sequence[Step], rid: str, path: str) -> list[tuple[str, _Flat]]:
    """Reassemble streamed ``chat.completion.chunk`` objects, in their order, per choice."""
    per_choice: dict[int, list[Step]] = {}
    for pos, chunk in enumerate(chunks):
        if chunk.choices is None:
            raise TraceError("stream chunk has no `choices`", record_id=rid, field=f"{path}[{pos}]")
        for choice in chunk.choices:
            steps = per_choice.setdefault(choice.index, [])
            if choice.logprobs is not None and choice.logprobs.content:
                steps.extend(choice.logprobs.content)
    out = []
    for index in sorted(per_choice):
        steps = per_choice[index]
        if not steps:
            raise TraceError(
                f"stream carries no logprobs for choice {index}: {_ASK_FOR_LOGPROBS}",
                record_id=rid,
                field=path,
            )
        out.append(
            (str(index), _from_steps(steps, rid, f"{path}[*].choices[{index}].logprobs.content"))
        )
    return out


def _from_steps(steps: Sequence[Step], rid: str, path: str) -> _Flat:
    """Chat / vLLM / llama.cpp token steps -> arrays."""
    n = len(steps)
    if n == 0:
        raise TraceError("empty response: no generated tokens", record_id=rid, field=path)
    first = steps[0]
    if first.logprob is None and (first.prob is not None or first.probs is not None):
        return _from_prob_steps(steps, rid, path)
    sampled_list = [s.logprob for s in steps]
    if None in sampled_list:
        j = sampled_list.index(None)
        raise TraceError("logprob is missing (null)", record_id=rid, field=f"{path}[{j}].logprob")
    alts = [s.top_logprobs or _EMPTY_ALTS for s in steps]
    alt_lp = [a.logprob for row in alts for a in row]
    if None in alt_lp:
        j, i = _locate(alts, alt_lp.index(None))
        raise TraceError(
            "logprob is missing (null)",
            record_id=rid,
            field=f"{path}[{j}].top_logprobs[{i}].logprob",
        )
    sampled = np.asarray(sampled_list, dtype=np.float64)
    counts = np.fromiter(map(len, alts), dtype=np.int64, count=n)
    flat = np.asarray(alt_lp, dtype=np.float64)
    _check_logprobs(sampled, rid, lambda j: f"{path}[{j}].logprob")
    _check_logprobs(
        flat, rid, lambda f: "{}[{}].top_logprobs[{}].logprob".format(path, *_locate(alts, f))
    )
    if first.id is not None and isinstance(first.id, int):
        # llama.cpp carries token ids on both sides: match exactly by id.
        sampled_keys: list[Any] = [s.id for s in steps]
        alt_keys: list[Any] = [a.id for row in alts for a in row]
    else:
        sampled_keys = [s.token for s in steps]
        alt_keys = [a.token for row in alts for a in row]
    in_topk = _membership(sampled_keys, alt_keys, counts)
    return sampled, in_topk, _pad(flat, counts)


def _from_prob_steps(steps: Sequence[Step], rid: str, path: str) -> _Flat:
    """llama.cpp probability formats (``post_sampling_probs`` or pre-2025 ``probs``)."""
    n = len(steps)
    sampled_p: list[float | None] = []
    sampled_tok: list[Any] = []
    alts: list[list[Alt]] = []
    for s in steps:
        row = s.top_probs if s.top_probs is not None else (s.probs or _EMPTY_ALTS)
        alts.append(row)
        if s.prob is not None:  # post_sampling_probs
            sampled_p.append(s.prob)
            sampled_tok.append(s.id if isinstance(s.id, int) else s.token)
        else:  # pre-2025: the sampled token is known by text only; take its listed prob
            tok = s.content
            match = [a.prob for a in row if a.tok_str == tok]
            sampled_p.append(match[0] if match else None)
            sampled_tok.append(tok)
    if None in sampled_p:
        j = sampled_p.index(None)
        raise TraceError(
            "probability of the sampled token is missing", record_id=rid, field=f"{path}[{j}]"
        )
    alt_p = [a.prob for row in alts for a in row]
    if None in alt_p:
        j, i = _locate(alts, alt_p.index(None))
        raise TraceError("prob is missing (null)", record_id=rid, field=f"{path}[{j}].probs[{i}]")
    counts = np.fromiter(map(len, alts), dtype=np.int64, count=n)
    p = np.asarray(sampled_p, dtype=np.float64)
    flat_p = np.asarray(alt_p, dtype=np.float64)
    for arr, name in ((p, "prob"), (flat_p, "probs")):
        bad = ~(np.isfinite(arr) & (arr >= 0.0) & (arr <= 1.0))
        if bad.any():
            raise TraceError(
                f"probability {float(arr[np.flatnonzero(bad)[0]])!r} is outside [0, 1]",
                record_id=rid,
                field=f"{path}[*].{name}",
            )
    with np.errstate(divide="ignore"):
        sampled = np.log(p)
        flat = np.log(flat_p)
    sampled[sampled == -np.inf] = -9999.0  # probability 0: OpenAI's "outside the set" sentinel
    use_ids = (
        bool(alts)
        and any(a.id is not None for row in alts for a in row)
        and isinstance(sampled_tok[0], int)
    )
    alt_keys = [
        (a.id if use_ids else (a.token if a.token is not None else a.tok_str))
        for row in alts
        for a in row
    ]
    return sampled, _membership(sampled_tok, alt_keys, counts), _pad(flat, counts)


def _from_legacy(lp: ChoiceLogprobs | Node, rid: str, path: str) -> _Flat:
    """OpenAI legacy completions: ``tokens``, ``token_logprobs``, ``top_logprobs`` dicts."""
    tokens = lp.tokens or []
    n = len(tokens)
    if n == 0:
        raise TraceError(
            "empty response: no generated tokens", record_id=rid, field=f"{path}.tokens"
        )
    if not all(isinstance(t, str) for t in tokens):
        raise TraceError(
            "legacy completions `tokens` must be token strings, not ids",
            record_id=rid,
            field=f"{path}.tokens",
        )
    token_lp = lp.token_logprobs
    if token_lp is None or len(token_lp) != n:
        raise TraceError(
            f"token_logprobs must list one logprob per token ({n})",
            record_id=rid,
            field=f"{path}.token_logprobs",
        )
    if None in token_lp:
        j = token_lp.index(None)
        raise TraceError(
            "logprob is missing (null); do not use echo=true",
            record_id=rid,
            field=f"{path}.token_logprobs[{j}]",
        )
    top = lp.top_logprobs if lp.top_logprobs is not None else [None] * n
    if len(top) != n:
        raise TraceError(
            f"top_logprobs must have one entry per token ({n}), got {len(top)}",
            record_id=rid,
            field=f"{path}.top_logprobs",
        )
    dicts = [d or {} for d in top]
    counts = np.fromiter(map(len, dicts), dtype=np.int64, count=n)
    sampled = np.asarray(token_lp, dtype=np.float64)
    flat = np.fromiter(
        (v for d in dicts for v in d.values()), dtype=np.float64, count=int(counts.sum())
    )
    _check_logprobs(sampled, rid, lambda j: f"{path}.token_logprobs[{j}]")
    _check_logprobs(flat, rid, lambda f: f"{path}.top_logprobs[{_locate(dicts, f)[0]}]")
    in_topk = np.fromiter((t in d for t, d in zip(tokens, dicts, strict=True)), dtype=bool, count=n)
    return sampled, in_topk, _pad(flat, counts)


# -------------------------------------------------------------------- helpers
def _check_logprobs(values: npt.NDArray[np.float64], rid: str, where: Any) -> None:
    """Logprobs must be finite and <= 0; ``where(i)`` names the field of flat index ``i``."""
    bad = ~(np.isfinite(values) & (values <= 0.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        v = float(values[i])
        why = "is positive" if v > 0 else "is not finite"
        raise TraceError(
            f"logprob {v!r} {why}: logprobs are natural-log probabilities, finite and <= 0 "
            "(use -9999 for 'outside the returned set')",
            record_id=rid,
            field=where(i),
        )


def _locate(rows: Sequence[Sequence[Any] | Mapping[str, Any]], flat_index: int) -> tuple[int, int]:
    """(row, position) of ``flat_index`` in the concatenation of ``rows``."""
    seen = 0
    for j, row in enumerate(rows):
        if flat_index < seen + len(row):
            return j, flat_index - seen
        seen += len(row)
    raise IndexError(flat_index)


def _membership(
    sampled: Sequence[Any], alts: Sequence[Any], counts: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    """Per step: is the sampled key among that step's alternative keys?"""
    n = counts.shape[0]
    if not alts:
        return np.zeros(n, dtype=bool)
    a = np.empty(len(alts), dtype=object)
    a[:] = alts
    s = np.empty(n, dtype=object)
    s[:] = sampled
    eq = a == np.repeat(s, counts)
    # Rows with no alternatives get False; reduceat needs in-bounds starts.
    hits = np.zeros(n, dtype=bool)
    nonzero = counts > 0
    starts = (np.cumsum(counts) - counts)[nonzero]
    hits[nonzero] = np.logical_or.reduceat(eq, starts)
    return hits


def _pad(flat: npt.NDArray[np.float64], counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Scatter ``flat`` into an ``[n, max(counts)]`` matrix padded with ``-inf``."""
    n = counts.shape[0]
    k = int(counts.max()) if n else 0
    out = np.full((n, k), -np.inf)
    if flat.shape[0]:
        if np.all(counts == k):
            out[:] = flat.reshape(n, k)
        else:
            rows = np.repeat(np.arange(n), counts)
            cols = np.arange(flat.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
            out[rows, cols] = flat
    return out
