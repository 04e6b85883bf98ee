"""Where traces come from: a file, a directory or glob of files, or records in memory.

Accepted paths, recognised by their content (not their name):

* JSON Lines, one record per line (``.jsonl``), or gzip-compressed (``.jsonl.gz``);
* Parquet in the trace format of `entropy_sentinel.traces.parquet` (version 2, or the
  corpus layout, version 1);
* a directory of Parquet files (a partitioned dataset: ``key=value`` folders become
  per-trace values in ``meta``; files starting with ``_`` or ``.`` are skipped, as
  Spark's ``_SUCCESS`` and ``.crc`` files);
* a glob such as ``"logs/2025-*/*.parquet"`` (quote it in a shell).

Anything else (an image, a CSV file, a directory without Parquet files) is a
`ConfigError` naming the path and what it looks like; an empty file reads as no
traces. `iter_trace_batches` yields batches of bounded size, so a command that
reduces batch by batch runs in memory independent of the input's size.
"""

from __future__ import annotations

import glob
import gzip
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from entropy_sentinel.errors import ConfigError, TraceError
from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.parse import Parsed
from entropy_sentinel.traces.read import TraceSource, assemble, iter_parsed

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "TraceFormat",
    "TraceInput",
    "iter_trace_batches",
    "open_traces",
    "read_traces",
]

TraceFormat = Literal["jsonl", "parquet"]
DEFAULT_BATCH_SIZE = 2048
"""Traces per batch of `iter_trace_batches` (~70 MB of arrays for 200-token top-20
traces, the largest working set of a streaming command)."""

_ACCEPTED = (
    "traces are JSON Lines (.jsonl, .jsonl.gz), Parquet (.parquet) in the trace format "
    "of docs/formats.md, or a directory or glob of Parquet files"
)
_SNIFF = 1 << 16
_ALL = 1 << 30  # "one batch" (pyarrow takes an int32 batch size)


@dataclass(frozen=True)
class TraceInput:
    """A trace source on disk, recognised (`open_traces`).

    Attributes:
        name: the path or glob as given.
        format: ``"jsonl"`` (plain or gzip) or ``"parquet"``.
        paths: the files, in reading order.
        root: the directory of a partitioned dataset (hive keys below it), else None.
        total: the size progress is counted against: bytes of JSONL (None when
            compressed), rows of Parquet.
        unit: ``"bytes"`` or ``"traces"``, what `total` and the progress count.
    """

    name: str
    format: TraceFormat
    paths: tuple[Path, ...]
    root: Path | None
    total: int | None
    unit: Literal["bytes", "traces"]

    def batches(
        self,
        *,
        batch_size: int | None = DEFAULT_BATCH_SIZE,
        errors: Literal["raise", "collect"] = "collect",
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[TraceBatch]:
        """Batches of at most ``batch_size`` traces (None: one batch), each carrying the
        rejections of its part of the source (`TraceBatch.rejected`)."""
        _check_errors(errors)
        if self.format == "jsonl":
            yield from _assembled(_lines(self.paths, on_progress), batch_size, errors, None)
            return
        yield from _parquet_batches(self, batch_size or _ALL, errors, on_progress)


def open_traces(source: str | os.PathLike[str]) -> TraceInput:
    """Recognise a trace file, directory or glob (see the module docstring)."""
    name = os.fspath(source)
    path = Path(name)
    if path.is_dir():
        files = _dataset_files(path)
        if not files:
            raise ConfigError(
                f"directory {name!r} holds no .parquet files; a directory is read as a Parquet "
                f"dataset ({_ACCEPTED})"
            )
        return _parquet_input(name, files, path)
    if path.exists():
        kind = _sniff(path)
        if kind == "parquet":
            return _parquet_input(name, (path,), None)
        gz = _is_gzip(path)
        return TraceInput(
            name, "jsonl", (path,), None, None if gz else path.stat().st_size, "bytes"
        )
    if glob.has_magic(name):
        matches = tuple(
            Path(p) for p in sorted(glob.glob(name, recursive=True)) if Path(p).is_file()
        )
        if not matches:
            raise ConfigError(f"no file matches {name!r} ({_ACCEPTED})")
        kinds = {_sniff(p) for p in matches}
        if kinds == {"parquet"}:
            return _parquet_input(name, matches, None)
        if kinds == {"jsonl"}:
            sizes = [None if _is_gzip(p) else p.stat().st_size for p in matches]
            total = None if None in sizes else sum(s for s in sizes if s is not None)
            return TraceInput(name, "jsonl", matches, None, total, "bytes")
        raise ConfigError(f"{name!r} matches both JSON Lines and Parquet files; give one kind")
    raise ConfigError(f"trace file {name!r} does not exist")


def iter_trace_batches(
    source: TraceSource,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors: Literal["raise", "collect"] = "collect",
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[TraceBatch]:
    """Batches of at most ``batch_size`` traces from a path (file, directory, glob) or an
    iterable of records, each with the rejections of its part of the source.

    >>> recs = [{"id": str(i), "token_entropy": [0.5]} for i in range(5)]
    >>> [len(b) for b in iter_trace_batches(recs, batch_size=2)]
    [2, 2, 1]
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    if isinstance(source, str | os.PathLike):
        yield from open_traces(source).batches(
            batch_size=batch_size, errors=errors, on_progress=on_progress
        )
        return
    _check_errors(errors)
    yield from _assembled(source, batch_size, errors, on_progress)


def read_traces(
    source: TraceSource,
    *,
    errors: Literal["raise", "collect"] = "raise",
    on_progress: Callable[[int], None] | None = None,
) -> TraceBatch:
    """Read traces into one `TraceBatch`.

    Args:
        source: a path (JSON Lines, ``.jsonl.gz``, Parquet, a directory or glob of
            Parquet files: see the module docstring) or an iterable of records (dicts,
            JSON strings, OpenAI client response objects, lists of stream chunks).
        errors: ``"raise"`` stops at the first bad record with a `TraceError` naming its
            id and field; ``"collect"`` keeps reading and lists every bad record in
            ``batch.rejected`` (bulk mode: nothing is dropped silently).
        on_progress: called with the amount consumed: bytes of JSONL, rows of Parquet,
            records of an iterable.

    >>> batch = read_traces([{"id": "a", "slice": {"domain": "gsm8k"}, "correct": True,
    ...                       "token_entropy": [0.1, 0.7, 0.0]}])
    >>> batch.ids, batch.lengths.tolist(), batch.labels.tolist()
    (('a',), [3], [1.0])
    """
    if isinstance(source, str | os.PathLike):
        parts = list(
            open_traces(source).batches(batch_size=None, errors=errors, on_progress=on_progress)
        )
        return parts[0] if len(parts) == 1 else TraceBatch.concat(parts)
    _check_errors(errors)
    [batch] = _assembled(source, None, errors, on_progress)
    return batch


# ------------------------------------------------------------------ JSON Lines
def _check_errors(errors: str) -> None:
    if errors not in ("raise", "collect"):
        raise ConfigError(f"errors={errors!r}: use 'raise' or 'collect'")


def _assembled(
    source: Iterable[Any],
    batch_size: int | None,
    errors: Literal["raise", "collect"],
    on_progress: Callable[[int], None] | None,
) -> Iterator[TraceBatch]:
    """Parsed records of ``source`` assembled into batches of ``batch_size`` traces
    (always exactly one batch, possibly empty, when ``batch_size`` is None)."""
    rejections: list[Rejection] = []
    chunk: list[Parsed] = []
    yielded = False
    for parsed in iter_parsed(
        source, errors=errors, rejections=rejections, on_progress=on_progress
    ):
        chunk.append(parsed)
        if batch_size is not None and len(chunk) >= batch_size:
            yield assemble(chunk, rejected=tuple(rejections))
            yielded = True
            chunk, rejections[:] = [], []
    if chunk or rejections or (batch_size is None and not yielded):
        yield assemble(chunk, rejected=tuple(rejections))


def _lines(paths: Iterable[Path], on_progress: Callable[[int], None] | None) -> Iterator[bytes]:
    """The non-blank lines of JSONL files (gzip or plain) in order, reporting bytes read."""
    for path in paths:
        with gzip.open(path, "rb") if _is_gzip(path) else path.open("rb") as fh:
            pending = 0
            for line in fh:
                pending += len(line)
                if line.strip():  # blank lines are not records
                    if on_progress is not None:
                        on_progress(pending)
                    pending = 0
                    yield line
            if on_progress is not None and pending:
                on_progress(pending)


# --------------------------------------------------------------------- Parquet
def _dataset_files(root: Path) -> tuple[Path, ...]:
    """The .parquet files under ``root``, sorted, skipping ``_*`` and ``.*`` names."""
    found = []
    for path in sorted(root.rglob("*.parquet")):
        parts = path.relative_to(root).parts
        if path.is_file() and not any(p.startswith(("_", ".")) for p in parts):
            found.append(path)
    return tuple(found)


def _parquet_input(name: str, paths: tuple[Path, ...], root: Path | None) -> TraceInput:
    import pyarrow.parquet as pq

    total = 0
    for path in paths:
        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except Exception as exc:  # pyarrow raises several kinds for a damaged file
            raise ConfigError(f"{str(path)!r} is not a readable Parquet file: {exc}") from None
    return TraceInput(name, "parquet", paths, root, total, "traces")


def _parquet_batches(
    source: TraceInput,
    batch_size: int,
    errors: Literal["raise", "collect"],
    on_progress: Callable[[int], None] | None,
) -> Iterator[TraceBatch]:
    from entropy_sentinel.traces.parquet import (
        arrow_to_traces,
        iter_record_batches,
        layout_of,
        open_dataset,
    )

    dataset = open_dataset(source.paths, source.root)
    layout_of(dataset.schema, source.name)  # a Parquet file of something else: say so now
    row = 0
    yielded = False
    for record_batch in iter_record_batches(dataset, batch_size=batch_size):
        batch = arrow_to_traces(record_batch, first_index=row, source=source.name)
        row += record_batch.num_rows
        if on_progress is not None:
            on_progress(record_batch.num_rows)
        if errors == "raise" and batch.rejected:
            first = batch.rejected[0]
            raise TraceError(first.reason, record_id=first.record_id, index=first.index)
        if len(batch) or batch.rejected:
            yielded = True
            yield batch
    if not yielded and batch_size >= _ALL:
        yield TraceBatch.empty()


def _sniff(path: Path) -> TraceFormat:
    """The format of a file from its first bytes; `ConfigError` when it is neither."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF)
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(_SNIFF)
        except OSError as exc:
            raise ConfigError(f"{str(path)!r} is not readable gzip: {exc}") from None
    text = head.lstrip()
    if not text or text[:1] in (b"{", b"["):
        return "jsonl"
    raise ConfigError(f"{str(path)!r} is not a trace file: it {_looks_like(head)}. {_ACCEPTED}")


def _looks_like(head: bytes) -> str:
    magic = {
        b"\x89PNG": "is a PNG image",
        b"%PDF": "is a PDF document",
        b"PK\x03\x04": "is a zip archive",
        b"\xff\xd8\xff": "is a JPEG image",
        b"GIF8": "is a GIF image",
        b"SQLite format": "is an SQLite database",
    }
    for prefix, what in magic.items():
        if head.startswith(prefix):
            return what
    first = head.split(b"\n", 1)[0][:60].decode("utf-8", "replace")
    if b"," in head.split(b"\n", 1)[0]:
        return f"looks like CSV (first line {first!r})"
    return f"starts with {first!r}, not a JSON record"


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"
