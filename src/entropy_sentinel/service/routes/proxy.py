"""``POST /v1/chat/completions`` and ``POST /v1/completions``: the recording proxy.

See `entropy_sentinel.service.proxy.relay` for what is forwarded and changed. The router's
lifespan builds the `Proxy` (its pooled upstream client and, when an upstream is
configured, its recorder process) once the service has started, and at shutdown closes
the upstream connections and records every queued answer before the service flushes and
closes its database.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from entropy_sentinel.redact import redact_url
from entropy_sentinel.service.proxy.metrics import ProxyMetrics
from entropy_sentinel.service.proxy.record import Recorder
from entropy_sentinel.service.proxy.relay import Proxy
from entropy_sentinel.service.state import ServiceState

__all__ = ["router"]

log = logging.getLogger("entropy_sentinel.service.proxy")


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    svc: ServiceState = app.state.service
    metrics = ProxyMetrics(svc.metrics.registry)
    recorder = Recorder(svc.settings, metrics, service_metrics=svc.metrics)
    if svc.settings.upstream:
        recorder.start()  # the recorder process: only a proxy needs it
        svc.reload_hooks.append(recorder.reload)  # it scores with the reloaded models too
    proxy = Proxy(svc.settings, recorder, metrics, svc.auth)
    app.state.proxy = proxy
    if proxy.upstream:
        upstream = redact_url(proxy.upstream)
        log.info(
            "proxy: /v1/chat/completions and /v1/completions forward to %s/...",
            upstream,
            extra={"upstream": upstream},
        )
    try:
        yield
    finally:
        await proxy.aclose()


router = APIRouter(tags=["proxy"], lifespan=_lifespan)

_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _doc(what: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": f"An OpenAI {what} request."}
                }
            },
        },
        "parameters": [
            {
                "name": "X-Sentinel-Slice",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The request's slice, e.g. `domain=chemistry,customer=acme`.",
            }
        ],
    }


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The upstream's answer (logprobs removed unless the client asked).",
        "content": {"application/json": {}, "text/event-stream": {}},
    },
    400: {"description": "A malformed slice.", "content": {"application/json": {"schema": _ERROR}}},
    401: {
        "description": "Missing or invalid X-Sentinel-Key.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    403: {
        "description": "The key lacks the ingest scope, or the client is not loopback.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    404: {
        "description": "No upstream is configured.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    502: {
        "description": "The upstream failed.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    504: {
        "description": "The upstream timed out.",
        "content": {"application/json": {"schema": _ERROR}},
    },
    "default": {"description": "The upstream's own answer, status and body passed back."},
}


@router.post(
    "/v1/chat/completions",
    response_class=Response,
    responses=_RESPONSES,
    openapi_extra=_doc("chat completion"),
    summary="Chat completions (proxied, recorded)",
)
async def chat_completions(request: Request) -> Response:
    """Forward to the upstream's chat completions, stream included, and record the trace."""
    proxy: Proxy = request.app.state.proxy
    return await proxy.forward(request, "chat")


@router.post(
    "/v1/completions",
    response_class=Response,
    responses=_RESPONSES,
    openapi_extra=_doc("legacy completion"),
    summary="Legacy completions (proxied, recorded)",
)
async def completions(request: Request) -> Response:
    """Forward to the upstream's legacy completions, stream included, and record the trace."""
    proxy: Proxy = request.app.state.proxy
    return await proxy.forward(request, "completions")
