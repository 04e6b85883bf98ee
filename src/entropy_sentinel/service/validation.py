"""The 422 answer to a request that fails validation, always valid JSON.

FastAPI's own answer echoes each offending ``input``; Python's JSON parser reads
``NaN`` and ``Infinity`` in a request body, and echoing them back cannot be
serialised (it answered 500). Here non-finite numbers are echoed as text and the
message says why they were refused; an input nested deeper than `MAX_JSON_DEPTH` is
not echoed at all.

>>> body = validation_body([{"type": "int_type", "loc": ["body", "min_labels"],
...                          "msg": "Input should be a valid integer", "input": float("nan")}])
>>> body["detail"][0]["input"], body["detail"][0]["msg"].split("; ")[1][:22]
('NaN', 'NaN and Infinity are n')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from fastapi.encoders import jsonable_encoder

from entropy_sentinel.service.json_limits import MAX_JSON_DEPTH, json_depth

__all__ = ["NOT_JSON", "validation_body"]

NOT_JSON = "NaN and Infinity are not JSON: send a finite number, or null"


def validation_body(errors: Sequence[Any]) -> dict[str, Any]:
    """``{"detail": [...]}`` for FastAPI's validation ``errors``, serialisable as strict JSON."""
    out = []
    for error in errors:
        item = dict(error)
        if "input" in item:
            if json_depth(item["input"]) > MAX_JSON_DEPTH:
                item["input"] = f"(nested more than {MAX_JSON_DEPTH} levels; not shown)"
            else:
                scalar = isinstance(item["input"], float)
                item["input"], non_finite = _finite(item["input"])
                if non_finite and scalar:  # the refused value itself is NaN or ±Infinity
                    item["msg"] = f"{item.get('msg', 'invalid value')}; {NOT_JSON}"
        out.append(item)
    detail, _ = _finite(jsonable_encoder(out))
    return {"detail": detail}


def _finite(value: Any) -> tuple[Any, bool]:
    """``value`` with NaN / ±Infinity replaced by their text; whether there was one."""
    if isinstance(value, float) and not math.isfinite(value):
        return ("NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"), True
    if isinstance(value, dict):
        pairs = [(k, _finite(v)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, any(f for _, (_, f) in pairs)
    if isinstance(value, list | tuple):
        items = [_finite(v) for v in value]
        return [v for v, _ in items], any(f for _, f in items)
    return value, False
