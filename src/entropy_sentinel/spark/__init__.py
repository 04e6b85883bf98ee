"""Features, P(correct) and per-slice estimates on Apache Spark (the ``spark`` extra).

For trace tables too large for one machine (a data lake of LLM traffic logs, a
backfill over months). A DataFrame of traces has the columns of the columnar trace
format (docs/formats.md#parquet; ``spark.read.parquet`` of files written by
``sentinel convert`` or by any pipeline that follows the format), or one JSON record
per row in a ``value`` column (``spark.read.text`` of JSON Lines).

* `features`: one row per trace, the 11 features and the baseline scores;
* `predict`: P(correct) per trace, from a fitted estimator broadcast to the workers;
* `estimate`: per-slice (and per time window) estimated accuracy with intervals.

Every partition runs the local engine's own code on Arrow batches
(``DataFrame.mapInArrow``, `entropy_sentinel.spark.partitions`); slices are summed in
Spark SQL as the mergeable sums of `SliceStats`; the driver finishes the intervals
with the local engine's call (`entropy_sentinel.streaming.finish`), so both engines
agree to rounding (1e-9) given the same library versions on driver and workers.

Nothing here is imported by ``import entropy_sentinel``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.spark.partitions import (
    LINE_COLUMN,
    estimate_schema,
    feature_schema,
    features_partition,
    prediction_schema,
    predictions_partition,
    stats_fields,
    stats_partition,
)
from entropy_sentinel.streaming import PartialEstimate, finish, slice_dimensions
from entropy_sentinel.traces.batch import Rejection
from entropy_sentinel.traces.rejections import RejectionLog

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from entropy_sentinel.estimator.interface import SliceEstimator
    from entropy_sentinel.estimator.slices import SliceAccuracy

__all__ = [
    "estimate",
    "features",
    "predict",
    "read_traces_frame",
    "session",
]

BATCH_ROWS = 2048
"""Traces per Arrow batch handed to a worker (``spark.sql.execution.arrow.maxRecordsPerBatch``)."""


def session(master: str | None = None, *, app_name: str = "entropy-sentinel") -> SparkSession:
    """A SparkSession for this library: the running one (``spark-submit``), else a new one
    on ``master`` (e.g. ``local[2]``; None: Spark's default). Workers run this Python
    (``spark.pyspark.python``) in local mode; on a cluster, install the same
    entropy-sentinel version on every node."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    local = master is None or master.startswith("local")
    if local:
        # the workers must be this interpreter (its venv has entropy-sentinel); PySpark
        # reads the variable when the SparkContext starts
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            builder.config("spark.pyspark.python", sys.executable)
            .config("spark.pyspark.driver.python", sys.executable)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
        )
    spark = (
        builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_traces_frame(spark: SparkSession, path: str) -> DataFrame:
    """A DataFrame of traces from a path Spark can read: Parquet (a file, a directory, a
    glob) or JSON Lines (``.jsonl``, ``.jsonl.gz``: one record per row in ``value``).

    A local path is recognised by its content, as `entropy_sentinel.read_traces` does
    (an image or a CSV file is a `ConfigError`); a remote one (``s3a://``...) by its
    name: ``.jsonl`` / ``.jsonl.gz`` are JSON Lines, anything else Parquet.
    """
    from pathlib import Path

    from entropy_sentinel.traces.formats import open_traces

    if "://" in path and not path.startswith("file://"):
        jsonl = path.endswith((".jsonl", ".jsonl.gz"))
        files: list[str] = [path]
    else:
        source = open_traces(path.removeprefix("file://"))
        jsonl = source.format == "jsonl"
        files = [str(Path(p).resolve()) for p in source.paths]
        if source.root is not None:
            files = [str(source.root.resolve())]
    if jsonl:
        return spark.read.text(files)
    reader = spark.read
    if len(files) == 1:
        reader = reader.option("basePath", files[0]) if Path(files[0]).is_dir() else reader
    return reader.option("mergeSchema", "true").parquet(*files)


def _map_in_arrow(frame: DataFrame, func: Any, schema: Any) -> DataFrame:
    """``frame.mapInArrow`` (Arrow in, Arrow out: pandas is not involved, so PySpark's
    warning about the pandas version does not apply and is silenced)."""
    import warnings

    from pyspark.sql.pandas.types import from_arrow_schema

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "PySpark does not yet fully support pandas", FutureWarning
        )
        return _inputs(frame).mapInArrow(
            func, from_arrow_schema(schema, prefer_timestamp_ntz=False)
        )


def _inputs(frame: DataFrame) -> DataFrame:
    """The columns the partitions read (a DataFrame of lines keeps its one column)."""
    if frame.columns == [LINE_COLUMN]:
        return frame
    if "id" not in frame.columns:
        raise ConfigError(
            f"the DataFrame has no `id` column (columns: {frame.columns}); give traces in the "
            "columnar trace format (docs/formats.md#parquet) or JSON lines in `value`"
        )
    return frame


def features(frame: DataFrame, *, mode: str = "topk", precision: str = "float32") -> DataFrame:
    """Per trace: id, slice (map), correct, the 11 features, the baseline scores, and
    ``error`` (null, or why the record could not be read: its other columns are null)."""
    from entropy_sentinel.steps import check_mode

    check_mode(mode)
    func = partial(features_partition, mode=mode, precision=precision)
    return _map_in_arrow(frame, func, feature_schema())


def predict(frame: DataFrame, estimator: SliceEstimator) -> DataFrame:
    """Per trace: id, slice, correct, timestamp, ``p`` = P(correct), and ``error`` (why a
    record was not read or a trace was refused by the estimator; ``p`` is then null)."""
    broadcast = frame.sparkSession.sparkContext.broadcast(estimator)
    func = partial(predictions_partition, estimator=broadcast)
    return _map_in_arrow(frame, func, prediction_schema())


def estimate(
    frame: DataFrame,
    estimator: SliceEstimator,
    by: str | Sequence[str] | None = "domain",
    level: float = 0.95,
    *,
    window: int | None = None,
    rejections: RejectionLog | None = None,
) -> tuple[SliceAccuracy, PartialEstimate]:
    """Per-slice estimated accuracy of a DataFrame of traces, with intervals; the result
    of `entropy_sentinel.streaming.estimate_stream` on the same traces, to rounding.

    Each partition reduces its Arrow batches to per-slice `SliceStats` (one row per
    slice and batch); Spark SQL sums them by slice (and window); the driver finishes.
    Returns the result and the merged summary. Its ``rejected`` (``rejections`` when
    given) has every rejection streamed through it from the workers
    (``toLocalIterator``, one partition at a time): all counted and passed to its sink,
    the first kept.
    """
    from pyspark import StorageLevel
    from pyspark.sql import functions as F  # noqa: N812

    dims = slice_dimensions(by)
    if window is not None and window <= 0:
        raise ConfigError(f"window={window!r} must be a positive number of seconds")
    broadcast = frame.sparkSession.sparkContext.broadcast(estimator)
    func = partial(stats_partition, estimator=broadcast, by=dims, window=window)
    rows = _map_in_arrow(frame, func, estimate_schema(len(dims)))
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        keys = [f"key_{j}" for j in range(len(dims))] + (["window"] if window else [])
        fields = stats_fields()
        sums = (
            rows.where(F.col("kind") == "stats")
            .groupBy(*keys)
            .agg(*(F.sum(name).alias(name) for name, _ in fields))
            .collect()
        )
        counts = (
            rows.where(F.col("kind") == "count")
            .agg(
                F.sum("n_traces").alias("n_traces"),
                F.sum("n_tokens").alias("n_tokens"),
                F.collect_set("present").alias("present"),
            )
            .first()
        )
        log = RejectionLog() if rejections is None else rejections
        rejected = rows.where(F.col("kind") == "rejected")
        ordered = rejected.orderBy(F.col("refused"), F.col("rejected_id"))
        refused, refusal = 0, None
        for r in ordered.toLocalIterator():
            log.add([Rejection(-1, r["rejected_id"], r["rejected_field"], r["rejected_reason"])])
            if r["refused"]:
                refused += 1
                refusal = refusal or r["rejected_reason"]
    finally:
        rows.unpersist()
    summary = _summary(sums, keys, fields, counts, log, refused)
    summary.refusal = refusal
    result = finish(summary, estimator, dims, window=window, level=level)
    return result, summary


def _summary(
    sums: list[Any],
    keys: list[str],
    fields: list[tuple[str, str]],
    counts: Any,
    rejections: RejectionLog,
    refused: int,
) -> PartialEstimate:
    from entropy_sentinel.aggregate import SliceStats

    out = PartialEstimate()
    for row in sums:
        key = tuple(row[k] for k in keys)
        out.stats[key] = SliceStats.from_flat([float(row[name] or 0.0) for name, _ in fields])
    if counts is not None:
        out.n_traces = int(counts["n_traces"] or 0)
        out.n_tokens = int(counts["n_tokens"] or 0)
        out.present = {d for text in counts["present"] or [] for d in text.split(",") if d}
    out.rejected = rejections
    out.n_refused = refused
    return out
