"""The columnar trace format: round trips, datasets, streaming, bad input said clearly."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import entropy_sentinel as es
from entropy_sentinel.cli import app
from entropy_sentinel.errors import ConfigError
from entropy_sentinel.streaming import estimate_stream
from entropy_sentinel.table import FeatureTableWriter, feature_frame
from entropy_sentinel.testing.synthetic import synthetic_traces
from entropy_sentinel.traces import (
    ParquetTraceWriter,
    Rejection,
    iter_trace_batches,
    open_traces,
    write_parquet,
)
from entropy_sentinel.traces.corpus import read_corpus
from entropy_sentinel.traces.parquet import FORMAT_VERSION, METADATA_KEY, traces_to_arrow
from entropy_sentinel.traces.rejections import KEEP, MAX_KINDS, OTHER_KINDS, RejectionLog
from tests.conftest import CORPUS, SMOLLM2_FIXTURES

runner = CliRunner()
FIXTURE = SMOLLM2_FIXTURES / "traces.jsonl"
_STEP_ARRAYS = ("offsets", "sampled_in_topk", "labels", "requested_k", "timestamps")


def _f32(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _assert_same_at_rest(a: es.TraceBatch, b: es.TraceBatch) -> None:
    """``b`` is ``a`` stored as Parquet: equal, logprobs and entropies rounded to float32."""
    assert a.ids == b.ids and a.slices == b.slices and a.meta == b.meta
    assert a.models == b.models and a.prompts == b.prompts and a.answers == b.answers
    for name in _STEP_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("sampled_logprob", "topk_logprobs", "token_entropy"):
        np.testing.assert_array_equal(_f32(getattr(a, name)), getattr(b, name), err_msg=name)


def _mixed_records() -> list[dict[str, Any]]:
    """Every per-trace field of the format, logprob and entropy traces mixed."""
    lines = FIXTURE.read_text().splitlines()
    records: list[dict[str, Any]] = [json.loads(line) for line in lines[:6]]
    records[0].update(
        timestamp="2026-01-02T03:04:05.25Z",
        k=20,
        prompt=[{"role": "user", "content": "What is 2 + 2?"}],
        answer="4",
        model="smollm2",
    )
    records[1].update(timestamp=1_767_300_000, prompt="2 + 2 =", meta={"tier": "free", "n": [1]})
    records.append(
        {"id": "ent", "token_entropy": [0.1, 2.5], "slice": {"domain": "x"}, "correct": False}
    )
    return records


def test_jsonl_to_parquet_round_trip_keeps_every_field(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in _mixed_records()))
    original = es.read_traces(source)
    assert original.timestamps[0] == 1_767_323_045.25 and np.isnan(original.timestamps[2])
    result = runner.invoke(app, ["convert", str(source), "-o", str(tmp_path / "t.parquet")])
    assert result.exit_code == 0, result.output
    stored = es.read_traces(tmp_path / "t.parquet")
    _assert_same_at_rest(original, stored)
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert json.loads(schema.metadata[METADATA_KEY])["version"] == FORMAT_VERSION
    assert schema.field("topk_logprobs").type == pa.list_(pa.list_(pa.float32()))


def test_features_are_the_same_from_jsonl_and_from_parquet(tmp_path: Path) -> None:
    """float32 at rest is what the default float32 features compute with anyway."""
    write_parquet(es.read_traces(FIXTURE, errors="collect"), tmp_path / "t.parquet")
    for name in ("t.parquet", "jsonl.csv"):
        src = tmp_path / "t.parquet" if name == "t.parquet" else FIXTURE
        result = runner.invoke(app, ["features", str(src), "-o", str(tmp_path / f"{name}.csv")])
        assert result.exit_code == 0, result.output
    a = pd.read_csv(tmp_path / "t.parquet.csv")
    b = pd.read_csv(tmp_path / "jsonl.csv.csv")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, atol=1e-6)


def test_the_corpus_is_format_version_1_and_converts_to_version_2(tmp_path: Path) -> None:
    corpus = es.read_traces(CORPUS)
    assert len(corpus) == 1950 and not corpus.rejected
    legacy = read_corpus(CORPUS)
    for name in ("offsets", "sampled_logprob", "topk_logprobs", "labels"):
        np.testing.assert_array_equal(getattr(corpus, name), getattr(legacy, name))
    assert corpus.slices == legacy.slices and corpus.meta == legacy.meta
    write_parquet(iter_trace_batches(CORPUS, batch_size=500), tmp_path / "v2.parquet")
    _assert_same_at_rest(corpus, es.read_traces(tmp_path / "v2.parquet"))


def test_directories_and_globs_read_as_one_dataset(tmp_path: Path) -> None:
    batch = synthetic_traces(90, tokens=12, k=5)
    root = tmp_path / "lake"
    for i, day in enumerate(("2026-01-01", "2026-01-02", "2026-01-03")):
        write_parquet(
            batch.subset(np.arange(30 * i, 30 * i + 30)), root / f"day={day}" / "a.parquet"
        )
    (root / "_SUCCESS").write_text("")
    (root / "README.md").write_text("not traces")
    whole = es.read_traces(root)
    assert whole.ids == batch.ids
    assert [m["day"] for m in whole.meta[::30]] == ["2026-01-01", "2026-01-02", "2026-01-03"]
    globbed = es.read_traces(str(root / "day=*" / "*.parquet"))
    assert globbed.ids == batch.ids and "day" not in globbed.meta[0]
    sizes = [len(b) for b in iter_trace_batches(root, batch_size=16)]
    assert max(sizes) <= 16 and sum(sizes) == 90
    source = open_traces(root)
    assert (source.format, source.total, source.unit) == ("parquet", 90, "traces")


def test_bad_rows_are_rejected_with_their_position_and_the_rest_read(tmp_path: Path) -> None:
    table = pa.Table.from_batches([traces_to_arrow(synthetic_traces(5, tokens=4, k=3))])
    rows = table.to_pylist()
    rows[1]["sampled_in_topk"] = rows[1]["sampled_in_topk"][:-1]  # lists of two lengths
    rows[2]["topk_logprobs"][0][0] = 0.5  # a positive logprob
    rows[3]["id"] = None
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    batch = es.read_traces(path, errors="collect")
    assert batch.ids == ("t0", "t4")
    found = {r.index: r for r in batch.rejected}
    assert sorted(found) == [1, 2, 3]
    assert "one length" in found[1].reason and found[1].record_id == "t1"
    assert "positive" in found[2].reason and "non-empty" in found[3].reason
    with pytest.raises(es.TraceError, match="one length"):
        es.read_traces(path)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00", "is a PNG image"),
        ("table.csv", b"id,slice,correct\n1,a,true\n", "looks like CSV"),
        ("traces.jsonl", b"", "holds no traces"),
        ("junk.jsonl", b"{not json}\n{also not}\n", "none of the 2 records"),
    ],
)
def test_what_is_not_traces_fails_clearly(
    tmp_path: Path, name: str, content: bytes, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for command in (
        ["features", str(path), "-o", str(tmp_path / "f.csv")],
        ["fit", str(path), "-o", str(tmp_path / "m")],
    ):
        result = runner.invoke(app, command)
        assert isinstance(result.exception, ConfigError), result.output
        assert words in str(result.exception)
    assert not (tmp_path / "f.csv").exists()


def test_a_directory_without_parquet_and_a_parquet_of_something_else_fail(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds no \.parquet files"):
        es.read_traces(tmp_path / "empty")
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="not one of traces"):
        es.read_traces(tmp_path / "other.parquet")
    with pytest.raises(ConfigError, match="no file matches"):
        es.read_traces(str(tmp_path / "nothing-*.parquet"))


def test_gzip_and_batches_of_jsonl(tmp_path: Path) -> None:
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    whole = es.read_traces(FIXTURE, errors="collect")
    parts = list(iter_trace_batches(packed, batch_size=4))
    assert [len(b) for b in parts] == [4, 4, 4, 4, 1]
    joined = es.TraceBatch.concat(parts)
    assert joined.ids == whole.ids
    assert [r.index for r in joined.rejected] == [r.index for r in whole.rejected]


def test_streamed_features_equal_the_features_of_all_traces_at_once(tmp_path: Path) -> None:
    records = _mixed_records()
    records[3]["slice"] = {"tier": "pro"}  # a dimension only one batch has
    whole = es.read_traces(records)
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"f.{suffix}"
        with FeatureTableWriter(out) as writer:
            for batch in iter_trace_batches(records, batch_size=2):
                writer.write(feature_frame(batch))
        expected = feature_frame(whole)
        got = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert list(got.columns) == list(expected.columns)
        # equal to float32 rounding: a score may round differently in another batch
        if suffix == "csv":
            expected = pd.read_csv(io.StringIO(expected.to_csv(index=False)))
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-6)
    assert not list(tmp_path.glob(".features-*"))


def test_streamed_estimates_equal_estimate_accuracy() -> None:
    batch = synthetic_traces(600, tokens=20, k=5, seed=3)
    est = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(
        batch.subset(np.arange(300))
    )
    test = batch.subset(np.arange(300, 600))
    expected = es.estimate_accuracy(test, est, by="domain").to_df()
    parts = (test.subset(np.arange(i, min(i + 64, 300))) for i in range(0, 300, 64))
    result, summary = estimate_stream(parts, est, "domain")
    assert summary.n_traces == 300 and not summary.rejected
    got = result.to_df()
    assert list(got["domain"]) == list(expected["domain"])
    numeric = [c for c in expected.columns if expected[c].dtype.kind == "f"]
    np.testing.assert_allclose(got[numeric], expected[numeric], rtol=0, atol=1e-12)
    windowed, _ = estimate_stream([test], est, "domain", window=6 * 3600)
    assert windowed.by == ("domain", "window")
    assert sum(r.n for r in windowed) == 300 and len(windowed) == 8  # the day's 2nd half
    assert {r.key[1] for r in windowed} == {"2026-01-01T12:00:00Z", "2026-01-01T18:00:00Z"}


def test_estimate_cli_on_parquet_refuses_unscorable_traces_one_by_one(tmp_path: Path) -> None:
    batch = synthetic_traces(200, tokens=15, k=5, seed=4)
    model = tmp_path / "m.skops"
    es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(batch).save(model)
    narrow = batch.subset(np.arange(10)).truncate_topk(2)
    write_parquet(
        es.TraceBatch.concat([batch.subset(np.arange(10, 200)), narrow]), tmp_path / "t.parquet"
    )
    out = tmp_path / "est.csv"
    result = runner.invoke(
        app,
        ["estimate", str(tmp_path / "t.parquet"), "--model", str(model), "-o", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    assert "rejected 10 records" in " ".join(result.output.split())
    assert pd.read_csv(out)["n"].sum() == 190
    with (tmp_path / "est.csv.rejected.jsonl").open() as fh:
        rejected = [json.loads(line) for line in fh]
    assert sorted(r["record_id"] for r in rejected) == sorted(narrow.ids)


def test_record_timestamps_are_checked() -> None:
    batch = es.read_traces(
        [{"id": "a", "token_entropy": [0.1], "timestamp": "yesterday"}], errors="collect"
    )
    [rej] = batch.rejected
    assert rej.field == "$.timestamp" and "not a time" in rej.reason


def test_the_trace_parquet_shape_is_documented(tmp_path: Path) -> None:
    write_parquet(synthetic_traces(1, tokens=2, k=2), tmp_path / "t.parquet")
    doc = (Path(__file__).parents[1] / "docs" / "formats.md").read_text()
    for column in pq.read_schema(tmp_path / "t.parquet").names:
        assert f"`{column}`" in doc, column


def test_a_stream_counts_every_rejection_and_keeps_only_the_first(tmp_path: Path) -> None:
    # regression: estimate_stream held every rejection of its input in a list
    good = synthetic_traces(120, tokens=8, k=5, seed=6)
    est = es.CorrectnessEstimator(family="lr", random_state=0).fit_traces(good)
    lines = [json.dumps({"id": f"bad-{i}", "token_entropy": [-1.0]}) for i in range(700)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    seen: list[Rejection] = []
    log = RejectionLog(keep=25, sink=seen.append)
    batches = [*iter_trace_batches(path, batch_size=64), good]
    result, summary = estimate_stream(batches, est, "domain", rejections=log)
    assert summary.rejected is log and summary.n_traces == 120 and sum(r.n for r in result) == 120
    assert log.n == len(seen) == 700 and len(log.sample) == 25 and not log.complete
    assert [r.record_id for r in seen] == [f"bad-{i}" for i in range(700)]
    assert [r.record_id for r in log.sample] == [f"bad-{i}" for i in range(25)]
    assert sum(log.kinds.values()) == 700
    # merging a summary that kept only some still counts all of them
    total = RejectionLog(keep=5)
    total.merge(log)
    assert total.n == 700 and len(total.sample) == 5 and sum(total.kinds.values()) == 700


def test_a_rejection_log_counts_at_most_max_kinds_kinds() -> None:
    log = RejectionLog(keep=0)
    names = [chr(97 + j // 26) + chr(97 + j % 26) for j in range(150)]  # 150 kinds
    log.add(Rejection(i, None, None, f"reason {names[i % 150]}") for i in range(600))
    assert log.n == 600 and not log.sample
    assert len(log.kinds) == MAX_KINDS + 1 and log.kinds[OTHER_KINDS] == 4 * 50


def test_features_cli_lists_every_rejection_it_does_not_keep(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"id": f"bad-{i}", "token_entropy": [-1.0]}) for i in range(KEEP + 300)]
    path.write_text("\n".join([*lines, json.dumps({"id": "ok", "token_entropy": [0.5]})]) + "\n")
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["features", str(path), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"rejected {KEEP + 300} records" in " ".join(result.output.split())
    listed = (tmp_path / "f.parquet.rejected.jsonl").read_text().splitlines()
    assert len(listed) == KEEP + 300 and json.loads(listed[-1])["record_id"] == f"bad-{KEEP + 299}"


def test_parquet_is_read_one_row_group_at_a_time(tmp_path: Path) -> None:
    # regression: one ParquetFile.iter_batches over a whole file held Arrow memory of
    # every row group it had passed until the file ended (pyarrow 26)
    path = tmp_path / "t.parquet"
    with ParquetTraceWriter(path) as writer:
        for i in range(8):
            writer.write(synthetic_traces(2000, tokens=60, k=20, seed=i, prefix=f"g{i}-"))
    assert pq.ParquetFile(path).metadata.num_row_groups == 8
    allocated = []
    n = 0
    for batch in iter_trace_batches(path, batch_size=2000):
        n += len(batch)
        allocated.append(pa.total_allocated_bytes())
        del batch
    assert n == 16000
    # the old reader grew from 70 to 114 MB over these 8 row groups; this one stays flat
    assert max(allocated[2:]) < 1.2 * allocated[1], allocated
