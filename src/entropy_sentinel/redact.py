"""Secrets out of URLs before they reach a log line, an error message or a response.

`redact_url` keeps what an operator needs to recognise a URL (scheme, host, port,
path, the names of query parameters) and replaces the rest of what may be a
credential with ``***``:

* user info (``user:password@``): the whole of it, since a bare ``TOKEN@host`` is a
  secret too;
* the value of every query parameter whose name looks secret (contains ``key``,
  ``token``, ``secret``, ``pass``, ``pwd``, ``sig``, ``auth``, ``credential``,
  ``session`` or ``cookie``, in any case: ``api_key``, ``access_token``,
  ``X-Amz-Signature``...).

>>> redact_url("http://admin:S3CRET@127.0.0.1:8080/v1?api_key=KEY&model=m")
'http://***@127.0.0.1:8080/v1?api_key=***&model=m'
>>> redact_url("postgresql+psycopg://sentinel:pw@db.internal:5432/sentinel")
'postgresql+psycopg://***@db.internal:5432/sentinel'
>>> redact_text("connect to 'http://u:p@h/v1' failed")
"connect to 'http://***@h/v1' failed"
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SECRET_PARAM", "redact_json", "redact_text", "redact_url"]

SECRET_PARAM = re.compile(r"key|token|secret|pass|pwd|sig|auth|credential|session|cookie", re.I)
"""Query parameter names whose values are replaced (matched anywhere in the name)."""

_MASK = "***"
# a URL inside free text: scheme://, then anything up to whitespace, a quote or a bracket
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()\[\]{}]+")


def redact_url(url: str) -> str:
    """``url`` with user info and secret-looking query values replaced by ``***``.

    Without a scheme (``user:password@host/path?query``) the same parts are masked.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal: say nothing of it
        return "<a URL that cannot be parsed>"
    if not parts.netloc:  # no scheme: user:password@host:port/path?query
        base, q, query = url.partition("?")
        authority, slash, path = base.partition("/")
        if "@" in authority:
            authority = _MASK + "@" + authority.rpartition("@")[2]
        return authority + slash + path + q + _redact_query(query)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = _MASK + "@" + netloc.rpartition("@")[2]
    return urlunsplit(
        (parts.scheme, netloc, parts.path, _redact_query(parts.query), parts.fragment)
    )


def redact_text(text: str) -> str:
    """``text`` with every ``scheme://...`` URL in it redacted (`redact_url`).

    For messages that may quote a URL: an exception from an HTTP or database client,
    a log line, a model card.
    """
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_json(value: Any) -> Any:
    """A copy of JSON-like ``value`` (dicts, lists, text) with `redact_text` on every string."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def _redact_query(query: str) -> str:
    out = []
    for pair in query.split("&"):
        name, eq, _value = pair.partition("=")
        out.append(f"{name}={_MASK}" if eq and SECRET_PARAM.search(name) else pair)
    return "&".join(out)
