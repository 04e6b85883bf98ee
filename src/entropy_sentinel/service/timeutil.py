"""Moved to `entropy_sentinel.timeutil` (the trace reader needs it without the service);
these names stay importable from here."""

from entropy_sentinel.timeutil import (
    bucket_of,
    format_duration,
    format_instant,
    parse_duration,
    parse_instant,
    parse_seconds,
    parse_when,
)

__all__ = [
    "bucket_of",
    "format_duration",
    "format_instant",
    "parse_duration",
    "parse_instant",
    "parse_seconds",
    "parse_when",
]
