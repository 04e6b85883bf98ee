"""The Spark engine, with real Spark in local mode (local[2]): the local engine's numbers.

One SparkSession for the module (the JVM takes seconds to start) and small data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from entropy_sentinel.streaming import estimate_stream
from entropy_sentinel.table import feature_frame
from entropy_sentinel.testing.synthetic import synthetic_traces
from entropy_sentinel.traces import iter_trace_batches, write_parquet
from entropy_sentinel.traces.parquet import traces_to_arrow
from tests.conftest import CORPUS

pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow

from entropy_sentinel import spark as es_spark  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    session = es_spark.session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def estimator() -> es.CorrectnessEstimator:
    train = synthetic_traces(400, tokens=30, k=20, seed=1)
    return es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(train)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four files: one holds a single domain (other slices empty there), one a bad record."""
    root = tmp_path_factory.mktemp("lake")
    batch = synthetic_traces(300, tokens=30, k=20, seed=2)
    write_parquet(batch.subset(np.arange(0, 100)), root / "part=0" / "a.parquet")
    gamma = np.flatnonzero(np.array([s["domain"] == "gamma" for s in batch.slices]))
    write_parquet(batch.subset(gamma[gamma >= 100]), root / "part=1" / "a.parquet")
    rest = np.setdiff1d(np.arange(100, 300), gamma)
    write_parquet(batch.subset(rest[:100]), root / "part=2" / "a.parquet")
    table = pa.Table.from_batches([traces_to_arrow(batch.subset(rest[100:]))])
    rows = table.to_pylist()
    rows[3]["topk_logprobs"][2][0] = 0.25  # a positive logprob: that record is rejected
    (root / "part=3").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), root / "part=3" / "a.parquet")
    return root


def _numeric(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].dtype.kind == "f"]


def _assert_same_result(spark_result: es.SliceAccuracy, local_result: es.SliceAccuracy) -> None:
    a, b = spark_result.to_df(), local_result.to_df()
    assert list(a.columns) == list(b.columns)
    keys = [c for c in a.columns if a[c].dtype.kind not in "fi" and c != "covered"]
    assert a[keys].equals(b[keys]) and list(a["n"]) == list(b["n"])
    np.testing.assert_allclose(a[_numeric(a)], b[_numeric(b)], rtol=0, atol=1e-9)


def test_estimates_on_the_corpus_equal_the_local_engine(
    spark: object, estimator: es.CorrectnessEstimator
) -> None:
    corpus = es.read_traces(CORPUS)
    fitted = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(
        corpus.subset(np.arange(0, 1950, 2))
    )
    frame = es_spark.read_traces_frame(spark, str(CORPUS))  # type: ignore[arg-type]
    result, summary = es_spark.estimate(frame, fitted, by="domain")
    local = es.estimate_accuracy(corpus, fitted, by="domain")
    assert summary.n_traces == 1950 and not summary.rejected
    _assert_same_result(result, local)


def test_a_partitioned_lake_with_empty_slices_and_a_bad_record(
    spark: object, estimator: es.CorrectnessEstimator, lake: Path
) -> None:
    frame = es_spark.read_traces_frame(spark, str(lake))  # type: ignore[arg-type]
    for window in (None, 4 * 3600):
        result, summary = es_spark.estimate(frame, estimator, by="domain", window=window)
        local, local_summary = estimate_stream(
            iter_trace_batches(lake, batch_size=64), estimator, "domain", window=window
        )
        _assert_same_result(result, local)
        assert summary.n_traces == local_summary.n_traces == 299
        [bad] = summary.rejected.sample
        [local_bad] = local_summary.rejected.sample
        assert bad.record_id == local_bad.record_id and bad.reason == local_bad.reason
        assert "positive" in bad.reason
    assert result.by == ("domain", "window") and len({r.key[1] for r in result}) == 6


def test_features_and_predictions_equal_the_local_engine(
    spark: object, estimator: es.CorrectnessEstimator, lake: Path
) -> None:
    frame = es_spark.read_traces_frame(spark, str(lake))  # type: ignore[arg-type]
    local = es.read_traces(lake, errors="collect")
    rows = es_spark.features(frame).toArrow().to_pandas().sort_values("id").reset_index(drop=True)
    good = rows[rows["error"].isna()].reset_index(drop=True)
    expected = feature_frame(local).sort_values("id").reset_index(drop=True)
    assert list(good["id"]) == list(expected["id"])
    np.testing.assert_allclose(good[_numeric(expected)], expected[_numeric(expected)], atol=1e-9)
    [error] = rows.loc[rows["error"].notna(), "id"]
    assert error == local.rejected[0].record_id
    p = (
        es_spark.predict(frame, estimator)
        .toArrow()
        .to_pandas()
        .dropna(subset=["p"])
        .sort_values("id")
    )
    local_p = pd.Series(estimator.predict_traces(local), index=local.ids).sort_index()
    np.testing.assert_allclose(p["p"].to_numpy(), local_p.to_numpy(), rtol=0, atol=1e-9)


def test_the_cli_writes_the_local_engine_s_csv(
    spark: object, estimator: es.CorrectnessEstimator, lake: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m.skops"
    estimator.save(model)
    outputs = {}
    for engine in ("local", "spark"):
        out = tmp_path / f"{engine}.csv"
        args = ["estimate", str(lake), "--model", str(model), "-o", str(out), "--quiet"]
        result = runner.invoke(app, [*args, "--engine", engine, "--master", "local[2]"])
        assert result.exit_code == 0, result.output
        assert "rejected 1 records" in " ".join(result.output.split())
        outputs[engine] = pd.read_csv(out)
    a, b = outputs["spark"], outputs["local"]
    assert a["domain"].tolist() == b["domain"].tolist()
    np.testing.assert_allclose(a[_numeric(a)], b[_numeric(b)], rtol=0, atol=1e-9)
    features = tmp_path / "features.parquet"
    result = runner.invoke(
        app, ["features", str(lake), "-o", str(features), "--engine", "spark", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(features).sort_values("id").reset_index(drop=True)
    assert list(got.columns)[:3] == ["id", "domain", "correct"] and len(got) == 299
