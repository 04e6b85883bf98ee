"""Durations, instants and time buckets, in one convention: Unix epoch seconds (UTC).

* A *duration* is written ``"90s"``, ``"5m"``, ``"1h"``, ``"1d"``, ``"1w"`` (decimals too:
  ``"0.5s"``, ``"1.5h"``) or given as a number of seconds. Windows and buckets are
  whole seconds (`parse_duration`); timeouts and intervals may be fractions
  (`parse_seconds`).
* An *instant* is an RFC 3339 / ISO 8601 string (``"2025-05-01T12:00:00Z"``; without an
  offset it is read as UTC) or a number of seconds since the Unix epoch. Where a
  range starts or ends (``since``, ``until``), a duration means "that long ago".
* A *bucket* is the storage grain: ``bucket_start = floor(ts / bucket) * bucket``.
  Windows are whole numbers of buckets, aligned to the epoch (a ``1d`` window starts at
  00:00 UTC), so per-window sums are exact sums of stored buckets.

>>> parse_duration("1h"), parse_duration(90), parse_duration("1.5h"), format_duration(5400)
(3600, 90, 5400, '90m')
>>> parse_seconds("0.5s"), parse_seconds(0.25), parse_seconds("2m")
(0.5, 0.25, 120.0)
>>> parse_instant("1970-01-02T00:00:00Z")
86400.0
>>> bucket_of(3725.5, 60)
3720
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from entropy_sentinel.errors import ConfigError

__all__ = [
    "bucket_of",
    "format_duration",
    "format_instant",
    "parse_duration",
    "parse_instant",
    "parse_seconds",
    "parse_when",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
# Instants outside [1970, 9999] are certainly mistakes (and overflow some databases).
_MAX_EPOCH = 253402300799.0


def parse_seconds(value: str | int | float, *, what: str = "duration") -> float:
    """A positive number of seconds (fractions allowed) from ``"0.5s"``-style text or a number."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not a duration; write e.g. '90s', '5m', '1h', '1d'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ConfigError(
                f"{what} {value!r} is not a duration; write a positive count and a unit "
                "(s, m, h, d, w), e.g. '0.5s', '90s', '5m', '1h', '1d'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{what} {value!r} must be a positive number of seconds")
    return seconds


def parse_duration(value: str | int | float, *, what: str = "duration") -> int:
    """A positive whole number of seconds from ``"5m"``-style text or a number."""
    seconds = parse_seconds(value, what=what)
    if seconds != int(seconds):
        raise ConfigError(f"{what} {value!r} must be a whole number of seconds")
    return int(seconds)


def format_duration(seconds: int) -> str:
    """The shortest exact ``"<n><unit>"`` text for a duration in seconds."""
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    raise AssertionError("unreachable: every whole number of seconds is a multiple of 1s")


def parse_instant(value: str | int | float, *, what: str = "time") -> float:
    """Epoch seconds (UTC) from RFC 3339 text or a number; naive text is read as UTC."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} is not a time; give RFC 3339 text or epoch seconds")
    if isinstance(value, int | float):
        ts = float(value)
    else:
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                raise ConfigError(
                    f"{what} {value!r} is not a time; give RFC 3339 text such as "
                    "'2025-05-01T12:00:00Z' or epoch seconds"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ts = parsed.timestamp()
    if not (math.isfinite(ts) and 0.0 <= ts <= _MAX_EPOCH):
        raise ConfigError(f"{what} {value!r} is outside 1970-01-01 .. 9999-12-31")
    return ts


def parse_when(value: str, now: float, *, what: str = "time") -> float:
    """An instant, or a duration meaning "that long before ``now``" (``"24h"``, ``"7d"``).

    >>> parse_when("1h", now=7200.0), parse_when("1970-01-01T00:00:10Z", now=0.0)
    (3600.0, 10.0)
    """
    if _DURATION.match(value):
        return now - parse_seconds(value, what=what)
    return parse_instant(value, what=what)


def format_instant(ts: float) -> str:
    """RFC 3339 text in UTC, whole seconds when ``ts`` is whole (``...T12:00:00Z``)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    spec = "seconds" if ts == int(ts) else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def bucket_of(ts: float, bucket: int) -> int:
    """Start (epoch seconds) of the bucket of width ``bucket`` seconds holding ``ts``."""
    return int(ts // bucket) * bucket
