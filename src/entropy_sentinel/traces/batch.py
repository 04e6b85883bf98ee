"""`TraceBatch`: many generated responses held as ragged arrays.

A batch of ``n`` traces with ``N`` generated tokens in total is stored as flat
per-step arrays plus an ``offsets`` vector: the steps of trace ``i`` are rows
``offsets[i]:offsets[i + 1]``. Nothing in here is a per-token Python object, so
features and scores are vectorised reductions over the whole batch.

Conventions:

* logprobs are natural-log probabilities (``<= 0``); ``-inf`` pads the top-k
  matrix where a step returned fewer than ``K`` alternatives.
* ``token_entropy`` holds precomputed per-step entropies in nats for traces that
  only carry entropies, and NaN for steps whose entropy is computed from logprobs.
* ``labels`` is 1.0 (correct), 0.0 (wrong) or NaN (unlabelled).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import BoolArray, FloatArray, IntArray
from entropy_sentinel.errors import TraceError

__all__ = ["Rejection", "TraceBatch"]


@dataclass(frozen=True)
class Rejection:
    """A record that could not be read, kept so that nothing is dropped silently.

    Attributes:
        index: 0-based position of the record in its source (line number - 1 for JSONL).
        record_id: the record's ``id`` when it could be read, else ``None``.
        field: JSON path of the offending field, or ``None``.
        reason: what is wrong and how to fix it.
    """

    index: int
    record_id: str | None
    field: str | None
    reason: str

    @classmethod
    def from_error(cls, index: int, error: TraceError) -> Rejection:
        return cls(index=index, record_id=error.record_id, field=error.field, reason=error.reason)

    def __str__(self) -> str:
        who = f"record {self.record_id!r}" if self.record_id is not None else "record"
        where = f" field {self.field}" if self.field else ""
        return f"#{self.index} {who}{where}: {self.reason}"


@dataclass(frozen=True, eq=False)
class TraceBatch:
    """A batch of traces as ragged arrays (see the module docstring).

    Attributes:
        ids: one id per trace, shape ``(n,)``.
        offsets: int64 ``(n + 1,)``, ``offsets[0] == 0``, non-decreasing; each trace has
            at least one step.
        sampled_logprob: float64 ``(N,)``, logprob of the sampled token in nats; NaN on
            steps of entropy-only traces.
        sampled_in_topk: bool ``(N,)``, whether the sampled token (matched by token string)
            is among the returned alternatives. When it is not, it joins the returned set.
        topk_logprobs: float64 ``(N, K)``, the returned alternatives' logprobs, padded with
            ``-inf``; ``K`` is the largest number of alternatives of any step in the batch.
        token_entropy: float64 ``(N,)``, precomputed entropy in nats, NaN where computed.
        slices: per trace, the slice labels (dimension -> value), e.g. ``{"domain": "gsm8k"}``.
        labels: float64 ``(n,)``: 1.0 correct, 0.0 wrong, NaN unlabelled.
        meta: per trace, free-form metadata carried through untouched.
        rejected: records of the source that could not be read (bulk mode only).
        models: per trace, the model it came from (the record's ``model``: the one the
            client asked for, else the one its response names), or None.
        requested_k: int64 ``(n,)``, the number of top logprobs the request asked for,
            0 where the record does not say (see `trace_k`).
        prompts, answers: per trace, the prompt (text or chat messages) and the answer
            text when the record carries them (an opt-in of the application), else None.
        timestamps: float64 ``(n,)``, when the trace happened (the record's ``timestamp``)
            in Unix epoch seconds (UTC), NaN where the record does not say.
    """

    ids: tuple[str, ...]
    offsets: IntArray
    sampled_logprob: FloatArray
    sampled_in_topk: BoolArray
    topk_logprobs: FloatArray
    token_entropy: FloatArray
    slices: tuple[Mapping[str, str], ...]
    labels: FloatArray
    meta: tuple[Mapping[str, Any], ...]
    rejected: tuple[Rejection, ...] = field(default=())
    models: tuple[str | None, ...] = field(default=())
    requested_k: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    prompts: tuple[Any, ...] = field(default=())
    answers: tuple[str | None, ...] = field(default=())
    timestamps: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        n = len(self.ids)
        # per-trace extras default to "not given" for every trace
        for name in ("models", "prompts", "answers"):
            if not getattr(self, name) and n:
                object.__setattr__(self, name, (None,) * n)
        if self.requested_k.shape[0] == 0 and n:
            object.__setattr__(self, "requested_k", np.zeros(n, dtype=np.int64))
        if self.timestamps.shape[0] == 0 and n:
            object.__setattr__(self, "timestamps", np.full(n, np.nan))
        offsets = self.offsets
        if offsets.ndim != 1 or offsets.shape[0] != n + 1 or (n + 1 > 0 and offsets[0] != 0):
            raise ValueError(f"offsets must have shape ({n + 1},) and start at 0")
        if n and np.any(np.diff(offsets) < 1):
            bad = int(np.flatnonzero(np.diff(offsets) < 1)[0])
            raise TraceError("a trace needs at least one generated token", record_id=self.ids[bad])
        n_steps = int(offsets[-1])
        for name in ("sampled_logprob", "sampled_in_topk", "token_entropy"):
            arr = getattr(self, name)
            if arr.shape != (n_steps,):
                raise ValueError(f"{name} must have shape ({n_steps},), got {arr.shape}")
        if self.topk_logprobs.ndim != 2 or self.topk_logprobs.shape[0] != n_steps:
            raise ValueError(
                f"topk_logprobs must have shape ({n_steps}, K), got {self.topk_logprobs.shape}"
            )
        for name in ("slices", "meta", "models", "prompts", "answers"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} must have one entry per trace ({n})")
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {self.labels.shape}")
        if self.requested_k.shape != (n,):
            raise ValueError(f"requested_k must have shape ({n},), got {self.requested_k.shape}")
        if self.timestamps.shape != (n,):
            raise ValueError(f"timestamps must have shape ({n},), got {self.timestamps.shape}")

    # ----------------------------------------------------------------- shape
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_steps(self) -> int:
        """Total number of generated tokens in the batch (``N``)."""
        return int(self.offsets[-1])

    @property
    def lengths(self) -> IntArray:
        """Generated tokens per trace, int64 ``(n,)``."""
        return np.diff(self.offsets)

    @property
    def k(self) -> int:
        """Width ``K`` of the top-k matrix (the most alternatives any step returned).

        A property of the batch's storage, not of its traces: see `trace_k`."""
        return int(self.topk_logprobs.shape[1])

    @property
    def widest_step(self) -> IntArray:
        """Per trace, the most alternatives any of its steps lists (an appended sampled
        token included), int64 ``(n,)``; 0 for precomputed entropies."""
        n = len(self)
        if n == 0 or self.k == 0 or self.n_steps == 0:
            return np.zeros(n, dtype=np.int64)
        count = np.isfinite(self.topk_logprobs).sum(axis=1).astype(np.int64)
        return np.where(self.has_logprobs, np.maximum.reduceat(count, self.offsets[:-1]), 0)

    @property
    def inferred_k(self) -> IntArray:
        """Per trace, the number of top logprobs its server was asked for, as far as the
        steps show it, int64 ``(n,)`` (0 for precomputed entropies).

        Per step, the returned alternatives are counted, leaving out the sampled token
        when it was appended below the others: llama-cpp-python lists the sampled token as
        a ``k + 1``-th entry when it falls outside the top ``k`` (OpenAI leaves it out).
        The trace's value is the largest count over its steps. Servers may return fewer
        than ``k`` (llama-cpp-python merges alternatives that decode alike), so this can
        read low on short answers, never high.
        """
        n = len(self)
        if n == 0 or self.k == 0:
            return np.zeros(n, dtype=np.int64)
        topk = self.topk_logprobs
        count = np.isfinite(topk).sum(axis=1)
        with np.errstate(invalid="ignore"):
            at_or_below = (topk <= self.sampled_logprob[:, None]).sum(axis=1)
        appended = self.sampled_in_topk & (count >= 2) & (at_or_below == 1)
        per_step = (count - appended).astype(np.int64)
        out = np.maximum.reduceat(per_step, self.offsets[:-1]) if self.n_steps else per_step
        return np.where(self.has_logprobs, out, 0).astype(np.int64)

    @property
    def trace_k(self) -> IntArray:
        """Per trace, its top-k width: the ``k`` its record states (what the request asked
        for) where known, else `inferred_k`; 0 for precomputed entropies, int64 ``(n,)``."""
        known = self.requested_k > 0
        if known.all():
            return np.where(self.has_logprobs, self.requested_k, 0).astype(np.int64)
        return np.where(known & self.has_logprobs, self.requested_k, self.inferred_k)

    def truncate_topk(self, k: int) -> TraceBatch:
        """The same traces as if the server had returned at most ``k`` alternatives per
        step: each step keeps its ``k`` most probable alternatives; a sampled token that
        falls outside them is kept aside (``sampled_in_topk`` False), exactly as a top-``k``
        answer would have it. Steps with at most ``k`` alternatives are unchanged.

        >>> b = TraceBatch.from_arrays([0, 1], topk_logprobs=[[-0.1, -2.4, -3.0]])
        >>> b.truncate_topk(2).topk_logprobs.tolist()
        [[-0.1, -2.4]]
        """
        if k < 1:
            raise ValueError(f"k={k} must be >= 1")
        if self.k <= k:
            return self
        ordered = -np.sort(-self.topk_logprobs, axis=1)  # descending, -inf padding last
        kept = np.ascontiguousarray(ordered[:, :k])
        with np.errstate(invalid="ignore"):
            above = (self.topk_logprobs > self.sampled_logprob[:, None]).sum(axis=1)
        in_topk = self.sampled_in_topk & (above < k)
        width = int(np.isfinite(kept).sum(axis=1).max()) if kept.shape[0] else 0
        return dataclasses.replace(
            self,
            topk_logprobs=np.ascontiguousarray(kept[:, : max(width, 0)]),
            sampled_in_topk=in_topk,
            requested_k=np.where(self.requested_k > k, k, self.requested_k),
        )

    @property
    def has_logprobs(self) -> BoolArray:
        """Per trace: True when it carries logprobs, False when only precomputed entropies."""
        if len(self) == 0:
            return np.zeros(0, dtype=bool)
        return ~np.isnan(self.sampled_logprob[self.offsets[:-1]])

    @property
    def has_label(self) -> BoolArray:
        """Per trace: True when a correctness label is present."""
        return ~np.isnan(self.labels)

    def slice_values(self, dimension: str) -> npt.NDArray[np.object_]:
        """The value of one slice dimension per trace (``None`` where a trace lacks it)."""
        return np.array([s.get(dimension) for s in self.slices], dtype=object)

    @property
    def slice_dimensions(self) -> tuple[str, ...]:
        """Every slice dimension used by at least one trace, sorted."""
        dims: set[str] = set()
        for s in self.slices:
            dims.update(s)
        return tuple(sorted(dims))

    # ---------------------------------------------------------- constructors
    @classmethod
    def from_arrays(
        cls,
        offsets: npt.ArrayLike,
        *,
        sampled_logprob: npt.ArrayLike | None = None,
        topk_logprobs: npt.ArrayLike | None = None,
        sampled_in_topk: npt.ArrayLike | None = None,
        token_entropy: npt.ArrayLike | None = None,
        ids: Sequence[str] | None = None,
        slices: Sequence[Mapping[str, str]] | None = None,
        labels: npt.ArrayLike | None = None,
        meta: Sequence[Mapping[str, Any]] | None = None,
    ) -> TraceBatch:
        """Build a batch from arrays, validating them like parsed input.

        Either ``topk_logprobs`` (with optional ``sampled_logprob`` /
        ``sampled_in_topk``) or ``token_entropy`` must be given. When
        ``sampled_logprob`` is omitted the sampled token is taken to be the
        first alternative of each step and ``sampled_in_topk`` defaults to True.

        >>> b = TraceBatch.from_arrays([0, 2], topk_logprobs=[[-0.1, -2.4], [0.0, -50.0]])
        >>> len(b), b.n_steps, b.k
        (1, 2, 2)
        """
        off = np.asarray(offsets, dtype=np.int64)
        n = off.shape[0] - 1
        if n < 0:
            raise ValueError("offsets must have at least one element (0)")
        n_steps = int(off[-1])
        ids_t = tuple(ids) if ids is not None else tuple(f"trace-{i}" for i in range(n))
        if topk_logprobs is None and token_entropy is None:
            raise ValueError("give topk_logprobs or token_entropy")
        if topk_logprobs is not None:
            topk = np.ascontiguousarray(topk_logprobs, dtype=np.float64)
            if topk.ndim != 2:
                raise ValueError(f"topk_logprobs must be 2-D (N, K), got shape {topk.shape}")
        else:
            topk = np.full((n_steps, 0), -np.inf)
        if sampled_logprob is not None:
            sampled = np.ascontiguousarray(sampled_logprob, dtype=np.float64)
        elif topk_logprobs is not None and topk.shape[1] > 0:
            sampled = topk[:, 0].copy()
        else:
            sampled = np.full(n_steps, np.nan)
        if sampled_in_topk is not None:
            in_topk = np.ascontiguousarray(sampled_in_topk, dtype=bool)
        else:
            in_topk = np.full(n_steps, topk_logprobs is not None and sampled_logprob is None)
        if token_entropy is not None:
            ent = np.ascontiguousarray(token_entropy, dtype=np.float64)
        else:
            ent = np.full(n_steps, np.nan)
        lab = (
            np.full(n, np.nan)
            if labels is None
            else np.asarray(labels, dtype=np.float64).reshape(n)
        )
        batch = cls(
            ids=ids_t,
            offsets=off,
            sampled_logprob=sampled,
            sampled_in_topk=in_topk,
            topk_logprobs=topk,
            token_entropy=ent,
            slices=tuple(slices) if slices is not None else tuple({} for _ in range(n)),
            labels=lab,
            meta=tuple(meta) if meta is not None else tuple({} for _ in range(n)),
        )
        batch.validate()
        return batch

    def validate(self) -> None:
        """Check the numeric input rules of docs/formats.md, raising `TraceError`.

        Logprobs must be finite (except ``-inf`` padding of the top-k matrix) and
        ``<= 0``; precomputed entropies must be finite and ``>= 0``; labels 0, 1 or NaN.
        """
        computed = np.isnan(self.token_entropy)  # steps whose entropy comes from logprobs
        sampled, topk, ent = self.sampled_logprob, self.topk_logprobs, self.token_entropy
        with np.errstate(invalid="ignore"):
            bad_topk = (np.isnan(topk) | (topk > 0.0) | (topk == np.inf)).any(axis=1)
            checks = [
                ("sampled logprob", computed & ~(np.isfinite(sampled) & (sampled <= 0.0))),
                ("top_logprobs", computed & bad_topk),
                ("token_entropy", ~computed & ~(np.isfinite(ent) & (ent >= 0.0))),
            ]
        for what, bad in checks:
            if bad.any():
                step = int(np.flatnonzero(bad)[0])
                trace = int(np.searchsorted(self.offsets, step, side="right") - 1)
                raise TraceError(
                    f"{what} at step {step - int(self.offsets[trace])} is invalid: logprobs must "
                    "be finite and <= 0 (natural log), entropies finite and >= 0",
                    record_id=self.ids[trace],
                )
        bad_lab = ~np.isnan(self.labels) & (self.labels != 0.0) & (self.labels != 1.0)
        if bad_lab.any():
            i = int(np.flatnonzero(bad_lab)[0])
            raise TraceError(
                f"label {self.labels[i]!r} must be true/false (or 1/0)",
                record_id=self.ids[i],
                field="$.correct",
            )

    # -------------------------------------------------------------- subsets
    def subset(self, indices: npt.ArrayLike) -> TraceBatch:
        """The traces at ``indices`` (ints or a boolean mask), in that order.

        >>> b = TraceBatch.from_arrays([0, 1, 3], token_entropy=[0.5, 0.1, 0.2])
        >>> b.subset([1]).token_entropy.tolist()
        [0.1, 0.2]
        """
        idx = np.asarray(indices)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(f"boolean mask must have shape ({len(self)},)")
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        lengths = self.lengths[idx]
        new_offsets = np.zeros(idx.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        steps = _ragged_gather(self.offsets[idx], lengths)
        return TraceBatch(
            ids=tuple(self.ids[i] for i in idx),
            offsets=new_offsets,
            sampled_logprob=self.sampled_logprob[steps],
            sampled_in_topk=self.sampled_in_topk[steps],
            topk_logprobs=self.topk_logprobs[steps],
            token_entropy=self.token_entropy[steps],
            slices=tuple(self.slices[i] for i in idx),
            labels=self.labels[idx],
            meta=tuple(self.meta[i] for i in idx),
            models=tuple(self.models[i] for i in idx),
            requested_k=self.requested_k[idx],
            prompts=tuple(self.prompts[i] for i in idx),
            answers=tuple(self.answers[i] for i in idx),
            timestamps=self.timestamps[idx],
        )

    @classmethod
    def concat(cls, batches: Iterable[TraceBatch]) -> TraceBatch:
        """Join batches end to end (the top-k matrices are padded to the widest)."""
        parts = list(batches)
        if not parts:
            return cls.empty()
        width = max(b.k for b in parts)
        topk = np.full((sum(b.n_steps for b in parts), width), -np.inf)
        row = 0
        for b in parts:
            topk[row : row + b.n_steps, : b.k] = b.topk_logprobs
            row += b.n_steps
        lengths = np.concatenate([b.lengths for b in parts])
        offsets = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(
            ids=tuple(i for b in parts for i in b.ids),
            offsets=offsets,
            sampled_logprob=np.concatenate([b.sampled_logprob for b in parts]),
            sampled_in_topk=np.concatenate([b.sampled_in_topk for b in parts]),
            topk_logprobs=topk,
            token_entropy=np.concatenate([b.token_entropy for b in parts]),
            slices=tuple(s for b in parts for s in b.slices),
            labels=np.concatenate([b.labels for b in parts]),
            meta=tuple(m for b in parts for m in b.meta),
            rejected=tuple(r for b in parts for r in b.rejected),
            models=tuple(m for b in parts for m in b.models),
            requested_k=np.concatenate([b.requested_k for b in parts]),
            prompts=tuple(x for b in parts for x in b.prompts),
            answers=tuple(x for b in parts for x in b.answers),
            timestamps=np.concatenate([b.timestamps for b in parts]),
        )

    @classmethod
    def empty(cls) -> TraceBatch:
        """A batch with no traces."""
        return cls(
            ids=(),
            offsets=np.zeros(1, dtype=np.int64),
            sampled_logprob=np.zeros(0),
            sampled_in_topk=np.zeros(0, dtype=bool),
            topk_logprobs=np.zeros((0, 0)),
            token_entropy=np.zeros(0),
            slices=(),
            labels=np.zeros(0),
            meta=(),
        )

    def __repr__(self) -> str:
        return (
            f"TraceBatch(n_traces={len(self)}, n_steps={self.n_steps}, k={self.k}, "
            f"labelled={int(self.has_label.sum())}, rejected={len(self.rejected)})"
        )


def _ragged_gather(starts: IntArray, lengths: IntArray) -> IntArray:
    """Flat step indices of the segments ``[starts[i], starts[i] + lengths[i])``, in order."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    seg_starts = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=seg_starts[1:])
    within = np.arange(total, dtype=np.int64) - np.repeat(seg_starts, lengths)
    return np.repeat(starts, lengths) + within
