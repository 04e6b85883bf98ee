"""JSON Lines and in-memory records, decoded and parsed one record at a time.

JSONL lines are decoded by msgspec straight into the typed shapes of
`entropy_sentinel.traces.shapes`; Python objects (dicts, OpenAI client response
models, llama-cpp-python responses) are converted with ``msgspec.convert``.
Either way the same validation runs, so a record is accepted or rejected
identically whichever way it arrives.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import msgspec
import numpy as np

from entropy_sentinel.errors import ConfigError, TraceError
from entropy_sentinel.traces.batch import Rejection, TraceBatch
from entropy_sentinel.traces.parse import Parsed, parse_record
from entropy_sentinel.traces.shapes import Record, Step, TopLevel

__all__ = ["TraceSource", "assemble", "decode_record", "iter_parsed"]

TraceSource = str | os.PathLike[str] | Iterable[Any]
"""A path (JSON Lines, Parquet, a directory or glob: `entropy_sentinel.traces.formats`)
or an iterable of records.

Records may be dicts, JSON strings/bytes, objects with ``model_dump()`` (OpenAI
client responses), or lists of stream chunks.
"""

_DECODER: msgspec.json.Decoder[Record | list[Step]] = msgspec.json.Decoder(TopLevel)


class _IdOnly(msgspec.Struct):
    id: str | int | None = None


def decode_record(raw: Any, index: int) -> list[Parsed]:
    """Decode and parse one record (bytes/str JSON or a Python object) into traces.

    Raises `TraceError` naming the record id (when it can be read) and the field.
    """
    try:
        if isinstance(raw, bytes | bytearray | memoryview | str):
            record = _DECODER.decode(raw)
        else:
            record = _convert(_to_builtin(raw))
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise _as_trace_error(exc, raw, index) from None
    except TypeError as exc:  # an object that is not JSON-like at all
        raise TraceError(str(exc), index=index) from None
    except RecursionError:  # msgspec's nesting guard
        raise TraceError("record is nested too deeply to be a trace", index=index) from None
    try:
        return parse_record(record, index)
    except TraceError as exc:
        if exc.index is None:
            exc.index = index
        raise


def iter_parsed(
    source: TraceSource,
    *,
    errors: Literal["raise", "collect"] = "raise",
    rejections: list[Rejection] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Parsed]:
    """Yield parsed traces from ``source`` one record at a time (constant memory).

    With ``errors="collect"`` bad records are appended to ``rejections`` instead of
    raising. ``on_progress`` is called with the number of bytes (files) or records
    (iterables) consumed since the previous call.
    """
    if errors not in ("raise", "collect"):
        raise ConfigError(f"errors={errors!r}: use 'raise' or 'collect'")
    if errors == "collect" and rejections is None:
        raise ConfigError("errors='collect' needs a `rejections` list to append to")
    for index, raw, consumed in _iter_raw(source):
        if on_progress is not None:
            on_progress(consumed)
        try:
            yield from decode_record(raw, index)
        except TraceError as exc:
            if errors == "raise":
                raise
            assert rejections is not None
            rejections.append(Rejection.from_error(index, exc))


def assemble(parsed: list[Parsed], *, rejected: tuple[Rejection, ...] = ()) -> TraceBatch:
    """Concatenate parsed traces into one batch (already validated record by record)."""
    if not parsed:
        return dataclasses.replace(TraceBatch.empty(), rejected=rejected)
    lengths = np.fromiter((p.n_steps for p in parsed), dtype=np.int64, count=len(parsed))
    offsets = np.zeros(len(parsed) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    width = max(p.topk_logprobs.shape[1] for p in parsed)
    topk = np.full((int(offsets[-1]), width), -np.inf)
    for p, start in zip(parsed, offsets[:-1].tolist(), strict=False):
        topk[start : start + p.n_steps, : p.topk_logprobs.shape[1]] = p.topk_logprobs
    return TraceBatch(
        ids=tuple(p.id for p in parsed),
        offsets=offsets,
        sampled_logprob=np.concatenate([p.sampled_logprob for p in parsed]),
        sampled_in_topk=np.concatenate([p.sampled_in_topk for p in parsed]),
        topk_logprobs=topk,
        token_entropy=np.concatenate(
            [
                p.token_entropy if p.token_entropy is not None else np.full(p.n_steps, np.nan)
                for p in parsed
            ]
        ),
        slices=tuple(p.slice for p in parsed),
        labels=np.fromiter((p.label for p in parsed), dtype=np.float64, count=len(parsed)),
        meta=tuple(p.meta for p in parsed),
        rejected=rejected,
        models=tuple(p.model for p in parsed),
        requested_k=np.fromiter((p.k for p in parsed), dtype=np.int64, count=len(parsed)),
        prompts=tuple(p.prompt for p in parsed),
        answers=tuple(p.answer for p in parsed),
        timestamps=np.fromiter((p.timestamp for p in parsed), dtype=np.float64, count=len(parsed)),
    )


# ------------------------------------------------------------------ helpers
def _iter_raw(source: TraceSource) -> Iterator[tuple[int, Any, int]]:
    """(index, raw record, amount consumed) for each non-blank record of ``source``."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise ConfigError(f"trace file {str(path)!r} does not exist")
        with _open(path) as fh:
            index, pending = 0, 0
            for line in fh:
                pending += len(line)
                if line.strip():  # blank lines are not records
                    yield index, line, pending
                    index, pending = index + 1, 0
        return
    if isinstance(source, bytes | bytearray):
        raise ConfigError(
            "pass a path or an iterable of records, not raw bytes; use "
            "io.BytesIO(...).readlines() for JSONL held in memory"
        )
    for index, item in enumerate(source):
        yield index, item, 1


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]  # GzipFile is an IO[bytes]
    return path.open("rb")


def _convert(obj: Any) -> Record | list[Step]:
    """Python objects -> typed record. numpy scalars/arrays (which msgspec does not
    convert) take a JSON round trip that turns them into plain numbers."""
    try:
        result: Record | list[Step] = msgspec.convert(obj, TopLevel, strict=False)
    except msgspec.ValidationError as exc:
        if "numpy" not in str(exc):
            raise
        result = _DECODER.decode(msgspec.json.encode(obj, enc_hook=_numpy_to_builtin))
    return result


def _numpy_to_builtin(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"a {type(obj).__name__} value cannot be read as JSON")


def _to_builtin(obj: Any) -> Any:
    """OpenAI client models (pydantic) and lists of them -> plain dicts/lists."""
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(obj, list | tuple):
        return [_to_builtin(x) for x in obj]
    return obj


def _as_trace_error(exc: Exception, raw: Any, index: int) -> TraceError:
    message = str(exc)
    field = None
    if " - at `" in message:
        message, _, rest = message.partition(" - at `")
        field = rest.rstrip("`")
    record_id = None
    try:
        if isinstance(raw, bytes | bytearray | memoryview | str):
            rid = msgspec.json.decode(raw, type=_IdOnly).id
        else:
            rid = msgspec.convert(_to_builtin(raw), _IdOnly, strict=False).id
        record_id = None if rid is None else str(rid)
    except (msgspec.DecodeError, RecursionError):
        pass
    if not isinstance(exc, msgspec.ValidationError):
        non_finite = _non_finite(raw, message)
        if non_finite is not None:
            message, found_id, field = non_finite
            record_id = record_id or found_id
        else:
            message = f"not valid JSON ({message})"
    return TraceError(message, record_id=record_id, field=field, index=index)


_AT_BYTE = re.compile(r"\(byte (\d+)\)")
_NON_FINITE = re.compile(rb"-?(?:NaN|nan|Infinity|inf)")


def _non_finite(raw: Any, message: str) -> tuple[str, str | None, str | None] | None:
    """(reason, record id, JSON path) when JSON text fails on NaN or Infinity, else None.

    JSON has no such numbers, but Python's ``json.dumps`` writes them by default, so
    they are the most common "invalid character".
    """
    at = _AT_BYTE.search(message)
    if at is None or not isinstance(raw, bytes | bytearray | memoryview | str):
        return None
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    pos = int(at.group(1))
    # the parser stops on the token's first byte, or a little into it ("nan" reads as "n...")
    found = (_NON_FINITE.match(data, start) for start in range(max(pos - 2, 0), pos + 1))
    token = next((t for t in found if t is not None and t.start() <= pos < t.end()), None)
    if token is None:
        return None
    reason = (
        f"{token.group(0).decode()} is not JSON (byte {token.start()}): JSON has no NaN or "
        "Infinity; "
        "send null (or leave the value out); Python writes them unless "
        "json.dumps(..., allow_nan=False)"
    )
    try:
        obj = json.loads(data)  # Python's parser reads NaN and ±Infinity: find where
    except (ValueError, RecursionError):
        return reason, None, None
    rid = obj.get("id") if isinstance(obj, dict) else None
    return reason, None if rid is None else str(rid), _path_of_non_finite(obj)


def _path_of_non_finite(obj: Any) -> str | None:
    """The JSON path of the first NaN or ±Infinity in ``obj`` (depth first, in order)."""
    stack: list[tuple[Any, str]] = [(obj, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}") for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(value))))
    return None
