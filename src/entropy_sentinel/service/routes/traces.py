"""``GET /v1/traces/{id}``: one stored trace, with its text for keys with the ``text`` scope."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.service.api_models import TraceOut
from entropy_sentinel.service.auth import require, text_allowed
from entropy_sentinel.service.routes.common import ErrorOut, errors
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.service.storage.tables import MAX_ID
from entropy_sentinel.timeutil import format_instant

__all__ = ["router"]

router = APIRouter(tags=["labels"], dependencies=[Depends(require("read"))])


@router.get(
    "/v1/traces/{trace_id:path}",
    response_model=TraceOut,
    responses={**errors(401, 403, 503), 404: {"model": ErrorOut, "description": "Unknown id."}},
)
async def get_trace(
    trace_id: str,
    svc: ServiceState = Depends(service),
    with_text: bool = Depends(text_allowed),
) -> Any:
    """A stored trace: its model, slice, time, P(correct) (null while it waits for an
    estimator of its model), label and meta; its prompt and answer for keys with the
    `text` scope when the service stores text."""
    if len(trace_id) > MAX_ID:
        return JSONResponse({"detail": f"no trace has an id longer than {MAX_ID}"}, 404)
    row = await run_in_threadpool(svc.storage.trace, trace_id)
    if row is None:
        return JSONResponse({"detail": f"no trace with id {trace_id[:100]!r}"}, 404)
    out: dict[str, Any] = {
        **{k: v for k, v in row.items() if k not in ("ts", "received_at")},
        "timestamp": format_instant(row["ts"]),
        "received_at": format_instant(row["received_at"]),
        "prompt": None,
        "answer": None,
        "text": "hidden" if not with_text else "none",
    }
    if with_text:
        texts = await run_in_threadpool(svc.storage.texts, [trace_id])
        if trace_id in texts:
            out["prompt"], out["answer"] = texts[trace_id]
            out["text"] = "stored"
    return out
