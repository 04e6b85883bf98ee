"""API keys: ``Authorization: Bearer KEY``, with ``ingest``, ``read`` and ``text`` scopes.

* With keys configured, a request needs a key whose scopes include the route's
  scope: no or an unknown key is 401, a key without the scope is 403.
* With no key configured, only loopback clients (127.0.0.0/8, ::1) are served; others
  get 403. The service says so in its log when it starts.

The ``text`` scope adds nothing on its own: a route that may show stored prompt and
answer text (``store_text``) shows it only when the caller's key also has ``text``
(`text_allowed`); without keys configured, loopback clients see it.

Keys are compared by their SHA-256 (constant time); the key itself is never logged,
stored or echoed. A refusal is logged with the client address, the route and the
reason (and the key's configured *name* for a scope refusal).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from entropy_sentinel.errors import SentinelError
from entropy_sentinel.service.metrics import Metrics
from entropy_sentinel.service.settings import ApiKey

__all__ = ["AuthError", "Authenticator", "bearer_scheme", "is_loopback", "require", "text_allowed"]

log = logging.getLogger("entropy_sentinel.service.auth")

bearer_scheme = HTTPBearer(auto_error=False, description="An API key with the route's scope.")


class AuthError(SentinelError):
    """A request was refused by authentication or authorisation.

    Attributes:
        status: 401 (no or unknown key) or 403 (wrong scope, or not loopback).
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped); False for anything else."""
    if not host:
        return False
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


class Authenticator:
    """Checks requests against the configured keys (see the module docstring)."""

    def __init__(self, keys: tuple[ApiKey, ...], metrics: Metrics) -> None:
        self.keys = keys
        self.metrics = metrics

    def check(self, request: Request, token: str | None, scope: str) -> str:
        """The name of the caller (key name, or ``loopback``); raises `AuthError`."""
        client = request.client.host if request.client else None
        route = request.url.path[:200]
        if not self.keys:
            if is_loopback(client):
                return "loopback"
            self._refuse("not_loopback", client, route)
            raise AuthError(
                "no API keys are configured, so only loopback clients are served; configure "
                "keys (SENTINEL_INGEST_KEYS / SENTINEL_READ_KEYS or [[keys]] in the config)",
                403,
            )
        if not token:
            self._refuse("missing", client, route)
            raise AuthError("missing API key: send Authorization: Bearer <key>", 401)
        key = self._find(token)
        if key is None:
            self._refuse("invalid", client, route)
            raise AuthError("invalid API key", 401)
        if scope not in key.scopes:
            self._refuse("scope", client, route, key.name)
            raise AuthError(f"API key {key.name!r} lacks the {scope!r} scope this route needs", 403)
        return key.name

    def allows(self, request: Request, token: str | None, scope: str) -> bool:
        """Whether the request's key (or, without keys, the loopback client) has ``scope``;
        never raises or logs (for optional content, not access)."""
        if not self.keys:
            return is_loopback(request.client.host if request.client else None)
        key = self._find(token) if token else None
        return key is not None and scope in key.scopes

    def _find(self, token: str) -> ApiKey | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        return next((k for k in self.keys if hmac.compare_digest(k.sha256, digest)), None)

    def _refuse(self, reason: str, client: str | None, route: str, key: str | None = None) -> None:
        self.metrics.auth_failures.labels(reason).inc()
        log.warning(
            "request refused: %s",
            reason,
            extra={"reason": reason, "client": client, "path": route, "key_name": key},
        )


def require(scope: str) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency that admits requests with ``scope`` (see the module docstring)."""

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    ) -> str:
        return _auth(request).check(request, _token(credentials), scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


async def text_allowed(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> bool:
    """FastAPI dependency: whether the caller may see stored text (the ``text`` scope)."""
    return _auth(request).allows(request, _token(credentials), "text")


def _auth(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.service.auth
    return auth


def _token(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    return credentials.credentials if credentials is not None else None
