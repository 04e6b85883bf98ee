"""The ``--engine spark`` side of ``sentinel features`` and ``sentinel estimate``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from entropy_sentinel.cli._io import check_read, rejection_log, report_rejections
from entropy_sentinel.cli.app import console
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.spark import estimate, features, read_traces_frame, session
from entropy_sentinel.streaming import PartialEstimate
from entropy_sentinel.traces.batch import Rejection
from entropy_sentinel.traces.rejections import RejectionLog

if TYPE_CHECKING:
    from entropy_sentinel.estimator.interface import SliceEstimator
    from entropy_sentinel.estimator.slices import SliceAccuracy

__all__ = ["spark_estimate", "spark_features"]


def spark_features(
    input: Path,
    output: Path,
    *,
    mode: str,
    precision: str,
    master: str | None,
    rejected: Path,
) -> int:
    """Write the feature table of ``input`` as a Parquet directory; the number rejected.

    Columns and order are the local engine's: id, one per slice dimension (sorted),
    correct (when any trace is labelled), the features, the scores."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F  # noqa: N812

    if output.suffix.lower() != ".parquet":
        raise ConfigError(f"--output {str(output)!r}: with --engine spark, give a .parquet name")
    spark = session(master)
    rows = features(read_traces_frame(spark, str(input)), mode=mode, precision=precision)
    rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        good = rows.where(F.col("error").isNull())
        stats = good.agg(
            F.count("*").alias("n"),
            F.sum("length").alias("tokens"),
            F.max(F.col("correct").isNotNull().cast("int")).alias("labelled"),
        ).first()
        assert stats is not None  # an aggregate without grouping has one row
        dims = sorted(
            r[0] for r in good.select(F.explode(F.map_keys("slice"))).distinct().collect()
        )
        bad = rows.where(F.col("error").isNotNull()).select("id", "error")
        with rejection_log(rejected) as rejections:
            for r in bad.toLocalIterator():  # one partition at a time on the driver
                rejections.add([Rejection(-1, r["id"], None, r["error"])])
        n, tokens = int(stats["n"] or 0), int(stats["tokens"] or 0)
        report_rejections((n, tokens, rejections), input, rejected)
        check_read(n, len(rejections), input)
        names = [c for c in rows.columns if c not in ("id", "slice", "correct", "error")]
        columns = [F.col("id")]
        columns += [F.col("slice")[d].alias(d) for d in dims]
        columns += [F.col("correct")] if stats["labelled"] else []
        columns += [F.col(c) for c in names]
        good.select(*columns).write.mode("overwrite").parquet(str(output))
    finally:
        rows.unpersist()
    console.print(f"wrote {n} rows x {len(columns)} columns to {output}/", highlight=False)
    return len(rejections)


def spark_estimate(
    input: Path,
    estimator: SliceEstimator,
    *,
    by: Sequence[str] | None,
    window: int | None,
    level: float,
    master: str | None,
    rejections: RejectionLog | None = None,
) -> tuple[SliceAccuracy, PartialEstimate]:
    """`entropy_sentinel.spark.estimate` of the traces at ``input``."""
    spark = session(master)
    frame = read_traces_frame(spark, str(input))
    return estimate(frame, estimator, by, level, window=window, rejections=rejections)
