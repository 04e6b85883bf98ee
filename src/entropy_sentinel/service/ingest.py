"""Ingest requests into validated traces, and the per-record answer.

Accepted bodies (``POST /v1/traces``):

* ``application/json``: one trace record (docs/formats.md: a canonical record,
  a bare OpenAI/vLLM/llama.cpp response, or a JSON array of stream chunks), a batch
  ``{"traces": [record, ...]}`` (an object with a ``traces`` array is a batch), or a
  JSON array of records (an array whose items all have ``logprobs`` or
  ``token_entropy`` and no ``choices``; any other array is one streamed answer);
* ``application/x-ndjson`` (also ``application/jsonl``): one record per line.

Every record goes through `entropy_sentinel.traces.decode_record`, so the shapes
accepted and the error messages are exactly the library's. The service adds:

* ``timestamp`` (optional, top level): RFC 3339 text or epoch seconds; the event
  time used for windows. Default: when the service received the request. At most
  ``max_future_skew`` seconds in the future.
* limits that keep the database sane: ids of at most 256 characters, at most 32
  slice dimensions of at most 64 characters, values of at most 256, no NUL
  characters, ``*`` is reserved (it names all traffic), and ``meta`` and ``prompt``
  nested at most `MAX_JSON_DEPTH` (32) levels deep.
* records without an ``id`` get a random one (returned in the answer). Give ids to
  make retries idempotent: an id that is already stored is answered ``duplicate``
  and counted once.

A bad record never fails the others: it is listed in ``rejections`` with its
position, id, field and reason. That holds for NaN and Infinity too, which are not
JSON: a batch holding them is re-read record by record, and only the records that
hold them are rejected (saying so, with the field).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from entropy_sentinel.errors import ConfigError, TraceError
from entropy_sentinel.service.json_limits import check_depth
from entropy_sentinel.service.storage.tables import ALL, MAX_DIMENSION, MAX_ID, MAX_VALUE
from entropy_sentinel.timeutil import format_instant, parse_instant
from entropy_sentinel.traces import Rejection, decode_record
from entropy_sentinel.traces.parse import Parsed

__all__ = [
    "JSON_TYPES",
    "MAX_DIMENSIONS",
    "NDJSON_TYPES",
    "BodyError",
    "Incoming",
    "IngestItem",
    "IngestResult",
    "ParsedBody",
    "parse_body",
    "parse_objects",
]

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
MAX_DIMENSIONS = 32
_TOO_DEEP = "JSON is nested too deeply to read; trace records are a few levels deep"


class BodyError(ConfigError):
    """The request body as a whole cannot be read (not one bad record: the envelope).

    Attributes:
        status: the HTTP status that fits (413 too many records, 415 media type, 422).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Incoming:
    """One valid trace of a request: its record position, parsed arrays, event time."""

    index: int
    trace: Parsed
    ts: float
    raw: bytes | None


@dataclass(frozen=True)
class ParsedBody:
    """Valid traces and rejected records of one request."""

    items: list[Incoming]
    rejections: list[Rejection]
    n_records: int


@dataclass(frozen=True)
class IngestItem:
    """The answer for one trace: ``stored`` (new) or ``duplicate`` (id already stored);
    ``p_correct`` is None for a duplicate and for a trace stored waiting for an estimator
    of its ``model`` (the model key it is stored under)."""

    index: int
    id: str
    status: str
    p_correct: float | None
    model: str = ""


@dataclass(frozen=True)
class IngestResult:
    """The answer to one ingest request."""

    n_records: int
    items: tuple[IngestItem, ...]
    rejections: tuple[Rejection, ...]

    @property
    def accepted(self) -> int:
        return sum(1 for i in self.items if i.status == "stored")

    @property
    def duplicates(self) -> int:
        return sum(1 for i in self.items if i.status == "duplicate")

    @property
    def waiting(self) -> int:
        """Traces stored without P(correct): their model has no estimator yet."""
        return sum(1 for i in self.items if i.status == "stored" and i.p_correct is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.n_records,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "waiting": self.waiting,
            "rejected": len(self.rejections),
            "traces": [dataclasses.asdict(i) for i in self.items],
            "rejections": [
                {"index": r.index, "id": r.record_id, "field": r.field, "reason": r.reason}
                for r in self.rejections
            ],
        }


class _Batch(msgspec.Struct):
    traces: list[msgspec.Raw]


class _Envelope(msgspec.Struct):
    id: str | int | None = None
    timestamp: str | float | None = None


_BATCH_DECODER = msgspec.json.Decoder(_Batch)
_ARRAY_DECODER = msgspec.json.Decoder(list[msgspec.Raw])
# an object's keys, its values left undecoded: tells a trace record from a stream chunk
_PROBE_DECODER = msgspec.json.Decoder(dict[str, msgspec.Raw])
# Read after decode_record accepted the record, so only `timestamp` can fail here.
_ENVELOPE_DECODER = msgspec.json.Decoder(_Envelope)


def parse_body(
    body: bytes,
    content_type: str | None,
    *,
    now: float,
    max_records: int,
    max_future_skew: float,
    keep_raw: bool = False,
) -> ParsedBody:
    """Split a request body into records and validate each (see the module docstring).

    Raises:
        BodyError: unsupported media type, too many records, or a batch whose
            ``traces`` is not an array.
    """
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media in NDJSON_TYPES:
        raws: list[bytes] = [line for line in body.splitlines() if line.strip()]
    elif media in JSON_TYPES or media.endswith("+json"):
        raws = _split_json(body)
    else:
        raise BodyError(
            f"Content-Type {media!r} is not supported; send application/json (one record or "
            '{"traces": [...]}) or application/x-ndjson (one record per line)',
            415,
        )
    if len(raws) > max_records:
        raise BodyError(
            f"{len(raws)} records in one request is more than max_batch={max_records}; split "
            "the batch into smaller requests",
            413,
        )
    out = ParsedBody([], [], len(raws))
    for index, raw in enumerate(raws):
        _validate(raw, index, now, max_future_skew, keep_raw, out)
    return out


def parse_objects(
    records: Sequence[Any], *, now: float, max_future_skew: float, keep_raw: bool = False
) -> ParsedBody:
    """Validate in-process records (dicts, OpenAI client objects, lists of chunks).

    For callers inside the service (the proxy): no HTTP, same rules as `parse_body`.
    """
    out = ParsedBody([], [], len(records))
    for index, record in enumerate(records):
        _validate(record, index, now, max_future_skew, keep_raw, out)
    return out


# ------------------------------------------------------------------ helpers
def _split_json(body: bytes) -> list[bytes]:
    """The records of a JSON body: a batch, an array of records, or one record."""
    if body.lstrip()[:1] == b"[":
        return _split_array(body)
    try:
        batch = _BATCH_DECODER.decode(body)
    except msgspec.ValidationError as exc:
        if "`$.traces`" in str(exc):
            raise BodyError(f'a batch is {{"traces": [record, ...]}}: {exc}', 422) from None
        return [body]  # one record
    except msgspec.DecodeError:
        # not JSON: decode_record says why, in the library's words (per record if it can)
        return _split_leniently(body) or [body]
    except RecursionError:
        raise BodyError(_TOO_DEEP, 422) from None
    return [bytes(r) for r in batch.traces]


def _split_array(body: bytes) -> list[bytes]:
    """A top-level array is records when each item is a record (has ``logprobs`` or
    ``token_entropy`` and no ``choices``), else the chunks of one streamed answer."""
    try:
        items = _ARRAY_DECODER.decode(body)
    except msgspec.DecodeError:
        return _split_leniently(body) or [body]
    except RecursionError:
        raise BodyError(_TOO_DEEP, 422) from None
    return [bytes(i) for i in items] if items and all(map(_is_record, items)) else [body]


def _is_record(raw: msgspec.Raw) -> bool:
    try:
        keys = _PROBE_DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return False
    return _record_keys(keys)


def _record_keys(keys: Mapping[str, Any]) -> bool:
    return "choices" not in keys and ("logprobs" in keys or "token_entropy" in keys)


def _split_leniently(body: bytes) -> list[bytes] | None:
    """Records of a body msgspec refused, re-read by Python's parser (which takes NaN and
    Infinity), so that only the records holding them are rejected; None if it cannot."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("traces"), list):
        records: list[Any] = data["traces"]
    elif isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        records = data if all(map(_record_keys, data)) else []
    else:
        return None
    return [json.dumps(r).encode() for r in records] if records else None


def _validate(
    record: Any, index: int, now: float, skew: float, keep_raw: bool, out: ParsedBody
) -> None:
    """Decode one record with the library, then apply the service's rules."""
    try:
        parsed = decode_record(record, index)
    except TraceError as exc:
        out.rejections.append(Rejection.from_error(index, exc))
        return
    except RecursionError:  # msgspec's nesting limit; the library lets it through
        out.rejections.append(Rejection(index, None, None, _TOO_DEEP))
        return
    rid = parsed[0].id if parsed else None
    try:
        envelope = _envelope(record)
        ts = _event_time(envelope.timestamp, now, skew)
        parsed = _with_ids(parsed, index, envelope.id is None)
        for trace in parsed:
            _check_trace(trace)
    except TraceError as exc:
        out.rejections.append(Rejection(index, exc.record_id or rid, exc.field, exc.reason))
        return
    raw = zlib.compress(_raw_bytes(record), 6) if keep_raw else None
    out.items.extend(Incoming(index, trace, ts, raw) for trace in parsed)


def _envelope(record: Any) -> _Envelope:
    """The record's own ``id`` and ``timestamp`` (none for a list of stream chunks)."""
    if isinstance(record, bytes | bytearray | memoryview | str):
        text = bytes(record) if not isinstance(record, str) else record.encode()
        if text.lstrip()[:1] == b"[":
            return _Envelope()  # stream chunks: no id of their own, no timestamp
        try:
            return _ENVELOPE_DECODER.decode(text)
        except msgspec.ValidationError as exc:  # only `timestamp` can be wrong here
            raise TraceError(
                f"{str(exc).partition(' - at ')[0]}: timestamp is RFC 3339 text or epoch seconds",
                field="$.timestamp",
            ) from None
    if isinstance(record, dict):
        ts = record.get("timestamp")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, str | int | float)):
            raise TraceError(
                f"timestamp {ts!r} is not RFC 3339 text or epoch seconds", field="$.timestamp"
            )
        return _Envelope(id=record.get("id"), timestamp=ts)
    if isinstance(record, list | tuple):
        return _Envelope()
    return _Envelope(id=getattr(record, "id", None))


def _raw_bytes(record: Any) -> bytes:
    if isinstance(record, bytes | bytearray | memoryview):
        return bytes(record)
    if isinstance(record, str):
        return record.encode()
    return msgspec.json.encode(record, enc_hook=_encode_fallback)


def _event_time(value: str | float | None, now: float, skew: float) -> float:
    if value is None:
        return now
    try:
        ts = parse_instant(value, what="timestamp")
    except ConfigError as exc:
        raise TraceError(str(exc), field="$.timestamp") from None
    if ts > now + skew:
        raise TraceError(
            f"timestamp {format_instant(ts)} is {ts - now:.0f} s in the future (the service's "
            f"clock says {format_instant(now)}; at most {skew:.0f} s ahead is accepted): check "
            "the client's clock, or send epoch seconds",
            field="$.timestamp",
        )
    return ts


def _with_ids(parsed: list[Parsed], index: int, generate: bool) -> list[Parsed]:
    """Records without an id get a random one instead of the library's ``trace-<index>``."""
    if not generate:
        return parsed
    base = uuid.uuid4().hex
    prefix = f"trace-{index}"
    return [dataclasses.replace(p, id=base + p.id[len(prefix) :]) for p in parsed]


def _check_trace(trace: Parsed) -> None:
    rid = trace.id
    _check_text(rid, MAX_ID, "$.id", "id", rid)
    if len(trace.slice) > MAX_DIMENSIONS:
        raise TraceError(
            f"{len(trace.slice)} slice dimensions is more than {MAX_DIMENSIONS}; keep the "
            "slice to the dimensions you monitor (domain, customer, topic...) and put the "
            "rest in `meta`",
            record_id=rid,
            field="$.slice",
        )
    for dim, value in trace.slice.items():
        if dim == ALL:
            raise TraceError(
                "slice dimension '*' is reserved (it names all traffic); rename it",
                record_id=rid,
                field="$.slice",
            )
        _check_text(dim, MAX_DIMENSION, "$.slice", "slice dimension", rid)
        _check_text(value, MAX_VALUE, f"$.slice.{dim}", "slice value", rid)
    if trace.meta:
        check_depth(trace.meta, "$.meta", rid)
        try:
            msgspec.json.encode(trace.meta)
        except (TypeError, UnicodeEncodeError, OverflowError) as exc:
            raise TraceError(
                f"meta cannot be stored as JSON ({exc})", record_id=rid, field="$.meta"
            ) from None
    if trace.prompt is not None:
        check_depth(trace.prompt, "$.prompt", rid)


def _check_text(text: str, limit: int, field: str, what: str, rid: str) -> None:
    if len(text) > limit:
        raise TraceError(
            f"{what} is {len(text)} characters long; at most {limit} are accepted",
            record_id=rid[:64],
            field=field,
        )
    if "\x00" in text:
        raise TraceError(f"{what} contains a NUL character", record_id=None, field=field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TraceError(
            f"{what} is not valid Unicode (lone surrogate)", record_id=None, field=field
        ) from None


def _encode_fallback(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"a {type(obj).__name__} value cannot be stored as JSON")
