"""Drawing budgets: how much each view of a page may draw, and what it does beyond that.

A page must draw completely in a browser in a few seconds at any input length the model takes.
Each view has a budget, and Python decides before writing the page what the view does past it:

- bertviz's head and model views draw one SVG line per (head, query, key): beyond
  :data:`VIEW_LINES` lines they show a *window* of tokens (both axes) with controls to move it,
  and a note saying so (:func:`view_window`).
- the attention a page embeds is decoded in the browser layer by layer; beyond
  :data:`EAGER_BYTES` decoded bytes a stack is decoded only when a view needs a layer, and the
  "Every head" grid draws from max-pooled thumbnails embedded by Python (:data:`THUMB_SIZE`).
- inline heatmaps (figures) beyond :data:`INLINE_CELLS` cells are block-averaged in Python
  (:func:`inspector.render.figures.heatmap`).
- the attention frame CSV made in the browser is offered up to :data:`CSV_ROWS` rows.

:func:`warn_budgets` tells the Python user (a :class:`PageBudgetWarning`) before such a page is
written. Pure arithmetic; nothing here draws or runs a model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InspectorWarning

#: SVG lines one bertviz view may draw (Chromium draws ~100k lines in about a second).
VIEW_LINES = 100_000
#: Smallest token window a view shows when it is windowed.
MIN_WINDOW = 8
#: A view whose window would cover this share of the tokens draws whole (at most ~1.6 x budget).
WHOLE_SHARE = 0.8
#: Decoded bytes of one stack the page decodes on load; bigger stacks decode layer by layer.
EAGER_BYTES = 64_000_000
#: Side of the max-pooled per-head thumbnails embedded for big stacks (the head grid).
THUMB_SIZE = 96
#: Cells of an inline heatmap; bigger matrices are block-averaged to fit.
INLINE_CELLS = 256 * 256
#: Rows of the attention frame the page makes as CSV in the browser.
CSV_ROWS = 5_000_000


class PageBudgetWarning(InspectorWarning):
    """A page shows part of a view (a token window, pooled thumbnails) to stay drawable."""


@dataclass(frozen=True)
class Window:
    """A token window of a bertviz view: ``size`` tokens per axis, out of ``n`` tokens."""

    size: int
    n: int
    lines: int
    full_lines: int

    def spec(self) -> dict[str, int]:
        return {"size": self.size, "n": self.n, "lines": self.lines, "full_lines": self.full_lines}


def view_window(rows: int, cols: int, panels: int, budget: int = VIEW_LINES) -> Window | None:
    """The window of a view drawing ``panels`` maps (heads, or layers x heads) of ``rows`` x
    ``cols`` tokens, or ``None`` when the whole view fits in ``budget`` lines."""
    full = panels * rows * cols
    if full <= budget:
        return None
    size = max(MIN_WINDOW, math.isqrt(max(1, budget // max(1, panels))))
    if size >= WHOLE_SHARE * max(rows, cols):
        return None  # a window this close to the whole input helps no one: draw it all
    return Window(size, max(rows, cols), panels * min(size, rows) * min(size, cols), full)


def eager(shape: Sequence[int], itemsize: int = 1) -> bool:
    """True when a stack of ``shape`` is decoded as soon as the page opens."""
    return math.prod(shape) * itemsize <= EAGER_BYTES


def warn_budgets(notes: Sequence[str]) -> None:
    """Emit one :class:`PageBudgetWarning` listing what a page shows in part."""
    if notes:
        warnings.warn(
            "this page is large, so some views show part of it to draw in seconds: "
            + "; ".join(notes)
            + " (include fewer layers or a shorter input to see everything)",
            PageBudgetWarning,
            stacklevel=3,
        )


__all__ = [
    "CSV_ROWS",
    "EAGER_BYTES",
    "INLINE_CELLS",
    "THUMB_SIZE",
    "VIEW_LINES",
    "PageBudgetWarning",
    "Window",
    "eager",
    "view_window",
    "warn_budgets",
]
