"""The compact corpus: graded traces in one Parquet file (zstd), read back as a `TraceBatch`.

This is version 1 of the columnar trace format (`entropy_sentinel.traces.parquet`
reads it wherever traces are read): the collector's metadata flattened into
queryable columns. `write_corpus` converts the collector's JSON Lines output (~10 kB
per generated token of JSON) into one row per trace:

==================  =======================  =========================================
column              type                     meaning
==================  =======================  =========================================
id                  string                   trace id (= benchmark item id)
domain, benchmark   string                   slice labels
item_id             string                   benchmark item the prompt came from
answer_type         string                   number / expression / choice
correct             bool (null: unlabelled)  the grade
grader              string                   the grader that made it
extracted           string                   final answer taken from the response
finish_reason       string                   ``stop`` or ``length`` (cut by max_tokens)
prompt_template     string                   template name (`entropy_sentinel.collect.prompts`)
model               string                   model id the server reported
seed                int64                    request seed
completion_tokens   int32                    generated tokens
latency_s           float64                  request wall time (seconds)
response_text       string                   the model's answer
question            string                   synthetic questions only (null otherwise)
sampled_logprob     list<float>              per token: logprob of the sampled token (nats)
sampled_in_topk     list<bool>               per token: sampled token among the top-k
topk_logprobs       list<list<float>>        per token: the returned alternatives (nats)
==================  =======================  =========================================

No question texts of the shared benchmarks are stored: they are referenced by
``item_id``. Logprobs are stored as float32 when that is exact (llama.cpp computes
them in float32) and as float64 otherwise, so reading back gives the very numbers the
JSONL held. The file's key-value metadata ``entropy_sentinel.corpus`` carries the
free-form run description given to `write_corpus` (model checksum, parameters, ...).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces.batch import TraceBatch
from entropy_sentinel.traces.formats import read_traces
from entropy_sentinel.traces.parquet import arrow_to_traces

__all__ = [
    "CORPUS_METADATA_KEY",
    "SCALAR_COLUMNS",
    "corpus_frame",
    "corpus_metadata",
    "domain_summary",
    "read_corpus",
    "write_corpus",
]

CORPUS_METADATA_KEY = b"entropy_sentinel.corpus"
SCALAR_COLUMNS = (
    "id",
    "domain",
    "benchmark",
    "item_id",
    "answer_type",
    "correct",
    "grader",
    "extracted",
    "finish_reason",
    "prompt_template",
    "model",
    "seed",
    "completion_tokens",
    "latency_s",
    "response_text",
    "question",
)
"""Per-trace columns other than the per-token arrays, in file order."""


def _float_type(values: npt.NDArray[np.float64]) -> Any:
    import pyarrow as pa

    finite = values[np.isfinite(values)]
    exact = bool(np.array_equal(finite.astype(np.float32).astype(np.float64), finite))
    return (pa.float32(), np.float32) if exact else (pa.float64(), np.float64)


def write_corpus(
    traces: str | os.PathLike[str] | TraceBatch,
    output: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    compression_level: int = 19,
) -> Path:
    """Write graded traces (a collector JSONL file or a `TraceBatch`) as a corpus Parquet file.

    Every trace must carry logprobs and the collector's ``meta`` (``benchmark``,
    ``item_id``, ...). Returns the output path.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    batch = traces if isinstance(traces, TraceBatch) else read_traces(traces)
    if len(batch) == 0:
        raise ConfigError("no traces to write")
    if not batch.has_logprobs.all():
        bad = batch.ids[int(np.flatnonzero(~batch.has_logprobs)[0])]
        raise ConfigError(f"trace {bad!r} has no logprobs: a corpus keeps per-token logprobs")
    rows = [_scalar_row(i, batch) for i in range(len(batch))]
    columns: dict[str, Any] = {
        name: pa.array([r[name] for r in rows], type=_arrow_type(name)) for name in SCALAR_COLUMNS
    }
    topk = batch.topk_logprobs
    counts = np.isfinite(topk).sum(axis=1)
    step_offsets = np.zeros(batch.n_steps + 1, dtype=np.int32)
    np.cumsum(counts, out=step_offsets[1:])
    flat_alts = topk[np.isfinite(topk)]  # row-major: each step's alternatives in order
    arrow_type, np_type = _float_type(np.concatenate([batch.sampled_logprob, flat_alts]))
    offsets = batch.offsets.astype(np.int32)
    columns["sampled_logprob"] = pa.ListArray.from_arrays(
        offsets, pa.array(batch.sampled_logprob.astype(np_type), type=arrow_type)
    )
    columns["sampled_in_topk"] = pa.ListArray.from_arrays(offsets, pa.array(batch.sampled_in_topk))
    columns["topk_logprobs"] = pa.ListArray.from_arrays(
        offsets,
        pa.ListArray.from_arrays(
            step_offsets, pa.array(flat_alts.astype(np_type), type=arrow_type)
        ),
    )
    table = pa.table(columns)
    meta = {"format": "entropy-sentinel corpus v1", **(metadata or {})}
    table = table.replace_schema_metadata({CORPUS_METADATA_KEY: json.dumps(meta).encode()})
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        out,
        compression="zstd",
        compression_level=compression_level,
        use_byte_stream_split=["sampled_logprob", "topk_logprobs", "latency_s"],
        use_dictionary=[
            "domain",
            "benchmark",
            "answer_type",
            "grader",
            "finish_reason",
            "prompt_template",
            "model",
        ],
    )
    return out


def _scalar_row(i: int, batch: TraceBatch) -> dict[str, Any]:
    meta = batch.meta[i]
    rid = batch.ids[i]
    try:
        timing = meta["timing"]
        grade = meta.get("grade") or {}
        label = batch.labels[i]
        return {
            "id": rid,
            "domain": batch.slices[i].get("domain"),
            "benchmark": meta["benchmark"],
            "item_id": meta["item_id"],
            "answer_type": meta["answer_type"],
            "correct": None if np.isnan(label) else bool(label),
            "grader": meta.get("grader"),
            "extracted": grade.get("extracted"),
            "finish_reason": meta.get("finish_reason"),
            "prompt_template": meta.get("prompt_template"),
            "model": meta.get("model"),
            "seed": (meta.get("request") or {}).get("seed"),
            "completion_tokens": int(timing["completion_tokens"]),
            "latency_s": float(timing["latency_s"]),
            "response_text": meta.get("response_text"),
            "question": meta.get("question"),
        }
    except (KeyError, TypeError) as exc:
        raise ConfigError(
            f"trace {rid!r} lacks the collector's meta ({exc}); write_corpus takes the output "
            "of entropy_sentinel.collect (sentinel collect)"
        ) from None


def _arrow_type(name: str) -> Any:
    """The arrow type of a scalar column."""
    import pyarrow as pa

    kinds = {"correct": pa.bool_(), "seed": pa.int64(), "completion_tokens": pa.int32()}
    return kinds.get(name, pa.float64() if name == "latency_s" else pa.string())


def corpus_frame(path: str | os.PathLike[str], *, columns: Sequence[str] | None = None) -> Any:
    """The per-trace columns of a corpus as a pandas DataFrame (no per-token arrays)."""
    import pyarrow.parquet as pq

    return pq.read_table(Path(path), columns=list(columns or SCALAR_COLUMNS)).to_pandas()


def domain_summary(path: str | os.PathLike[str]) -> Any:
    """Per domain: n, graded, accuracy (over graded), truncated, mean and max tokens.

    A pandas DataFrame, one row per domain sorted by accuracy (highest first), plus a
    last row ``all`` over the whole corpus.
    """
    import pandas as pd

    frame = corpus_frame(path, columns=["domain", "correct", "finish_reason", "completion_tokens"])
    frame["truncated"] = frame["finish_reason"] == "length"

    def row(name: str, part: Any) -> dict[str, Any]:
        graded = part["correct"].dropna().astype(bool)
        return {
            "domain": name,
            "n": len(part),
            "graded": len(graded),
            "accuracy": float(graded.mean()) if len(graded) else float("nan"),
            "truncated": int(part["truncated"].sum()),
            "mean_tokens": float(part["completion_tokens"].mean()),
            "max_tokens": int(part["completion_tokens"].max()),
        }

    rows = [row(str(name), part) for name, part in frame.groupby("domain")]
    rows.sort(key=lambda r: -r["accuracy"])
    return pd.DataFrame([*rows, row("all", frame)])


def corpus_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run description stored in a corpus file (see `write_corpus`)."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(Path(path)).metadata or {}).get(CORPUS_METADATA_KEY)
    return dict(json.loads(raw)) if raw else {}


def read_corpus(
    path: str | os.PathLike[str], *, domains: Sequence[str] | None = None
) -> TraceBatch:
    """Read a corpus (or the rows of some ``domains``) as a `TraceBatch`.

    Slices are ``{"domain", "benchmark"}``, labels the grades (NaN when unlabelled),
    and meta the scalar columns other than id, domain and benchmark.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"corpus file {str(path)!r} does not exist")
    table = pq.read_table(path)
    if domains is not None:
        known = set(table.column("domain").to_pylist())
        unknown = sorted(set(domains) - known)
        if unknown:
            raise ConfigError(f"domains {unknown} are not in {path}; known: {sorted(known)}")
        table = table.filter(pc.is_in(table.column("domain"), value_set=_pa_array(domains)))
    return arrow_to_traces(table, source=str(path))


def _pa_array(values: Sequence[str]) -> Any:
    import pyarrow as pa

    return pa.array(list(values), type=pa.string())
