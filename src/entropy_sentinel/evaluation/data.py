"""The labelled corpus an evaluation runs on.

`EvalData` holds what every configuration shares: one row per labelled trace, its
domain (the value of the ``by`` slice dimension) and label, and the traces themselves;
configurations are fitted on, and estimate, subsets of those traces (`part`), as
``sentinel fit`` and ``sentinel estimate`` would.

Unlabelled traces cannot be scored against the truth: they are left out and
counted (``n_unlabelled``); traces without the ``by`` dimension are an error.

>>> import entropy_sentinel as es
>>> recs = [{"id": str(i), "slice": {"domain": "ab"[i % 2]}, "correct": i % 3 == 0,
...          "token_entropy": [0.1 * (i % 5), 0.3]} for i in range(12)]
>>> data = EvalData.from_batch(es.read_traces(recs), by="domain", name="toy")
>>> data.domain_names, len(data.part(data.domains == "a"))
(('a', 'b'), 6)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel._typing import FloatArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces import TraceBatch, read_traces

__all__ = ["EvalData", "load_traces"]


def load_traces(path: str | os.PathLike[str]) -> TraceBatch:
    """Traces from any path `read_traces` takes (a corpus Parquet file, JSONL, a Parquet
    dataset), read in bulk mode: rejected records are kept in ``batch.rejected``."""
    return read_traces(path, errors="collect")


@dataclass(eq=False)
class EvalData:
    """Labelled traces of an evaluation (see the module docstring).

    Attributes:
        name: a short description of the corpus (its file name, say).
        by: the slice dimension whose values are the domains.
        batch: the labelled traces, in their original order.
        labels: float64 ``(n,)`` in {0, 1}.
        domains: object ``(n,)`` domain of each row.
        n_unlabelled: traces of the source left out because they carry no label.
        n_rejected: records of the source that could not be read.
        metadata: the run description stored in a corpus file (model, parameters).
    """

    name: str
    by: str
    batch: TraceBatch
    labels: FloatArray
    domains: npt.NDArray[np.object_]
    n_unlabelled: int = 0
    n_rejected: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_batch(cls, batch: TraceBatch, *, by: str = "domain", name: str = "") -> EvalData:
        """Keep the labelled traces of ``batch``, with their ``by`` slice as the domain."""
        if by not in batch.slice_dimensions:
            raise ConfigError(
                f"no trace has slice dimension {by!r}; dimensions present: "
                f"{list(batch.slice_dimensions) or 'none'}"
            )
        values = batch.slice_values(by)
        missing = np.array([v is None for v in values])
        if missing.any():
            first = batch.ids[int(np.flatnonzero(missing)[0])]
            raise ConfigError(
                f"{int(missing.sum())} trace(s) (first: {first!r}) have no {by!r} slice; every "
                f"trace of an evaluation needs its domain. Filter them out or label them."
            )
        labelled = batch.has_label
        if not labelled.any():
            raise ConfigError(
                f"none of the {len(batch)} traces has a correctness label; an evaluation "
                "compares estimates with true accuracies"
            )
        kept = batch if labelled.all() else batch.subset(labelled)
        return cls(
            name=name,
            by=by,
            batch=kept,
            labels=kept.labels.copy(),
            domains=kept.slice_values(by),
            n_unlabelled=int((~labelled).sum()),
            n_rejected=len(batch.rejected),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, by: str = "domain") -> EvalData:
        """`load_traces` then `from_batch`, named after the file (with the corpus
        file's run description as ``metadata``)."""
        data = cls.from_batch(load_traces(path), by=by, name=Path(path).name)
        if Path(path).is_file() and Path(path).suffix == ".parquet":
            from entropy_sentinel.traces.corpus import corpus_metadata

            data.metadata = corpus_metadata(path)
        return data

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def domain_names(self) -> tuple[str, ...]:
        """The distinct domains, sorted."""
        return tuple(sorted({str(d) for d in self.domains}))

    def domain_accuracy(self) -> dict[str, float]:
        """True accuracy of each domain over all its rows."""
        return {d: float(self.labels[self.domains == d].mean()) for d in self.domain_names}

    def domain_counts(self) -> dict[str, int]:
        return {d: int((self.domains == d).sum()) for d in self.domain_names}

    def part(self, mask: npt.NDArray[np.bool_]) -> TraceBatch:
        """The traces of the rows selected by a boolean ``mask``."""
        return self.batch.subset(mask)

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the rows: ids, domains, labels and per-step numbers."""
        h = hashlib.sha256()
        h.update(self.by.encode())
        h.update("\x00".join(self.batch.ids).encode())
        h.update("\x00".join(str(d) for d in self.domains).encode())
        for arr in (
            self.labels,
            self.batch.offsets,
            self.batch.sampled_logprob,
            self.batch.topk_logprobs,
            self.batch.token_entropy,
        ):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> Mapping[str, Any]:
        """Counts for a report: rows, tokens, domains with their sizes and accuracies."""
        acc = self.domain_accuracy()
        counts = self.domain_counts()
        models = sorted({str(m["model"]) for m in self.batch.meta if m.get("model")})
        return {
            "name": self.name,
            "by": self.by,
            "n": len(self),
            "n_tokens": self.batch.n_steps,
            "n_unlabelled": self.n_unlabelled,
            "n_rejected": self.n_rejected,
            "accuracy": float(self.labels.mean()),
            "source": "logprobs" if self.batch.has_logprobs.all() else "precomputed entropies",
            "k": int(self.batch.trace_k.max()) if len(self.batch) else 0,
            "models": models,
            "metadata": self.metadata,
            "domains": {d: {"n": counts[d], "accuracy": acc[d]} for d in self.domain_names},
        }
