"""The work of one Spark partition: Arrow batches of traces in, Arrow batches out.

These functions run in Spark's Python workers through ``DataFrame.mapInArrow``: each
input batch becomes a `TraceBatch` by the very reader local files go through
(`entropy_sentinel.traces.parquet.arrow_to_traces`, or `read_traces` on JSON lines),
and is reduced by the very code of the local engine (`feature_frame`,
`streaming.partial_estimate`). They need pyarrow, not pyspark, so they are tested
and reused without a cluster.

A record that cannot be read is not dropped: it leaves the partition as a row whose
``error`` (features, predictions) or ``kind = "rejected"`` (estimates) says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from entropy_sentinel.traces.batch import Rejection, TraceBatch

if TYPE_CHECKING:
    import pyarrow as pa


__all__ = [
    "LINE_COLUMN",
    "estimate_schema",
    "feature_schema",
    "features_partition",
    "prediction_schema",
    "predictions_partition",
    "stats_fields",
    "stats_partition",
    "to_traces",
]

LINE_COLUMN = "value"
"""The column of a DataFrame of JSON lines (``spark.read.text``)."""


def to_traces(record_batch: pa.RecordBatch) -> TraceBatch:
    """An input batch as traces: the columnar trace format, or JSON lines in ``value``.

    Rejections carry index -1: a partition does not know its rows' place in the source.
    """
    from entropy_sentinel.traces.formats import read_traces
    from entropy_sentinel.traces.parquet import arrow_to_traces

    names = record_batch.schema.names
    if names == [LINE_COLUMN]:
        lines = [line for line in record_batch.column(0).to_pylist() if line and line.strip()]
        batch = read_traces(lines, errors="collect")
    else:
        batch = arrow_to_traces(record_batch, source="a Spark partition")
    if not batch.rejected:
        return batch
    rejected = tuple(dataclasses.replace(r, index=-1) for r in batch.rejected)
    return dataclasses.replace(batch, rejected=rejected)


# ------------------------------------------------------------------- features
def feature_schema() -> pa.Schema:
    """Per trace: id, slice, correct, the 11 features, the baseline scores, error."""
    import pyarrow as pa

    from entropy_sentinel.profile import FEATURE_NAMES
    from entropy_sentinel.scores import SCORES

    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("slice", pa.map_(pa.string(), pa.string())),
            pa.field("correct", pa.bool_()),
            *(pa.field(name, pa.float64()) for name in (*FEATURE_NAMES, *SCORES)),
            pa.field("error", pa.string()),
        ]
    )


def features_partition(
    batches: Iterator[pa.RecordBatch], *, mode: str, precision: str
) -> Iterator[pa.RecordBatch]:
    """`feature_frame` of each input batch, plus one row per rejected record."""

    from entropy_sentinel.profile import FEATURE_NAMES, entropy_profile
    from entropy_sentinel.scores import baseline_scores
    from entropy_sentinel.steps import StepStats

    schema = feature_schema()
    names = (*FEATURE_NAMES,)
    for record_batch in batches:
        batch = to_traces(record_batch)
        columns: dict[str, Any] = _trace_columns(batch)
        if len(batch):
            stats = StepStats(batch, mode, precision=precision)
            profile = entropy_profile(stats)
            for j, name in enumerate(names):
                columns[name] = profile[:, j]
            columns.update(baseline_scores(stats))
        out = _table(columns, len(batch), schema)
        yield from _with_rejections(out, batch.rejected, schema)


# ---------------------------------------------------------------- predictions
def prediction_schema() -> pa.Schema:
    """Per trace: id, slice, correct, timestamp, p (P(correct)), error."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("id", pa.string()),
            pa.field("slice", pa.map_(pa.string(), pa.string())),
            pa.field("correct", pa.bool_()),
            pa.field("timestamp", pa.timestamp("us", tz="UTC")),
            pa.field("p", pa.float64()),
            pa.field("error", pa.string()),
        ]
    )


def predictions_partition(
    batches: Iterator[pa.RecordBatch], *, estimator: Any
) -> Iterator[pa.RecordBatch]:
    """P(correct) of each trace (``estimator``: the fitted estimator or a Spark
    broadcast of it); traces the estimator refuses and unreadable records get an error."""
    import pyarrow as pa

    schema = prediction_schema()
    from entropy_sentinel.streaming import signature_of

    model: Any = getattr(estimator, "value", estimator)
    signature = signature_of(model)
    for record_batch in batches:
        batch = to_traces(record_batch)
        rejected = list(batch.rejected)
        if signature is not None and len(batch):
            refused = signature.refused(batch)
            for i in np.flatnonzero(refused):
                rejected.append(
                    Rejection(-1, batch.ids[int(i)], None, signature.why(batch.subset([int(i)])))
                )
            if refused.any():
                batch = batch.subset(~refused)
        columns = _trace_columns(batch)
        ts = batch.timestamps
        columns["timestamp"] = pa.array(
            np.round(np.nan_to_num(ts) * 1e6).astype(np.int64), pa.int64(), mask=np.isnan(ts)
        ).cast(pa.timestamp("us", tz="UTC"))
        columns["p"] = model.predict_traces(batch) if len(batch) else np.zeros(0)
        yield from _with_rejections(_table(columns, len(batch), schema), rejected, schema)


# ------------------------------------------------------------------ estimates
def stats_fields() -> list[tuple[str, str]]:
    """(name, "int" or "float") of each flat `SliceStats` sum (`FLAT_FIELDS`): the sums
    Spark SQL adds."""
    from entropy_sentinel.aggregate import COUNT_FIELDS, FLAT_FIELDS

    return [(name, "int" if name in COUNT_FIELDS else "float") for name in FLAT_FIELDS]


def estimate_schema(n_dims: int) -> pa.Schema:
    """Rows of `stats_partition`: ``kind`` is ``stats`` (a slice's sums in one batch),
    ``rejected`` (a record not read or refused) or ``count`` (a batch's totals)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("kind", pa.string()),
            *(pa.field(f"key_{j}", pa.string()) for j in range(n_dims)),
            pa.field("window", pa.string()),
            *(
                pa.field(name, pa.int64() if kind == "int" else pa.float64())
                for name, kind in stats_fields()
            ),
            pa.field("rejected_id", pa.string()),
            pa.field("rejected_field", pa.string()),
            pa.field("rejected_reason", pa.string()),
            pa.field("refused", pa.bool_()),
            pa.field("n_traces", pa.int64()),
            pa.field("n_tokens", pa.int64()),
            pa.field("present", pa.string()),
        ]
    )


def stats_partition(
    batches: Iterator[pa.RecordBatch],
    *,
    estimator: Any,
    by: Sequence[str],
    window: int | None,
) -> Iterator[pa.RecordBatch]:
    """Per input batch, `partial_estimate` as rows (see `estimate_schema`)."""
    import pyarrow as pa

    from entropy_sentinel.streaming import partial_estimate

    schema = estimate_schema(len(by))
    model = getattr(estimator, "value", estimator)
    fields = stats_fields()
    for record_batch in batches:
        part = partial_estimate(to_traces(record_batch), model, by, window=window)
        rows: list[dict[str, Any]] = []
        for key, stats in part.stats.items():
            row: dict[str, Any] = {"kind": "stats"}
            row.update({f"key_{j}": key[j] for j in range(len(by))})
            row["window"] = key[len(by)] if window is not None else None
            flat = stats.flat().tolist()
            row.update(
                {
                    name: round(v) if kind == "int" else v
                    for (name, kind), v in zip(fields, flat, strict=True)
                }
            )
            rows.append(row)
        n_read = len(part.rejected) - part.n_refused
        for i, rej in enumerate(part.rejected.sample):  # one batch's log keeps them all
            rows.append(
                {
                    "kind": "rejected",
                    "rejected_id": rej.record_id,
                    "rejected_field": rej.field,
                    "rejected_reason": rej.reason,
                    "refused": i >= n_read,
                }
            )
        rows.append(
            {
                "kind": "count",
                "n_traces": part.n_traces,
                "n_tokens": part.n_tokens,
                "present": ",".join(sorted(part.present)),
            }
        )
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


# -------------------------------------------------------------------- helpers
def _trace_columns(batch: TraceBatch) -> dict[str, Any]:
    import pyarrow as pa

    labels = batch.labels
    return {
        "id": list(batch.ids),
        "slice": [list(s.items()) for s in batch.slices],
        "correct": pa.array(labels == 1.0, mask=np.isnan(labels)),
    }


def _table(columns: dict[str, Any], n: int, schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    arrays = []
    for field in schema:
        value = columns.get(field.name)
        if value is None:
            arrays.append(pa.nulls(n, field.type))
        elif isinstance(value, pa.Array):
            arrays.append(value.cast(field.type))
        else:
            arrays.append(pa.array(value, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _with_rejections(
    out: pa.RecordBatch, rejected: Sequence[Rejection], schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    if out.num_rows:
        yield out
    if rejected:
        rows = [
            {"id": r.record_id, "error": (f"{r.field}: " if r.field else "") + r.reason}
            for r in rejected
        ]
        yield pa.RecordBatch.from_pylist(rows, schema=schema)
