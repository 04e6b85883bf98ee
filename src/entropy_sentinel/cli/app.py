"""The `sentinel` Typer application and its consoles; each command lives in a module of its own
and is registered in `entropy_sentinel.cli` (one place, in help order)."""

from __future__ import annotations

import typer
from rich.console import Console

__all__ = ["app", "console", "err_console"]

app = typer.Typer(
    name="sentinel",
    help="Label-free, per-slice accuracy monitoring for LLMs from decoding entropy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Label-free, per-slice accuracy monitoring for LLMs from decoding entropy."""
