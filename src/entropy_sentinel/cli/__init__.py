"""Command-line interface: ``sentinel <command>``.

Importing this package registers every command on `app`; commands that need
optional extras import them inside the command, so ``sentinel --help`` works
with the core install alone.
"""

from __future__ import annotations

import sys

from entropy_sentinel.cli import collect as _collect  # noqa: F401  (also registers model)
from entropy_sentinel.cli import estimate, fit  # noqa: F401  (registers commands)
from entropy_sentinel.cli import evaluate as _evaluate  # noqa: F401  (registers commands)
from entropy_sentinel.cli import features as _features  # noqa: F401  (registers commands)
from entropy_sentinel.cli import labels as _labels  # noqa: F401  (registers commands)
from entropy_sentinel.cli import prioritize as _prioritize  # noqa: F401  (registers commands)
from entropy_sentinel.cli import report as _report  # noqa: F401  (registers commands)
from entropy_sentinel.cli import serve as _serve  # noqa: F401  (registers commands)
from entropy_sentinel.cli.app import app, err_console
from entropy_sentinel.errors import SentinelError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``sentinel`` console script."""
    try:
        app()
    except SentinelError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
