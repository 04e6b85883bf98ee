"""Traces at rest: the columnar (Apache Parquet / Arrow) trace format, version 2.

One row per trace; the per-step arrays are Arrow list columns, so a file is read into
a `TraceBatch` by flattening whole columns, with no per-token Python object. The
format is documented in docs/formats.md#parquet; in short:

=================  ==========================  ==========================================
column             Arrow type                  meaning
=================  ==========================  ==========================================
id                 string                      trace id (required, non-empty)
slice              map<string, string>         slice labels, e.g. {"domain": "gsm8k"}
correct            bool                        the label; null: unlabelled
timestamp          timestamp[us, UTC]          when the trace happened; null: not stated
model              string                      the model asked for (or answering)
k                  int32                       top_logprobs requested; null: not stated
prompt             string                      prompt text (opt-in)
prompt_messages    string                      chat prompt as a JSON array (opt-in)
answer             string                      answer text (opt-in)
meta               string                      free-form metadata, a JSON object
sampled_logprob    list<float32>               per step: the sampled token's logprob
sampled_in_topk    list<bool>                  per step: sampled token among the top-k
topk_logprobs      list<list<float32>>         per step: the returned alternatives
token_entropy      list<float32>               per step: precomputed entropy (nats)
=================  ==========================  ==========================================

A row carries either the three logprob columns or ``token_entropy`` (the other
group null). Any other column is a per-trace value carried into ``meta`` under its
name (a hive partition key, a column a pipeline added). Logprobs and entropies are
stored as float32: the ~7 significant digits a JSON logprob carries (servers compute
them in float32), so JSONL -> Parquet -> `TraceBatch` gives every value rounded to
float32 and nothing else (measured in docs/formats.md#precision).

Version 1 is the corpus layout of `entropy_sentinel.traces.corpus` (slices in
``domain``/``benchmark`` columns, the collector's metadata in scalar columns); it is
read as such, so old corpus files stay readable.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from entropy_sentinel._typing import BoolArray, FloatArray, IntArray
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.parse import MAX_K

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ROW_GROUP_SIZE",
    "ParquetTraceWriter",
    "arrow_to_traces",
    "trace_schema",
    "traces_to_arrow",
    "write_parquet",
]

FORMAT_VERSION = 2
"""Version of the columnar trace format written by this code (1: the corpus layout)."""
METADATA_KEY = b"entropy_sentinel.traces"
"""Schema metadata key holding ``{"format": "entropy-sentinel traces", "version": N}``."""
ROW_GROUP_SIZE = 4096
"""Traces per Parquet row group: a reader holds one row group at a time (~16 MB of
alternatives for 200-token traces at top-20)."""

V1_SLICE_COLUMNS = ("domain", "benchmark")
V1_META_EXCLUDED = ("id", "domain", "benchmark")
_STEP_COLUMNS = ("sampled_logprob", "sampled_in_topk", "topk_logprobs", "token_entropy")
_CORE_COLUMNS = (
    "id",
    "slice",
    "correct",
    "timestamp",
    "model",
    "k",
    "prompt",
    "prompt_messages",
    "answer",
    "meta",
    *_STEP_COLUMNS,
)
_F32_MAX = float(np.finfo(np.float32).max)


def trace_schema() -> pa.Schema:
    """The Arrow schema of format version 2 (with its version in the metadata)."""
    import pyarrow as pa

    f32 = pa.list_(pa.float32())
    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("slice", pa.map_(pa.string(), pa.string())),
            pa.field("correct", pa.bool_()),
            pa.field("timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("model", pa.string()),
            pa.field("k", pa.int32()),
            pa.field("prompt", pa.string()),
            pa.field("prompt_messages", pa.string()),
            pa.field("answer", pa.string()),
            pa.field("meta", pa.string()),
            pa.field("sampled_logprob", f32),
            pa.field("sampled_in_topk", pa.list_(pa.bool_())),
            pa.field("topk_logprobs", pa.list_(f32)),
            pa.field("token_entropy", f32),
        ],
        metadata={METADATA_KEY: _version_text(FORMAT_VERSION)},
    )


def _version_text(version: int) -> bytes:
    return json.dumps({"format": "entropy-sentinel traces", "version": version}).encode()


# ----------------------------------------------------------------------- writing
def traces_to_arrow(batch: TraceBatch) -> pa.RecordBatch:
    """``batch`` as one Arrow record batch of format version 2 (see the module docstring).

    Values are rounded to float32 (magnitudes beyond float32's range are clipped to it,
    so a finite logprob stays finite).
    """
    import pyarrow as pa

    schema = trace_schema()
    n = len(batch)
    has_lp = batch.has_logprobs
    lengths = batch.lengths
    lp_steps = np.repeat(has_lp, lengths)
    mask_lp, mask_ent = pa.array(~has_lp), pa.array(has_lp)
    lp_offsets = _offsets(np.where(has_lp, lengths, 0))
    ent_offsets = _offsets(np.where(has_lp, 0, lengths))
    topk = batch.topk_logprobs[lp_steps]
    finite = np.isfinite(topk)
    step_offsets = _offsets(finite.sum(axis=1))
    columns: dict[str, Any] = {
        "id": pa.array(batch.ids, pa.string()),
        "slice": pa.array([list(s.items()) for s in batch.slices], schema.field("slice").type),
        "correct": pa.array(batch.labels == 1.0, mask=np.isnan(batch.labels)),
        "timestamp": pa.array(
            np.round(np.nan_to_num(batch.timestamps) * 1e6).astype(np.int64),
            pa.int64(),
            mask=np.isnan(batch.timestamps),
        ).cast(pa.timestamp("us", tz="UTC")),
        "model": pa.array(batch.models, pa.string()),
        "k": pa.array(batch.requested_k.astype(np.int32), mask=batch.requested_k == 0),
        "prompt": pa.array([p if isinstance(p, str) else None for p in batch.prompts], pa.string()),
        "prompt_messages": pa.array(
            [None if p is None or isinstance(p, str) else _json(p) for p in batch.prompts],
            pa.string(),
        ),
        "answer": pa.array(batch.answers, pa.string()),
        "meta": pa.array([_json(m) if m else None for m in batch.meta], pa.string()),
        "sampled_logprob": pa.ListArray.from_arrays(
            lp_offsets, _f32(batch.sampled_logprob[lp_steps]), mask=mask_lp
        ),
        "sampled_in_topk": pa.ListArray.from_arrays(
            lp_offsets, pa.array(batch.sampled_in_topk[lp_steps]), mask=mask_lp
        ),
        "topk_logprobs": pa.ListArray.from_arrays(
            lp_offsets,
            pa.ListArray.from_arrays(step_offsets, _f32(topk[finite])),
            mask=mask_lp,
        ),
        "token_entropy": pa.ListArray.from_arrays(
            ent_offsets, _f32(batch.token_entropy[~lp_steps]), mask=mask_ent
        ),
    }
    del n
    return pa.RecordBatch.from_arrays([columns[f.name] for f in schema], schema=schema)


def _offsets(counts: IntArray) -> Any:
    import pyarrow as pa

    out = np.zeros(counts.shape[0] + 1, dtype=np.int32)
    np.cumsum(counts, out=out[1:])
    return pa.array(out, pa.int32())


def _f32(values: FloatArray) -> Any:
    import pyarrow as pa

    return pa.array(np.clip(values, -_F32_MAX, _F32_MAX).astype(np.float32), pa.float32())


def _json(value: Any) -> str:
    return msgspec.json.encode(value, enc_hook=_jsonable).decode()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"a {type(obj).__name__} value in meta cannot be stored as JSON")


class ParquetTraceWriter:
    """Append `TraceBatch`es to one Parquet file (zstd), a row group per `ROW_GROUP_SIZE`
    traces; use as a context manager.

    >>> import tempfile, entropy_sentinel as es
    >>> path = Path(tempfile.mkdtemp()) / "t.parquet"
    >>> with ParquetTraceWriter(path) as w:
    ...     w.write(es.read_traces([{"id": "a", "token_entropy": [0.25, 1.5]}]))
    >>> es.read_traces(path).token_entropy.tolist()
    [0.25, 1.5]
    """

    def __init__(
        self, path: str | os.PathLike[str] | io.IOBase, *, compression_level: int = 3
    ) -> None:
        import pyarrow.parquet as pq

        if isinstance(path, str | os.PathLike):
            self.path: Path | None = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:  # a writable binary file object (e.g. one streamed out as it is written)
            self.path = None
        self.n_traces = 0
        self._writer = pq.ParquetWriter(
            self.path if self.path is not None else path,
            trace_schema(),
            compression="zstd",
            compression_level=compression_level,
            use_dictionary=["slice.key_value.key", "slice.key_value.value", "model"],
            use_byte_stream_split=["sampled_logprob.list.element"],
        )

    def write(self, batch: TraceBatch) -> None:
        """Append the traces of ``batch``."""
        if len(batch):
            self._writer.write_batch(traces_to_arrow(batch), row_group_size=ROW_GROUP_SIZE)
            self.n_traces += len(batch)

    def add_metadata(self, metadata: Mapping[str, str]) -> None:
        """Key/value pairs for the file's footer (read back in the schema's metadata)."""
        self._writer.add_key_value_metadata(dict(metadata))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> ParquetTraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_parquet(traces: TraceBatch | Iterable[TraceBatch], path: str | os.PathLike[str]) -> int:
    """Write one batch or a stream of batches as one Parquet trace file; the number of
    traces written. Rejections carried by the batches are not written (they are not
    traces)."""
    batches = [traces] if isinstance(traces, TraceBatch) else traces
    with ParquetTraceWriter(path) as writer:
        for batch in batches:
            writer.write(batch)
    return writer.n_traces


# ----------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Layout:
    """Which columns of a file hold what (format version 1 or 2)."""

    version: int
    names: tuple[str, ...]


def layout_of(schema: pa.Schema, source: str) -> _Layout:
    """The format version of a trace file's schema; `ConfigError` if it holds no traces."""
    names = tuple(schema.names)
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is not None:
        try:
            version = int(json.loads(raw)["version"])
        except (ValueError, KeyError, TypeError):
            version = FORMAT_VERSION
        if version > FORMAT_VERSION:
            raise ConfigError(
                f"{source} is in trace format version {version}, newer than this "
                f"entropy-sentinel reads ({FORMAT_VERSION}); upgrade entropy-sentinel"
            )
    if "id" not in names or not ({"sampled_logprob", "token_entropy"} & set(names)):
        raise ConfigError(
            f"{source} is a Parquet file but not one of traces: it needs an `id` column and "
            "`sampled_logprob` / `sampled_in_topk` / `topk_logprobs` (or `token_entropy`) "
            f"list columns (its columns: {', '.join(names[:12])}"
            f"{', ...' if len(names) > 12 else ''}); see docs/formats.md#parquet"
        )
    if "slice" not in names and set(V1_SLICE_COLUMNS) <= set(names):
        return _Layout(1, names)
    return _Layout(2, names)


def arrow_to_traces(
    table: pa.RecordBatch | pa.Table, *, first_index: int = 0, source: str = "traces"
) -> TraceBatch:
    """Arrow rows of a trace file (format 1 or 2) as a `TraceBatch`.

    Columns are flattened whole (no per-token Python object). A row that breaks the
    format (lists of different lengths, a positive logprob, an id missing...) is not
    dropped: it is left out of the batch and listed in ``batch.rejected`` with its
    position ``first_index + row``.
    """
    import pyarrow as pa

    if isinstance(table, pa.Table):
        table = table.combine_chunks().to_batches()[0] if table.num_rows else _empty_rb(table)
    layout = layout_of(table.schema, source)
    n = table.num_rows
    reasons: list[str | None] = [None] * n
    cols = {name: table.column(name) for name in table.schema.names}
    ids = _strings(cols["id"], "id", source)
    for i, rid in enumerate(ids):
        if not rid:
            reasons[i] = "id must be a non-empty string"
    has_lp = _valid(cols.get("sampled_logprob"), n)
    has_ent = _valid(cols.get("token_entropy"), n)
    lp_len = _lengths(cols.get("sampled_logprob"), n)
    ent_len = _lengths(cols.get("token_entropy"), n)
    for name in ("sampled_in_topk", "topk_logprobs"):
        if has_lp.any() and name not in cols:
            raise ConfigError(f"{source}: column {name!r} is missing (sampled_logprob is there)")
    in_len = _lengths(cols.get("sampled_in_topk"), n)
    tk_len = _lengths(cols.get("topk_logprobs"), n)
    in_ok = _valid(cols.get("sampled_in_topk"), n)
    tk_ok = _valid(cols.get("topk_logprobs"), n)
    _flag(reasons, has_lp & has_ent, "give either logprobs or token_entropy, not both")
    _flag(
        reasons,
        ~has_lp & ~has_ent,
        "no logprobs and no token_entropy: a trace needs one of the two",
    )
    _flag(
        reasons,
        has_lp & ~(in_ok & tk_ok & (in_len == lp_len) & (tk_len == lp_len)),
        "sampled_logprob, sampled_in_topk and topk_logprobs must be lists of one length",
    )
    lengths = np.where(has_lp, lp_len, ent_len)
    _flag(reasons, lengths == 0, "a trace needs at least one generated token")
    labels = _labels(cols.get("correct"), n, source)
    timestamps = _timestamps(cols.get("timestamp"), n, source, reasons)
    requested_k = _ks(cols.get("k"), n, source, reasons)
    slices = _slices(layout, cols, n, source, reasons)
    meta = _meta(layout, cols, n, source, reasons)
    models = _opt_strings(cols.get("model"), n, "model", source)
    answers = _opt_strings(cols.get("answer"), n, "answer", source)
    prompts = _prompts(cols, n, source, reasons)

    keep = np.array([r is None for r in reasons], dtype=bool)
    if not keep.all():
        kept_rows = np.flatnonzero(keep)
        table = table.filter(pa.array(keep))
        has_lp, lengths = has_lp[keep], lengths[keep]
    else:
        kept_rows = np.arange(n)
    steps = _steps(table, has_lp, lengths, source)
    batch = TraceBatch(
        ids=tuple(ids[i] for i in kept_rows),
        offsets=_np_offsets(lengths),
        sampled_logprob=steps[0],
        sampled_in_topk=steps[1],
        topk_logprobs=steps[2],
        token_entropy=steps[3],
        slices=tuple(slices[i] for i in kept_rows),
        labels=labels[kept_rows],
        meta=tuple(meta[i] for i in kept_rows),
        models=tuple(models[i] for i in kept_rows),
        requested_k=requested_k[kept_rows],
        prompts=tuple(prompts[i] for i in kept_rows),
        answers=tuple(answers[i] for i in kept_rows),
        timestamps=timestamps[kept_rows],
    )
    bad = _bad_values(batch)
    if bad.any():
        for j in np.flatnonzero(bad):
            reasons[int(kept_rows[j])] = (
                "a logprob is positive or not finite, or an entropy negative or not finite: "
                "logprobs are natural-log probabilities <= 0, entropies nats >= 0"
            )
        batch = batch.subset(~bad)
    rejected = tuple(
        Rejection(first_index + i, ids[i] or None, None, reason)
        for i, reason in enumerate(reasons)
        if reason is not None
    )
    return TraceBatch(**{**_fields(batch), "rejected": rejected})


def _fields(batch: TraceBatch) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def _empty_rb(table: pa.Table) -> pa.RecordBatch:
    import pyarrow as pa

    return pa.RecordBatch.from_pylist([], schema=table.schema)


def _flag(reasons: list[str | None], mask: BoolArray, reason: str) -> None:
    for i in np.flatnonzero(mask):
        if reasons[int(i)] is None:
            reasons[int(i)] = reason


def _np_offsets(lengths: IntArray) -> IntArray:
    out = np.zeros(lengths.shape[0] + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _valid(col: Any, n: int) -> BoolArray:
    if col is None:
        return np.zeros(n, dtype=bool)
    return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _lengths(col: Any, n: int) -> IntArray:
    import pyarrow.compute as pc

    if col is None:
        return np.zeros(n, dtype=np.int64)
    _check_list(col, "list column")
    return np.asarray(pc.fill_null(pc.list_value_length(col), 0), dtype=np.int64)


def _check_list(col: Any, what: str) -> None:
    import pyarrow as pa

    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        raise ConfigError(f"a per-step column must be a {what}, got {col.type}")


def _float_values(col: Any) -> FloatArray:
    """The flattened values of a list column (valid rows only), float64, NaN for nulls."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = col.flatten()
    if not pa.types.is_floating(values.type) and not pa.types.is_integer(values.type):
        raise ConfigError(f"list values must be numbers, got {values.type}")
    return np.asarray(pc.fill_null(values.cast(pa.float64()), math.nan), dtype=np.float64)


def _steps(
    table: pa.RecordBatch, has_lp: BoolArray, lengths: IntArray, source: str
) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
    """(sampled_logprob, sampled_in_topk, topk_logprobs, token_entropy) of valid rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n_steps = int(lengths.sum())
    lp_steps = np.repeat(has_lp, lengths)
    sampled = np.full(n_steps, np.nan)
    in_topk = np.zeros(n_steps, dtype=bool)
    entropy = np.full(n_steps, np.nan)
    topk = np.full((n_steps, 0), -np.inf)
    names = table.schema.names
    if has_lp.any():
        sampled[lp_steps] = _float_values(table.column("sampled_logprob"))
        flags = table.column("sampled_in_topk").flatten()
        if not pa.types.is_boolean(flags.type):
            raise ConfigError(
                f"{source}: sampled_in_topk must be list<bool>, got list<{flags.type}>"
            )
        in_topk[lp_steps] = np.asarray(pc.fill_null(flags, False), dtype=bool)
        alts = table.column("topk_logprobs").flatten()  # one entry per step
        _check_list(alts, "list of lists")
        counts = np.asarray(pc.fill_null(pc.list_value_length(alts), 0), dtype=np.int64)
        values = _float_values(alts)
        width = int(counts.max()) if counts.size else 0
        dense = np.full((counts.shape[0], width), -np.inf)
        if values.size:
            if np.all(counts == width):
                dense[:] = values.reshape(counts.shape[0], width)
            else:
                rows = np.repeat(np.arange(counts.shape[0]), counts)
                starts = np.cumsum(counts) - counts
                cols = np.arange(values.shape[0]) - np.repeat(starts, counts)
                dense[rows, cols] = values
        topk = np.full((n_steps, width), -np.inf)
        topk[lp_steps] = dense
    if (~has_lp).any() and "token_entropy" in names:
        entropy[~lp_steps] = _float_values(table.column("token_entropy"))
    return sampled, in_topk, topk, entropy


def _bad_values(batch: TraceBatch) -> BoolArray:
    """Per trace: a logprob or entropy that breaks the input rules (`TraceBatch.validate`)."""
    computed = np.isnan(batch.token_entropy)
    s, t, e = batch.sampled_logprob, batch.topk_logprobs, batch.token_entropy
    with np.errstate(invalid="ignore"):
        bad = computed & ~(np.isfinite(s) & (s <= 0.0))
        if t.shape[1]:
            bad |= computed & (np.isnan(t) | (t > 0.0) | (t == np.inf)).any(axis=1)
        bad |= ~computed & ~(np.isfinite(e) & (e >= 0.0))
    if not len(batch):
        return np.zeros(0, dtype=bool)
    trace_of_step = np.repeat(np.arange(len(batch)), batch.lengths)
    return np.bincount(trace_of_step, weights=bad, minlength=len(batch)) > 0


def _strings(col: Any, name: str, source: str) -> list[str]:
    import pyarrow as pa

    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        if pa.types.is_integer(col.type):
            return ["" if v is None else str(v) for v in col.to_pylist()]
        raise ConfigError(f"{source}: column {name!r} must be text, got {col.type}")
    return ["" if v is None else v for v in col.to_pylist()]


def _opt_strings(col: Any, n: int, name: str, source: str) -> list[str | None]:
    import pyarrow as pa

    if col is None:
        return [None] * n
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        raise ConfigError(f"{source}: column {name!r} must be text, got {col.type}")
    out: list[str | None] = col.to_pylist()
    return out


def _labels(col: Any, n: int, source: str) -> FloatArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if col is None:
        return np.full(n, np.nan)
    if not pa.types.is_boolean(col.type):
        raise ConfigError(
            f"{source}: column 'correct' must be bool (null: unlabelled), got {col.type}"
        )
    return np.asarray(pc.fill_null(col.cast(pa.float64()), math.nan), dtype=np.float64)


def _timestamps(col: Any, n: int, source: str, reasons: list[str | None]) -> FloatArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if col is None:
        return np.full(n, np.nan)
    if pa.types.is_timestamp(col.type):
        per_second = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[col.type.unit]
        raw = pc.fill_null(col.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        ts = np.asarray(raw, dtype=np.float64) / per_second
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        ts = np.asarray(pc.fill_null(col.cast(pa.float64()), 0.0), dtype=np.float64)
    else:
        raise ConfigError(
            f"{source}: column 'timestamp' must be an Arrow timestamp or epoch seconds, "
            f"got {col.type}"
        )
    valid = _valid(col, n)
    _flag(
        reasons,
        valid & ~(np.isfinite(ts) & (ts >= 0.0) & (ts <= 253402300799.0)),
        "timestamp is outside 1970-01-01 .. 9999-12-31",
    )
    return np.where(valid, ts, np.nan)


def _ks(col: Any, n: int, source: str, reasons: list[str | None]) -> IntArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if col is None:
        return np.zeros(n, dtype=np.int64)
    if not pa.types.is_integer(col.type):
        raise ConfigError(f"{source}: column 'k' must be an integer, got {col.type}")
    k = np.asarray(pc.fill_null(col.cast(pa.int64()), 0), dtype=np.int64)
    _flag(reasons, (k < 0) | (k > MAX_K), f"k must be a whole number in 1..{MAX_K}")
    return np.clip(k, 0, MAX_K)


def _slices(
    layout: _Layout, cols: dict[str, Any], n: int, source: str, reasons: list[str | None]
) -> list[dict[str, str]]:
    import pyarrow as pa

    if layout.version == 1:
        values = {d: cols[d].to_pylist() for d in V1_SLICE_COLUMNS}
        return [
            {d: values[d][i] for d in V1_SLICE_COLUMNS if values[d][i] is not None}
            for i in range(n)
        ]
    col = cols.get("slice")
    if col is None:
        return [{} for _ in range(n)]
    if not pa.types.is_map(col.type):
        raise ConfigError(f"{source}: column 'slice' must be map<string, string>, got {col.type}")
    out: list[dict[str, str]] = []
    for i, pairs in enumerate(col.to_pylist()):
        if pairs is None:
            out.append({})
            continue
        entry = dict(pairs)
        if any(not isinstance(v, str) for v in entry.values()):
            reasons[i] = reasons[i] or "slice values must be text (a null value is not)"
        out.append(entry)
    return out


def _meta(
    layout: _Layout, cols: dict[str, Any], n: int, source: str, reasons: list[str | None]
) -> list[dict[str, Any]]:
    """Per trace: the ``meta`` JSON object, plus every column the format does not define."""
    if layout.version == 1:
        extra = [c for c in layout.names if c not in V1_META_EXCLUDED and c not in _STEP_COLUMNS]
        out: list[dict[str, Any]] = [{} for _ in range(n)]
    else:
        extra = [c for c in layout.names if c not in _CORE_COLUMNS]
        out = [{} for _ in range(n)]
        col = cols.get("meta")
        if col is not None:
            for i, text in enumerate(_opt_strings(col, n, "meta", source)):
                if text is None:
                    continue
                try:
                    value = json.loads(text)
                except ValueError as exc:
                    reasons[i] = reasons[i] or f"meta is not valid JSON ({exc})"
                    continue
                if not isinstance(value, dict):
                    reasons[i] = reasons[i] or "meta must be a JSON object"
                    continue
                out[i] = value
    for name in extra:
        for i, value in enumerate(cols[name].to_pylist()):
            out[i][name] = value
    return out


def _prompts(cols: dict[str, Any], n: int, source: str, reasons: list[str | None]) -> list[Any]:
    out: list[Any] = list(_opt_strings(cols.get("prompt"), n, "prompt", source))
    messages = _opt_strings(cols.get("prompt_messages"), n, "prompt_messages", source)
    for i, text in enumerate(messages):
        if text is None:
            continue
        try:
            value = json.loads(text)
        except ValueError as exc:
            reasons[i] = reasons[i] or f"prompt_messages is not valid JSON ({exc})"
            continue
        if not isinstance(value, list):
            reasons[i] = reasons[i] or "prompt_messages must be a JSON array of chat messages"
            continue
        out[i] = value
    return out


def open_dataset(paths: Sequence[Path], root: Path | None = None) -> Any:
    """A pyarrow dataset over Parquet files (hive partition keys under ``root`` become
    columns), with the union of the files' schemas (a column one file lacks reads null)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    options: dict[str, Any] = {"format": "parquet"}
    if root is not None:
        options.update(partitioning="hive", partition_base_dir=str(root))
    files = [str(p) for p in paths]
    dataset = ds.dataset(files, **options)
    schemas = [f.physical_schema for f in dataset.get_fragments()]
    if len(schemas) > 1 or root is not None:
        try:
            schema = pa.unify_schemas([dataset.schema, *schemas], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConfigError(f"the Parquet files disagree on column types: {exc}") from None
        dataset = ds.dataset(files, schema=schema.with_metadata(schemas[0].metadata), **options)
    return dataset


def iter_record_batches(dataset: Any, *, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``batch_size`` rows of ``dataset`` (`open_dataset`), file
    by file in order, one row group in memory at a time. Columns follow the dataset's
    schema: a column a file lacks reads null; hive partition keys are constant columns.

    Memory is bounded by the largest row group (decompressed), not by the file: each row
    group gets a reader of its own. Neither the dataset scanner (it reads ahead) nor one
    `ParquetFile.iter_batches` over a whole file (with pyarrow 26, the Arrow memory it
    holds grows row group by row group until the file ends: 70 to 114 MB over 8 row
    groups of 2,000 traces of 60 tokens at top-20,
    ``tests/test_trace_formats.py::test_parquet_is_read_one_row_group_at_a_time``)
    stays bounded."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    schema = dataset.schema
    for fragment in dataset.get_fragments():
        keys = ds.get_partition_keys(fragment.partition_expression) or {}
        with pq.ParquetFile(fragment.path) as reader:
            groups = range(reader.metadata.num_row_groups)
            parts = (
                part
                for group in groups
                for part in reader.iter_batches(
                    batch_size=batch_size, row_groups=[group], use_threads=False
                )
            )
            for part in parts:
                arrays = []
                for field in schema:
                    if field.name in part.schema.names:
                        arrays.append(part.column(field.name).cast(field.type))
                    elif field.name in keys:
                        arrays.append(pa.array([keys[field.name]] * part.num_rows, field.type))
                    else:
                        arrays.append(pa.nulls(part.num_rows, field.type))
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
