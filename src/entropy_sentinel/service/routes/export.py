"""``GET /v1/export/traces``: the stored traces as one Parquet file in the trace format.

Streamed as it is read: one row group per page of the database, then the footer, so
neither the service nor the client holds the whole export. The path is not under
``/v1/traces/`` so that it cannot shadow a trace whose id is ``export``.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from entropy_sentinel.errors import ConfigError
from entropy_sentinel.service.auth import require, text_allowed
from entropy_sentinel.service.export import ExportQuery, count_without_steps, export_parquet_chunks
from entropy_sentinel.service.routes.common import errors, opt_instant
from entropy_sentinel.service.state import ServiceState, service
from entropy_sentinel.timeutil import format_instant

__all__ = ["PARQUET_TYPE", "router"]

PARQUET_TYPE = "application/vnd.apache.parquet"

router = APIRouter(tags=["export"], dependencies=[Depends(require("read"))])


@router.get(
    "/v1/export/traces",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {PARQUET_TYPE: {}},
            "description": "A Parquet file in the trace format (docs/formats.md); the "
            "`X-Sentinel-Without-Steps` header counts the selected traces stored without "
            "their steps (not in the file); the footer key `entropy_sentinel.export` "
            "holds the final counts.",
        },
        **errors(400, 401, 403, 503),
    },
)
async def export_traces(
    format: str = Query("parquet", description="Only `parquet`."),
    since: str | None = Query(None, description="Start of event time (RFC 3339, epoch s, 24h)."),
    until: str | None = Query(None, description="End of event time, exclusive; default: now."),
    model: str | None = Query(None, max_length=256, description="Model key or alias."),
    text: bool = Query(False, description="Include the stored prompt and answer text."),
    svc: ServiceState = Depends(service),
    with_text: bool = Depends(text_allowed),
) -> Any:
    """The stored traces whose event time is in ``[since, until)``, of one model or all,
    with their per-step arrays (kept with `store_raw = true`, or while a trace waits
    for an estimator), current labels, slices and meta; their redacted prompt and
    answer with ``text=true`` (the key needs the `text` scope). Traces stored without
    their steps cannot be written in the trace format: they are counted, not exported."""
    if format.strip().lower() != "parquet":
        raise ConfigError(f"format={format[:40]!r}: the traces export as format=parquet")
    if text and not with_text:
        return JSONResponse({"detail": "text=true needs a key with the `text` scope"}, 403)
    end = opt_instant(until, "until")
    query = ExportQuery(
        since=opt_instant(since, "since"),
        until=time.time() if end is None else end,
        model=None if model is None else svc.models.key(model),
        with_text=text,
    )
    if query.since is not None and query.until is not None and query.since >= query.until:
        raise ConfigError(f"since ({since}) must be before until ({until})")
    skipped = await run_in_threadpool(count_without_steps, svc.storage.db, query)
    stamp = format_instant(query.until or time.time()).replace(":", "")
    return StreamingResponse(
        export_parquet_chunks(svc.storage.db, query),
        media_type=PARQUET_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="traces-{stamp}.parquet"',
            "X-Sentinel-Without-Steps": str(skipped),
        },
    )
