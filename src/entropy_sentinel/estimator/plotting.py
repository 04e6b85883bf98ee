"""Drawing into a caller's Axes or into a new figure saved to a file (no pyplot state).

Figures are built with `matplotlib.figure.Figure` directly, so plotting works
in any thread and with any (or no) GUI backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["axes_for", "finish"]


def axes_for(
    target: str | os.PathLike[str] | Axes | None, figsize: tuple[float, float]
) -> tuple[Axes, Figure | None]:
    """The Axes to draw into: ``target`` itself, or one on a new figure of ``figsize``."""
    from matplotlib.axes import Axes as AxesType
    from matplotlib.figure import Figure

    if isinstance(target, AxesType):
        return target, None
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot(), fig


def finish(fig: Figure | None, target: str | os.PathLike[str] | Axes | None) -> None:
    """Save a new figure to ``target`` when it is a path (creating its folder)."""
    if fig is None or target is None:
        return
    path = Path(target)  # type: ignore[arg-type]  # not an Axes: axes_for made the figure
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
