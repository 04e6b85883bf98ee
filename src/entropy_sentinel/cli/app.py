"""The `sentinel` Typer application and its consoles; each command lives in a module of its own
and is registered in `entropy_sentinel.cli` (one place, in help order)."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

__all__ = ["PLAIN_WIDTH", "app", "console", "err_console", "live_progress", "make_console"]

PLAIN_WIDTH = 200
"""Width of tables when the output is not a terminal and ``COLUMNS`` is not set."""

app = typer.Typer(
    name="sentinel",
    help="Label-free, per-slice accuracy monitoring for LLMs from decoding entropy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def make_console(*, stderr: bool = False) -> Console:
    """A Rich console for standard output (or error).

    On a terminal, Rich's own: colour, the terminal's width, live progress bars. When
    the stream is not a terminal (a pipe, ``| tee``, a file, CI logs): plain lines, no
    colour or cursor codes, no line broken inside a word (text is not wrapped at all),
    and tables as wide as they need up to `PLAIN_WIDTH` columns (or ``COLUMNS``); the
    commands show no live progress there (see `live_progress`).
    """
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    width = None if os.environ.get("COLUMNS", "").isdigit() else PLAIN_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


def live_progress(on: Console) -> bool:
    """Whether a live (redrawn) progress bar can be shown on console ``on``."""
    return on.is_terminal


console = make_console()
err_console = make_console(stderr=True)


@app.callback()
def _root() -> None:
    """Label-free, per-slice accuracy monitoring for LLMs from decoding entropy."""
