"""``sentinel serve``: the monitoring service (ingest, estimates, alerts, priorities)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["serve"]


def serve(
    db: Annotated[
        str | None,
        typer.Option(
            help="Database URL: sqlite:///sentinel.db (default) or "
            "postgresql+psycopg://user@host/db."
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Estimator artifact from `sentinel fit` (required, here or in --config).",
            dir_okay=False,
        ),
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="OpenAI-compatible upstream base URL for the proxy.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [8000].")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes on the port and the database [1]; alerts, rescoring and "
            "other background duties run in one of them."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="TOML settings file (keys, alert rules, limits; docs/service.md).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="json (default) or text.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
) -> None:
    """Serve the monitoring API until SIGTERM/SIGINT (then flush and exit).

    API keys come from SENTINEL_INGEST_KEYS / SENTINEL_READ_KEYS (comma-separated) or
    the `keys` tables of --config; without keys only loopback clients are served.
    """
    from entropy_sentinel.service.server import run
    from entropy_sentinel.service.settings import load_settings

    settings = load_settings(
        config,
        db_url=db,
        model_path=model,
        upstream=upstream,
        host=host,
        port=port,
        workers=workers,
        log_format=log_format,
        log_level=log_level,
    )
    run(settings)
