"""Command-line interface: ``sentinel <command>``.

Importing this package registers every command on `app`; commands that need
optional extras import them inside the command, so ``sentinel --help`` works
with the core install alone.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from entropy_sentinel.cli import (
    collect,
    convert,
    estimate,
    evaluate,
    export,
    features,
    fit,
    labels,
    model,
    prioritize,
    report,
    serve,
)
from entropy_sentinel.cli.app import app, err_console
from entropy_sentinel.errors import SentinelError

__all__ = ["app", "main"]

# Every command, registered here and only here, in help order, in panels by journey.
_TRACES = "Traces and estimates"
_COLLECT = "Collect labelled traces"
_MONITOR = "Monitoring service"
_RESEARCH = "Research"
app.command(rich_help_panel=_TRACES)(features.features)
app.command(rich_help_panel=_TRACES)(fit.fit)
app.command(rich_help_panel=_TRACES)(estimate.estimate)
app.command(rich_help_panel=_TRACES)(convert.convert)
app.command(rich_help_panel=_COLLECT)(collect.collect)
app.command(rich_help_panel=_COLLECT)(collect.grade)
app.command(rich_help_panel=_COLLECT)(collect.pack)
app.add_typer(model.model_app, name="model", rich_help_panel=_COLLECT)
app.command(rich_help_panel=_MONITOR)(serve.serve)
app.command(rich_help_panel=_MONITOR)(report.report)
app.command(rich_help_panel=_MONITOR)(prioritize.prioritize)
app.command(rich_help_panel=_MONITOR)(export.export)
app.add_typer(labels.labels_app, name="labels", rich_help_panel=_MONITOR)
app.command(rich_help_panel=_RESEARCH)(evaluate.evaluate)
app.command("evaluate-report", rich_help_panel=_RESEARCH)(evaluate.evaluate_report)


_EXTRA_OF = {
    "fastapi": "service",
    "uvicorn": "service",
    "sqlalchemy": "service",
    "alembic": "service",
    "psycopg": "service",
    "prometheus_client": "service",
    "httpx": "collect",
    "math_verify": "collect",
    "llama_cpp": "model",
    "datasets": "hf",
    "opentelemetry": "otel",
    "pyspark": "spark",
}
"""The optional extra that installs each package a command may need."""


def main() -> None:
    """Entry point of the ``sentinel`` console script."""
    try:
        app()
    except SentinelError as exc:
        _error(str(exc))
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        _error(
            f"this command needs {exc.name!r}, which the core install leaves out: "
            f"pip install 'entropy-sentinel[{extra}]'"
        )


def _error(message: str) -> None:
    """Print ``message`` as one error line (no markup read into it, no wrapping, URLs
    redacted) and exit 2."""
    from entropy_sentinel.redact import redact_text

    text = escape(redact_text(message))
    err_console.print("[bold red]error:[/] " + text, highlight=False, soft_wrap=True)
    sys.exit(2)
