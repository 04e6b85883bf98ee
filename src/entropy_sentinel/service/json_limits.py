"""One nesting limit for every JSON value the service stores, checked at ingest and on read.

Free-form values of a trace record (``meta``, the ``prompt`` messages) are stored as
JSON and come back in answers (``/v1/priorities``, the annotator export). Python's
JSON tools, ``dataclasses.asdict`` and the response serialiser all recurse, so a
value nested a few hundred levels deep, accepted once, would make every answer that
carries it fail. Hence:

* ingest refuses a record whose stored values are nested more than `MAX_JSON_DEPTH`
  levels (`check_depth`, a clear rejection of that record only);
* values read back from the database go through `load_stored`, which never raises:
  a value stored by an older version beyond the limit (or unreadable) is replaced by
  a short note saying so, so no answer fails because of stored data.

Depth counts containers: ``{}`` and ``[]`` are 1 level, ``{"a": {"b": 1}}`` is 2, a
scalar 0. The check is iterative and stops at the limit (no recursion, no full walk
of a hostile value).

>>> json_depth({"a": [1, {"b": 2}]})
3
>>> load_stored('{"a": 1}')
{'a': 1}
>>> load_stored("[" * 40 + "]" * 40)["sentinel_note"][:40]
'this value is nested more than 32 levels'
"""

from __future__ import annotations

import json
from typing import Any

from entropy_sentinel.errors import TraceError

__all__ = ["MAX_JSON_DEPTH", "check_depth", "json_depth", "load_stored"]

MAX_JSON_DEPTH = 32
"""Most levels of nesting of a stored JSON value (``meta``, ``prompt``)."""


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Levels of nesting of ``value`` (see the module docstring), counted up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


def check_depth(value: Any, field: str, record_id: str | None) -> None:
    """Raise `TraceError` when ``value`` is nested deeper than `MAX_JSON_DEPTH`."""
    if json_depth(value) > MAX_JSON_DEPTH:
        raise TraceError(
            f"{field.removeprefix('$.')} is nested more than {MAX_JSON_DEPTH} levels deep; "
            f"at most {MAX_JSON_DEPTH} are stored: flatten it (e.g. dotted keys)",
            record_id=record_id,
            field=field,
        )


def load_stored(text: str | None, default: Any = None) -> Any:
    """A JSON value read back from the database; never raises (module docstring).

    ``None`` (SQL NULL) gives ``default``.
    """
    if text is None:
        return default
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {"sentinel_note": "this stored value is not readable JSON; it is not shown"}
    if json_depth(value) > MAX_JSON_DEPTH:
        return {
            "sentinel_note": f"this value is nested more than {MAX_JSON_DEPTH} levels deep "
            "(stored before ingest refused such values); it is not shown"
        }
    return value
