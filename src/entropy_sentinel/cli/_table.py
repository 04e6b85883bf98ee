"""The CLI's tables: readable at 80 columns, never cut into ambiguity.

No vertical rules (`box.SIMPLE_HEAD`); numbers are right-aligned and never wrap; text
(slice names) folds onto more lines when it must, never ends in an ellipsis; a compound
value such as ``0.238 (0.000–0.566)`` wraps at its space, so each part stays whole.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["TEXT_WIDTH", "cli_table", "interval_text", "slice_cell"]

TEXT_WIDTH = 32
"""Text columns get at least the width of their longest value, up to this many columns."""


def cli_table(title: str, columns: Iterable[tuple[str, str]], rows: list[list[str]]) -> Table:
    """A table with ``columns`` of ``(header, kind)`` and ``rows`` of cell text.

    Kinds: ``num`` (right-aligned, never wraps), ``key`` (left, never wraps: times),
    ``text`` (left, folds long words, at least as wide as its longest value up to
    `TEXT_WIDTH`; a cell may hold console markup and several lines), ``pair`` (right,
    wraps at spaces: an estimate and its interval).
    """
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),  # with the blank rule: two spaces between columns
        pad_edge=False,
        show_edge=False,
    )
    for i, (header, kind) in enumerate(columns):
        longest = max((_longest_line(row[i]) for row in rows), default=0)
        if kind == "num":
            table.add_column(header, justify="right", no_wrap=True)
        elif kind == "key":
            table.add_column(header, no_wrap=True)
        elif kind == "text":
            table.add_column(header, overflow="fold", min_width=min(longest, TEXT_WIDTH))
        elif kind == "pair":
            width = max((len(p) for row in rows for p in row[i].split()), default=0)
            table.add_column(header, justify="right", overflow="fold", min_width=width)
        else:  # pragma: no cover - a programming error
            raise ValueError(f"column kind {kind!r}")
    for row in rows:
        table.add_row(*row)
    return table


def slice_cell(name: str, note: str) -> str:
    """A ``text`` cell: a slice's name, and under it, dimmed, a note (its shift word)
    when there is one; both taken literally (console markup escaped).

    >>> slice_cell("gsm8k", "seen in training").splitlines(), slice_cell("gsm8k", "")
    (['gsm8k', '[dim]seen in training[/]'], 'gsm8k')
    """
    return f"{escape(name)}\n[dim]{escape(note)}[/]" if note else escape(name)


def _longest_line(cell: str) -> int:
    """Width of a cell's longest line as shown (markup removed)."""
    return max((len(line) for line in Text.from_markup(cell).plain.splitlines()), default=0)


def interval_text(lower: float, upper: float) -> str:
    """``0.000–0.566``: an interval in three decimals, en dash, no spaces (one word).

    >>> interval_text(0.0, 0.5664)
    '0.000–0.566'
    """
    return f"{lower:.3f}–{upper:.3f}"
