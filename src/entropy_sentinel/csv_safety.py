"""CSV cells that a spreadsheet shows as text instead of running them (formula injection).

Ids, slice values and meta come from any client; a cell that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel, LibreOffice
and Google Sheets (``=HYPERLINK(...)``, DDE calls). As OWASP recommends
(https://owasp.org/www-community/attacks/CSV_Injection), every text cell (and column
name) that starts with one of those characters (or a NUL, a line feed, or their
full-width forms) gets a single quote in front, which spreadsheets read as "this is
text" and do not display; separators and quotes inside cells are quoted as CSV
always does. A cell that starts with a quote gets one more, so `restore` undoes
`neutralise` exactly (``sentinel labels import`` restores the ids it reads back).

Numbers stay numbers: only text cells are touched (``-0.07`` in a numeric column is a
number, not a formula).

>>> neutralise("=HYPERLINK(\\"http://x\\")"), neutralise("-1+1"), neutralise("gsm8k-12")
('\\'=HYPERLINK("http://x")', "'-1+1", 'gsm8k-12')
>>> restore(neutralise("=1+1")), restore(neutralise("'quoted")), restore("=1+1")
('=1+1', "'quoted", '=1+1')
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FORMULA_TRIGGERS", "neutralise", "restore", "safe_frame", "write_csv"]

FORMULA_TRIGGERS = frozenset("=+-@\t\r\n\0\uff1d\uff0b\uff0d\uff20")
"""First characters that make a spreadsheet read a cell as a formula."""


def neutralise(text: str) -> str:
    """``text`` as a cell no spreadsheet runs: a quote in front when it could start a formula."""
    if text and (text[0] in FORMULA_TRIGGERS or text[0] == "'"):
        return "'" + text
    return text


def restore(text: str) -> str:
    """The original of a `neutralise`-d cell (a cell that was never neutralised is kept)."""
    if len(text) > 1 and text[0] == "'" and (text[1] in FORMULA_TRIGGERS or text[1] == "'"):
        return text[1:]
    return text


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell and column name `neutralise`-d."""
    from pandas.api.types import is_object_dtype, is_string_dtype

    out = frame.copy()
    for column in out.columns:
        if is_object_dtype(out[column]) or is_string_dtype(out[column]):
            out[column] = out[column].map(_cell, na_action="ignore")
    out.columns = [neutralise(c) if isinstance(c, str) else c for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: Path | None = None) -> str | None:
    """Write ``frame`` (no index) as CSV to ``path``, or return the text, cells neutralised."""
    result: str | None = safe_frame(frame).to_csv(path, index=False)
    return result


def _cell(value: Any) -> Any:
    return neutralise(value) if isinstance(value, str) else value
