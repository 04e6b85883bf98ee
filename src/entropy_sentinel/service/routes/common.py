"""Shared pieces of the routes: error responses for the OpenAPI schema, query parsing."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.timeutil import parse_duration, parse_when

__all__ = ["ErrorOut", "errors", "opt_duration", "opt_instant", "time_range"]


class ErrorOut(BaseModel):
    """An error: ``detail`` says what is wrong and how to fix it."""

    detail: str | list[Any]


_TEXT = {
    400: "A query parameter has an invalid value.",
    401: "Missing or invalid API key.",
    403: "The key lacks the route's scope, or (no keys configured) the client is not loopback.",
    413: "The request body or batch is too large.",
    415: "Unsupported Content-Type or Content-Encoding.",
    422: "The request cannot be processed as sent.",
    503: "The service cannot take the request now; retry after `Retry-After` seconds.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for error ``codes``."""
    return {code: {"model": ErrorOut, "description": _TEXT[code]} for code in codes}


def opt_duration(value: str | None, what: str) -> int | None:
    """Seconds from ``"1h"`` text; None or ``"none"``/``"0"`` -> None."""
    if value is None or value.strip().lower() in ("", "none", "0"):
        return None
    return parse_duration(value, what=what)


def opt_instant(value: str | None, what: str) -> float | None:
    """Epoch seconds from RFC 3339 text, epoch seconds, or ``"24h"`` (24 hours ago)."""
    if value is None or not value.strip():
        return None
    return parse_when(value.strip(), time.time(), what=what)


def time_range(since: str | None, until: str | None, default_span: int) -> tuple[float, float]:
    """``[since, until)`` in epoch seconds; defaults: until = now, since = until - span."""
    end = opt_instant(until, "until")
    end = time.time() if end is None else end
    start = opt_instant(since, "since")
    start = end - default_span if start is None else start
    if start >= end:
        raise ConfigError(f"since ({since}) must be before until ({until})")
    return start, end
