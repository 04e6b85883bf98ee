"""HTTP routes, one module per concern; `ROUTERS` is what `create_app` mounts.

A later router (the OpenAI-compatible proxy, the dashboard) is one more module here
and one more entry in `ROUTERS`; it reaches the running service through the
`entropy_sentinel.service.state.service` dependency.
"""

from fastapi import APIRouter

from entropy_sentinel.service.routes import (
    alerts,
    dashboard,
    estimates,
    export,
    ingest,
    labels,
    models,
    ops,
    priorities,
    proxy,
    traces,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    ingest.router,
    estimates.router,
    models.router,
    traces.router,
    export.router,
    alerts.router,
    priorities.router,
    labels.router,
    ops.router,
    proxy.router,
    dashboard.router,
)
