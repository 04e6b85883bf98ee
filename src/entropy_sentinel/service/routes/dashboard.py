"""The dashboard: ``GET /`` (the page), ``GET /favicon.ico`` (its icon, an SVG),
``GET /dashboard/{file}`` (its scripts and styles, shipped in the package, uPlot
vendored: nothing is fetched from the internet) and ``GET /dashboard/config.json`` (the
service facts the page needs).

The page itself holds no data and needs no key; it reads the service's JSON API
(`/v1/estimates`, `/v1/slices`, `/v1/alerts`, `/v1/priorities`, `/v1/model`), and posts
the labels of its queue to `POST /v1/labels`, with the key the user types in (kept in
the browser tab's session storage), or none from loopback when no keys are configured.
See docs/dashboard.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from entropy_sentinel import __version__
from entropy_sentinel.service.auth import require
from entropy_sentinel.service.state import ServiceState, service

__all__ = ["ASSETS", "DASHBOARD_DIR", "router"]

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "dashboard"
"""Where the page's files live inside the package."""

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",
}
ASSETS: dict[str, Path] = {
    p.relative_to(DASHBOARD_DIR).as_posix(): p
    for p in sorted(DASHBOARD_DIR.rglob("*"))
    if p.is_file() and p.name != "index.html"
}
"""The files served under ``/dashboard/``: only these (no path is resolved from a URL)."""

# Everything from this origin, nothing from anywhere else (the page works offline).
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False, response_class=HTMLResponse)
async def index() -> Response:
    """The dashboard page."""
    return FileResponse(DASHBOARD_DIR / "index.html", media_type=_TYPES[".html"], headers=_HEADERS)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """The page's icon (an SVG; browsers ask for this path when a page names none)."""
    return FileResponse(
        DASHBOARD_DIR / "favicon.svg",
        media_type=_TYPES[".svg"],
        headers={**_HEADERS, "Cache-Control": "max-age=86400"},
    )


@router.get(
    "/dashboard/config.json",
    include_in_schema=False,
    dependencies=[Depends(require("read"))],
)
async def config(svc: ServiceState = Depends(service)) -> JSONResponse:
    """Facts the page needs: version, bucket width, interval level, reference length."""
    s = svc.settings
    body: dict[str, Any] = {
        "version": __version__,
        "bucket": s.bucket,
        "level": s.level,
        "reference": s.reference,
        "proxy": s.upstream is not None,
        "alert_rules": [r.describe() for r in s.alert_rules],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.get("/dashboard/{name:path}", include_in_schema=False)
async def asset(name: str) -> Response:
    """One of the page's files (`ASSETS`), or 404."""
    path = ASSETS.get(name)
    if path is None:
        return JSONResponse({"detail": f"no dashboard file {name[:100]!r}"}, status_code=404)
    return FileResponse(path, media_type=_TYPES.get(path.suffix, _TYPES[""]), headers=_HEADERS)
