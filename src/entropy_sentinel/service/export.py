"""Stored traces back out as `TraceBatch`es, and as Parquet in the trace format.

What the service stored of each trace is exported: its id, model, event time, slice,
current label and meta from the ``traces`` table, and its per-step arrays from the
raw record (``store_raw = true``: the record is decoded again with the library) or,
for a trace still waiting for an estimator, from its stored steps. Prompt and answer
come only from ``trace_texts`` (the redacted text, ``store_text = true``) and only
when asked for (the ``text`` scope over HTTP): never from the raw record, which holds
them unredacted. Nothing else leaves: no API key, no header, no scorer internals.

A scored trace whose record was not kept (the default, ``store_raw = false``) has
features and P(correct) but no steps, so it has no row in the trace format; such
traces are counted (`ExportCounts.without_steps`), as are stored records that can no
longer be decoded (``unreadable``), never silently left out.

Traces are read in pages of `PAGE` by primary key (keyset pagination: memory stays
bounded and pages do not shift when new traces arrive), filtered by event time
``[since, until)`` and model key, in the order they were stored.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from entropy_sentinel.errors import StorageError, TraceError
from entropy_sentinel.service.json_limits import load_stored
from entropy_sentinel.service.storage.tables import trace_payloads, trace_steps, trace_texts, traces
from entropy_sentinel.service.waiting import unpack_steps
from entropy_sentinel.traces.batch import TraceBatch
from entropy_sentinel.traces.read import assemble, decode_record

if TYPE_CHECKING:
    from entropy_sentinel.service.storage.db import Database
    from entropy_sentinel.traces.parse import Parsed

__all__ = [
    "EXPORT_METADATA_KEY",
    "PAGE",
    "ExportCounts",
    "ExportQuery",
    "count_without_steps",
    "export_batches",
    "export_parquet_chunks",
]

PAGE = 1000
"""Traces read from the database per page (one row group of the Parquet export)."""
EXPORT_METADATA_KEY = "entropy_sentinel.export"
"""Parquet footer key of an export's counts (JSON: `ExportCounts`)."""
_UNREADABLE_IDS = 100


@dataclass(frozen=True)
class ExportQuery:
    """Which stored traces to export: event time in ``[since, until)`` (epoch seconds;
    None: unbounded), of model key ``model`` (None: all; ``""``: traces naming none),
    with their stored text when ``with_text``."""

    since: float | None = None
    until: float | None = None
    model: str | None = None
    with_text: bool = False

    def where(self) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        if self.since is not None:
            out.append(traces.c.ts >= self.since)
        if self.until is not None:
            out.append(traces.c.ts < self.until)
        if self.model is not None:
            out.append(traces.c.model == self.model)
        return out


@dataclass
class ExportCounts:
    """What an export wrote and what it could not: ``exported`` traces; traces stored
    without steps (``without_steps``); stored records or steps that could not be
    decoded (``unreadable``, the first 100 ids in ``unreadable_ids``)."""

    exported: int = 0
    without_steps: int = 0
    unreadable: int = 0
    unreadable_ids: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def count_without_steps(db: Database, query: ExportQuery) -> int:
    """Traces that ``query`` selects but whose steps were not stored (not exportable)."""
    stmt = (
        sa.select(sa.func.count())
        .select_from(
            traces.outerjoin(trace_payloads, trace_payloads.c.trace_pk == traces.c.id).outerjoin(
                trace_steps, trace_steps.c.trace_pk == traces.c.id
            )
        )
        .where(trace_payloads.c.trace_pk.is_(None), trace_steps.c.trace_pk.is_(None))
        .where(*query.where())
    )
    with db.read.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def export_batches(
    db: Database, query: ExportQuery, counts: ExportCounts | None = None
) -> Iterator[TraceBatch]:
    """The stored traces ``query`` selects, a `TraceBatch` of at most `PAGE` per page
    (empty pages are skipped); ``counts`` (updated as pages are read) says what was
    exported and what could not be."""
    counts = ExportCounts() if counts is None else counts
    columns = [
        traces.c.id,
        traces.c.trace_id,
        traces.c.model,
        traces.c.ts,
        traces.c.slice,
        traces.c.label,
        traces.c.meta,
        trace_payloads.c.raw,
        trace_steps.c.steps,
    ]
    joined = traces.outerjoin(trace_payloads, trace_payloads.c.trace_pk == traces.c.id).outerjoin(
        trace_steps, trace_steps.c.trace_pk == traces.c.id
    )
    if query.with_text:
        columns += [trace_texts.c.prompt, trace_texts.c.answer]
        joined = joined.outerjoin(trace_texts, trace_texts.c.trace_pk == traces.c.id)
    last = 0
    while True:
        stmt = (
            sa.select(*columns)
            .select_from(joined)
            .where(traces.c.id > last, *query.where())
            .order_by(traces.c.id)
            .limit(PAGE)
        )
        with db.read.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        last = int(rows[-1].id)
        parsed = [p for p in (_trace(r, query.with_text, counts) for r in rows) if p is not None]
        if parsed:
            counts.exported += len(parsed)
            yield assemble(parsed)


def _trace(row: Any, with_text: bool, counts: ExportCounts) -> Parsed | None:
    """The stored trace of ``row`` with its steps, or None (counted) without them."""
    tid = str(row.trace_id)
    try:
        if row.raw is not None:
            steps = _from_record(tid, zlib.decompress(row.raw))
        elif row.steps is not None:
            steps = unpack_steps(tid, row.steps)
        else:
            counts.without_steps += 1
            return None
    except (zlib.error, TraceError, StorageError, RecursionError):
        counts.unreadable += 1
        if len(counts.unreadable_ids) < _UNREADABLE_IDS:
            counts.unreadable_ids.append(tid)
        return None
    prompt, answer = None, None
    if with_text and (row.prompt is not None or row.answer is not None):
        prompt, answer = load_stored(row.prompt), row.answer
    return dataclasses.replace(
        steps,
        id=tid,
        slice=load_stored(row.slice, {}),
        label=math.nan if row.label is None else float(row.label),
        meta=load_stored(row.meta, {}) or {},
        model=row.model or None,
        prompt=prompt,
        answer=answer,
        timestamp=float(row.ts),
    )


def _from_record(trace_id: str, raw: bytes) -> Parsed:
    """The trace ``trace_id`` among those its stored record decodes to.

    A record without an id was stored under a random one (``<hex><suffix>``), where
    decoding it again names it ``trace-0<suffix>`` (the suffix ``/<choice>`` of a
    response with several choices)."""
    parsed = decode_record(raw, 0)
    for p in parsed:
        if p.id == trace_id:
            return p
    for p in parsed:
        suffix = p.id.removeprefix("trace-0")
        if p.id.startswith("trace-0") and (suffix and trace_id.endswith(suffix)):
            return p
    if len(parsed) == 1:
        return parsed[0]
    raise TraceError(f"its stored record holds no trace {trace_id!r}", record_id=trace_id)


class _Chunks(io.RawIOBase):
    """A write-only file whose bytes are taken out as they are written (`take`)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._pos += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def export_parquet_chunks(
    db: Database, query: ExportQuery, counts: ExportCounts | None = None
) -> Iterator[bytes]:
    """The export as one Parquet file in the trace format, yielded in pieces: one row
    group per page, then the footer, whose metadata key `EXPORT_METADATA_KEY` holds
    the final `ExportCounts` as JSON."""
    from entropy_sentinel.traces.parquet import ParquetTraceWriter

    counts = ExportCounts() if counts is None else counts
    sink = _Chunks()
    with ParquetTraceWriter(sink) as writer:
        for batch in export_batches(db, query, counts):
            writer.write(batch)
            yield sink.take()
        writer.add_metadata({EXPORT_METADATA_KEY: counts.to_json()})
    yield sink.take()
