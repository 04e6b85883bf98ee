"""ASGI middleware that refuses what a web page could make a local browser send.

Without API keys the service trusts loopback clients, and a browser on the same
machine is one. Two checks keep web pages out:

* **Host** (DNS rebinding: a page at ``evil.example`` whose name resolves to
  127.0.0.1 reads the service as its own origin). A request is served only when its
  ``Host`` is an IP address (a name an attacker's DNS can rebind is never one), one
  of the names the service is bound to (``localhost``; ``host`` when it is a name;
  the machine's host names when bound to all interfaces), or matches
  ``allowed_hosts`` (``name``, ``.example.com`` for the domain and its subdomains, or
  ``*`` for any). Otherwise: 400.
* **Content-Type** (cross-site requests: a page may POST ``text/plain`` or a typeless
  body anywhere without a CORS preflight, and this service answers no preflight). A
  POST, PUT or PATCH must say ``application/json`` (or ``application/*+json``; the
  ingest route also takes the NDJSON types). Otherwise: 415.

Refusals on the OpenAI-compatible proxy routes are shaped like OpenAI's errors
(``{"error": {"message", "type", "param", "code"}}``), elsewhere ``{"detail": ...}``.
Each is logged (host or type, path, client) and counted in
``sentinel_auth_failures_total{reason="host"|"content_type"}``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from entropy_sentinel.service.ingest import JSON_TYPES, NDJSON_TYPES
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.middleware import send_json

__all__ = ["OPENAI_ROUTES", "RequestGuard", "bound_names", "host_allowed"]

log = logging.getLogger("entropy_sentinel.service.auth")

OPENAI_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions"})
"""Paths whose refusals are OpenAI-shaped errors (the recording proxy)."""

_NDJSON_ROUTES = frozenset({"/v1/traces"})
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
_LOOPBACK_NAMES = ("localhost",)
_WILDCARD_BINDS = ("", "0.0.0.0", "::")


def bound_names(host: str) -> frozenset[str]:
    """Host names the service answers to when it listens on ``host`` (module docstring)."""
    names = {*_LOOPBACK_NAMES, host.lower().strip("[]")}
    if host in _WILDCARD_BINDS:
        for name in (socket.gethostname(), socket.getfqdn()):
            if name:
                names.add(name.lower())
    return frozenset(n for n in names if n)


def host_allowed(header: str, names: frozenset[str], allowed: tuple[str, ...]) -> bool:
    """Whether a request's ``Host`` header value may be served (module docstring).

    >>> names = bound_names("127.0.0.1")
    >>> [host_allowed(h, names, (".example.com",))
    ...  for h in ("127.0.0.1:8000", "[::1]:80", "localhost:8000", "evil.example",
    ...            "api.example.com", "example.com.")]
    [True, True, True, False, True, True]
    """
    name = _hostname(header)
    if not name:
        return True  # no Host at all (HTTP/1.0 probes): not a browser
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    if name in names or "*" in allowed:
        return True
    for pattern in allowed:
        p = pattern.lower().rstrip(".")
        if name == p or (p.startswith(".") and (name == p[1:] or name.endswith(p))):
            return True
    return False


def _hostname(header: str) -> str:
    """The host part of a ``Host`` header, lower case, without port or trailing dot."""
    h = header.strip().lower()
    if h.startswith("["):  # [::1]:8000
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


class RequestGuard:
    """The Host and Content-Type checks (see the module docstring).

    Args:
        app: the wrapped application.
        metrics: where refusals are counted.
        host: the address the service listens on.
        allowed_hosts: further names (``allowed_hosts`` setting).
    """

    def __init__(
        self, app: ASGIApp, *, metrics: Metrics, host: str, allowed_hosts: tuple[str, ...]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.names = bound_names(host)
        self.allowed = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        host = headers.get("host", "")
        if not host_allowed(host, self.names, self.allowed):
            await self._refuse(
                send,
                scope,
                400,
                "host",
                f"Host {host[:100]!r} is not a name this service answers to (a web page "
                "may be reaching it through DNS rebinding); if the name is yours, add it to "
                "allowed_hosts (sentinel serve --allow-host NAME)",
                "invalid_host",
            )
            return
        if scope["method"] in _WITH_BODY:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            accepted = JSON_TYPES + (NDJSON_TYPES if path in _NDJSON_ROUTES else ())
            if media not in accepted and not (
                media.startswith("application/") and media.endswith("+json")
            ):
                await self._refuse(
                    send,
                    scope,
                    415,
                    "content_type",
                    f"Content-Type {media[:100] or 'missing'!r} is not accepted here: send "
                    f"{' or '.join(accepted)} (a web page cannot send those cross-site "
                    "without a CORS preflight, which this service does not answer)",
                    "unsupported_media_type",
                )
                return
        await self.app(scope, receive, send)

    async def _refuse(
        self, send: Send, scope: Scope, status: int, reason: str, message: str, code: str
    ) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        client = scope.get("client")
        log.warning(
            "request refused: %s",
            reason,
            extra={
                "reason": reason,
                "client": client[0] if client else None,
                "path": scope["path"][:200],
            },
        )
        body: dict[str, Any]
        if scope["path"] in OPENAI_ROUTES:
            error = {"message": message, "type": "invalid_request_error", "param": None}
            body = {"error": {**error, "code": code}}
        else:
            body = {"detail": message}
        await send_json(send, status, body)
