"""The slice of a proxied request: ``domain=chemistry,customer=acme``.

Written in the ``X-Sentinel-Slice`` header, or in the request's
``metadata.sentinel_slice`` (same text). Pairs are separated by commas, names from
values by ``=``; spaces around either are ignored; a ``%XX`` escape stands for any
byte (``%2C`` a comma, ``%3D`` an equals sign, ``%25`` a percent sign). The limits
are the ingest API's: at most 32 dimensions, names of at most 64 and values of at
most 256 characters, no NUL, and ``*`` is not a name (it means all traffic).

>>> parse_slice("domain=chemistry, customer=acme%2C%20inc")
{'domain': 'chemistry', 'customer': 'acme, inc'}
>>> parse_slice("")
{}
>>> parse_slice("domain")
Traceback (most recent call last):
...
entropy_sentinel.errors.ConfigError: X-Sentinel-Slice: 'domain' is not name=value; write \
the slice as name=value pairs separated by commas, e.g. domain=chemistry,customer=acme
"""

from __future__ import annotations

from urllib.parse import unquote

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.ingest import MAX_DIMENSIONS
from entropy_sentinel.service.storage.tables import ALL, MAX_DIMENSION, MAX_VALUE

__all__ = ["SLICE_HEADER", "parse_slice"]

SLICE_HEADER = "x-sentinel-slice"
_HINT = (
    "write the slice as name=value pairs separated by commas, e.g. domain=chemistry,customer=acme"
)


def parse_slice(text: str, source: str = "X-Sentinel-Slice") -> dict[str, str]:
    """``{name: value}`` from slice text (see the module docstring); `ConfigError` if bad."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name, value = unquote(name.strip()), unquote(value.strip())
        if not sep or not name:
            raise ConfigError(f"{source}: {part.strip()!r} is not name=value; {_HINT}")
        if name in out:
            raise ConfigError(f"{source}: {name!r} is given twice; {_HINT}")
        if name == ALL:
            raise ConfigError(f"{source}: '*' is reserved (it names all traffic); rename it")
        for what, item, limit in (("name", name, MAX_DIMENSION), ("value", value, MAX_VALUE)):
            if len(item) > limit:
                raise ConfigError(
                    f"{source}: slice {what} {item[:40]!r}... is {len(item)} characters long; "
                    f"at most {limit} are accepted"
                )
            if "\x00" in item:
                raise ConfigError(f"{source}: slice {what} {item[:40]!r} contains a NUL character")
        out[name] = value
    if len(out) > MAX_DIMENSIONS:
        raise ConfigError(
            f"{source}: {len(out)} slice dimensions is more than {MAX_DIMENSIONS}; keep the "
            "dimensions you monitor (domain, customer, ...)"
        )
    return out
