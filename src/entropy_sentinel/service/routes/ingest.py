"""``POST /v1/traces``: ingest a trace record or a batch (`entropy_sentinel.service.ingest`)."""

from __future__ import annotations

import zlib
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from entropy_sentinel.service.api_models import IngestOut
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.ingest import BodyError
from entropy_sentinel.service.routes.common import errors
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.traces.shapes import Record, Step

__all__ = ["record_schemas", "router"]

router = APIRouter(tags=["ingest"])


class TraceRecord(Record):
    """A trace record (docs/formats.md), plus the service's optional ``timestamp``."""

    timestamp: str | float | None = None


class TraceBatch(msgspec.Struct):
    """A batch of trace records."""

    traces: list[TraceRecord | list[Step]]


def record_schemas() -> dict[str, Any]:
    """OpenAPI components of the accepted request shapes, generated from the library's."""
    _, components = msgspec.json.schema_components(
        [TraceRecord, TraceBatch, list[Step]], ref_template="#/components/schemas/{name}"
    )
    return components


_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/TraceRecord"},
                    {"$ref": "#/components/schemas/TraceBatch"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Step"}},
                ]
            }
        },
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One trace record per line."}
        },
    },
}


@router.post(
    "/v1/traces",
    response_model=IngestOut,
    summary="Ingest traces",
    openapi_extra={"requestBody": _BODY},
    responses={
        **errors(401, 403, 413, 415, 503),
        422: {
            "description": "Every record was rejected (reasons listed), or the batch envelope "
            "is malformed.",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/IngestOut"},
                            {"$ref": "#/components/schemas/ErrorOut"},
                        ]
                    }
                }
            },
        },
    },
)
async def post_traces(
    request: Request,
    svc: ServiceState = Depends(service),
    _caller: str = Depends(require("ingest")),
) -> JSONResponse:
    """Score and store one trace record, a batch ``{"traces": [...]}``, or NDJSON lines.

    Answers 200 when at least one record was accepted (stored or already stored), with
    each rejected record listed; 422 when none was. Acknowledged traces are committed
    to the database before the answer is sent. Records with an ``id`` already stored
    are ``duplicate`` (safe retries). Gzip bodies: ``Content-Encoding: gzip``.
    """
    body = await request.body()
    body = _decode(body, request.headers.get("content-encoding"), svc.settings.max_body_bytes)
    try:
        result = await svc.pipeline.ingest_body(body, request.headers.get("content-type"))
    except BodyError:
        svc.metrics.ingest_requests.labels("error").inc()
        raise
    outcome = "ok" if result.items or not result.rejections else "rejected"
    svc.metrics.ingest_requests.labels(outcome).inc()
    request.state.log_fields = {
        "records": result.n_records,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": len(result.rejections),
    }
    return JSONResponse(result.to_dict(), status_code=200 if outcome == "ok" else 422)


def _decode(body: bytes, encoding: str | None, limit: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body
    if enc != "gzip":
        raise BodyError(f"Content-Encoding {enc!r} is not supported; use gzip or none", 415)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(f"the gzip body cannot be decoded: {exc}", 422) from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(
            f"the decompressed body is larger than max_body_bytes={limit}; send smaller batches",
            413,
        )
    if not inflater.eof:
        raise BodyError("the gzip body is truncated", 422)
    return out
