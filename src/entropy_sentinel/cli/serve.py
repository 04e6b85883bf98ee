"""``sentinel serve``: the monitoring service (ingest, estimates, alerts, priorities)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from entropy_sentinel.service.settings import Settings

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
        list[str] | None,
        typer.Option(
            help="An estimator artifact from `sentinel fit`, as NAME=PATH (it scores the "
            "traces of model NAME) or PATH (the model the artifact records, or every model "
            "if it records none); repeat it for several models. Required, here or in "
            "--config ([models.NAME] tables).",
            metavar="[NAME=]PATH",
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
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            help="A Host name requests may carry besides IP addresses and the bound names "
            "(repeatable; .example.com for a domain and its subdomains; added to the "
            "config's allowed_hosts).",
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
    otel_endpoint: Annotated[
        str | None,
        typer.Option(
            help="OTLP/HTTP traces endpoint to export one span per scored trace to, with its "
            "P(correct) (e.g. Phoenix: http://127.0.0.1:6006/v1/traces; needs the otel extra)."
        ),
    ] = None,
) -> None:
    """Serve the monitoring API until SIGTERM/SIGINT (then flush and exit).

    API keys come from SENTINEL_INGEST_KEYS / SENTINEL_READ_KEYS / SENTINEL_TEXT_KEYS
    (comma-separated) or the `keys` tables of --config; without keys only loopback
    clients are served. SIGHUP re-reads --config and serves its models at once.
    """
    from entropy_sentinel.service.server import run
    from entropy_sentinel.service.settings import ModelSpec, load_settings

    overrides: dict[str, Any] = {
        "db_url": db,
        "upstream": upstream,
        "host": host,
        "port": port,
        "workers": workers,
        "log_format": log_format,
        "log_level": log_level,
        "otel_endpoint": otel_endpoint,
    }
    specs = tuple(ModelSpec.parse(m) for m in model or ())

    def settings() -> Settings:
        return load_settings(config, models=specs, extra_hosts=tuple(allow_host or ()), **overrides)

    run(settings(), reloader=settings)
