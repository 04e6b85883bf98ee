"""ASGI middleware: request ids, access log and latency metrics, and the body-size limit.

`RequestMiddleware` wraps every HTTP request:

* takes ``X-Request-ID`` from the client (up to 64 safe characters) or makes one,
  and returns it on the response (unless the response has its own: a proxied answer
  keeps the upstream's);
* refuses bodies larger than ``max_body_bytes``: at once from ``Content-Length``,
  or as soon as a streamed (chunked) body passes the limit; both answer 413;
* logs one line per request (method, path, status, duration, client, request id)
  and observes the latency histogram under the *route template* (``/v1/traces``),
  never the raw path, so hostile URLs cannot blow up metric cardinality.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from entropy_sentinel.service.metrics import Metrics

__all__ = ["RequestMiddleware", "send_json"]

log = logging.getLogger("entropy_sentinel.service.http")

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = headers.get("x-request-id", "")
        if not _SAFE_ID.match(rid):
            rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                headers = list(message.get("headers", []))
                # a proxied answer keeps the upstream's own request id
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError:
            length = 0
        try:
            if length > self.max_body:
                await self._too_large(send_with_id, length)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception:
            if not response_started:
                log.exception("unhandled error", extra={"request_id": rid})
                await send_json(
                    send_with_id, 500, {"detail": "internal server error", "request_id": rid}
                )
            else:  # pragma: no cover - the response is already on its way
                raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.http_latency.labels(scope["method"], template, str(status)).observe(
                elapsed
            )
            client = scope.get("client")
            log.info(
                "%s %s %d",
                scope["method"],
                scope["path"][:200],
                status,
                extra={
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"][:200],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": client[0] if client else None,
                    **scope["state"].get("log_fields", {}),
                },
            )

    def _limited(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(
                        413,
                        f"request body is larger than max_body_bytes={limit}; send smaller "
                        "batches (or gzip them: Content-Encoding: gzip)",
                    )
            return message

        return limited

    async def _too_large(self, send: Send, length: int) -> None:
        await send_json(
            send,
            413,
            {
                "detail": f"request body of {length} bytes is larger than max_body_bytes="
                f"{self.max_body}; send smaller batches (or gzip them: Content-Encoding: gzip)"
            },
        )


async def send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    """Answer with ``body`` as JSON and close the connection (the request body may be unread)."""
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
