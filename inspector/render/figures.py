"""Figure specs: the data of every report figure, drawn in the browser by ``static/figures.js``.

Python only builds data here; nothing is drawn in Python (no matplotlib). A :class:`FigureSpec`
holds one or more *panels*, each a plain dict; a template embeds ``spec.data()`` with ``|tojson``
(see ``templates/sections/_figures.html.j2``) and ``figures.js`` -- the page's one renderer, built
on the d3 5.7.0 embedded in every page (its sequential / diverging scales, colour interpolators,
axes and ticks) -- draws real SVG elements from it, with a colour bar, one tooltip system and
"SVG" / "PNG" download buttons (both made in the page, without network). Its shared helpers live
in ``figure-kit.js``; the ``scatter`` and ``grid`` kinds in ``scatter.js`` and ``head-grid.js``
(:data:`FIGURE_SCRIPTS`, in that order).

Panel kinds (``panel["kind"]``):

``heatmap`` (:func:`heatmap`)
    a matrix given inline. Matrices with more than :data:`CANVAS_CELLS` cells are painted as one
    bitmap inside the SVG; more than :data:`~inspector.render.budget.INLINE_CELLS` cells are
    block-averaged in Python first (the title says so).
``scatter`` (:func:`scatter`)
    labelled points; labels are placed without overlap (the rest show on hover).
``stack`` (:func:`stack_heatmap`)
    one head's map read from the attention the page embeds (``PageData.stack(kind)``), so no
    values are repeated inline; axes are the stack's readable tokens (raw tokens on hover).
``grid`` (:func:`head_grid`)
    every head of an embedded stack as small multiples on a canvas (per-head or shared colour
    scale, stated); clicking a head opens its ``stack`` panel in a zoom box kept in view.

Colour maps (:data:`CMAPS`) are d3 interpolators: ``viridis``, ``blues``, ``magma_r``
(reversed magma) and the diverging ``rdbu`` (negative red, positive blue, centred on 0). Numbers
are rounded to 4 significant digits (:func:`rounded`) so pages stay small and the same input
always gives the same bytes; ``fmt`` is the d3-format specifier of the numbers a panel shows (its
colour bar and hover). A figure with ``shared_scale=True`` offers a toggle between each panel's
own colour range and one range for all. Sections that show figures add :data:`FIGURE_SCRIPTS`
to their ``scripts``.

Example:
    >>> spec = FigureSpec("demo", "a demo", (heatmap([[0.1, 0.9]], rows=["q"], cols=["a", "b"]),))
    >>> spec.data()["panels"][0]["kind"]
    'heatmap'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .budget import INLINE_CELLS

#: The static scripts that draw figures, in order: the shared kit (scales, axes, colour bars,
#: tooltip, downloads), the renderer (maps, figure assembly), then the scatter and head-grid
#: panel kinds; add them to a section's ``scripts``.
FIGURE_SCRIPTS: tuple[str, ...] = ("figure-kit.js", "figures.js", "scatter.js", "head-grid.js")
#: Colour maps figures.js knows (``rdbu`` is diverging, for signed data).
CMAPS = ("viridis", "blues", "magma_r", "rdbu")
#: Heatmaps with more cells than this are painted as a bitmap inside the SVG.
CANVAS_CELLS = 4096
#: Longest axis label, in characters (longer labels end with "…").
LABEL_CHARS = 14
#: Matrices up to this many cells show their values in the cells (``annotate=None``).
ANNOTATE_CELLS = 48
#: Normalisations of the head grid: each head scaled to its own maximum, or one 0-1 scale.
GRID_NORMS = ("head", "fixed")


def rounded(values: Any, digits: int = 4) -> Any:
    """``values`` (a number or nested sequence) as nested lists of floats rounded to ``digits``
    significant digits; NaN and infinities become ``None`` (JSON ``null``)."""
    arr = np.asarray(values, dtype=np.float64)
    fmt = f"%.{digits}g"
    flat = [float(fmt % v) + 0.0 if math.isfinite(v) else None for v in arr.ravel().tolist()]
    if arr.ndim == 0:
        return flat[0]
    out: Any = flat
    for size in reversed(arr.shape[1:]):
        out = [out[i : i + size] for i in range(0, len(out), size)]
    return out


def label(text: Any, limit: int = LABEL_CHARS) -> str:
    """An axis label: ``str(text)`` cut to ``limit`` characters."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _range(matrix: np.ndarray) -> tuple[float, float]:
    finite = matrix[np.isfinite(matrix)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def _block_mean(m: np.ndarray, block: int) -> np.ndarray:
    rows, cols = -(-m.shape[0] // block), -(-m.shape[1] // block)
    out = np.full((rows, cols), np.nan)
    for i in range(rows):
        for j in range(cols):
            cell = m[i * block : (i + 1) * block, j * block : (j + 1) * block]
            finite = cell[np.isfinite(cell)]
            if finite.size:
                out[i, j] = finite.mean()
    return out


def _block_labels(labels: Sequence[Any], block: int) -> list[str]:
    out = []
    for i in range(0, len(labels), block):
        last = min(len(labels), i + block) - 1
        out.append(f"{i}–{last} {label(labels[i], 8)}")
    return out


def heatmap(
    matrix: Any,
    *,
    rows: Sequence[Any],
    cols: Sequence[Any],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool | None = None,
    text: Mapping[tuple[int, int], str] | None = None,
    colors: Sequence[Sequence[str]] | None = None,
    legend: Sequence[tuple[str, str]] = (),
    hover: Sequence[Sequence[str]] | None = None,
    size: int = 320,
    fmt: str = "",
    raw_rows: Sequence[Any] | None = None,
    raw_cols: Sequence[Any] | None = None,
    max_cells: int = INLINE_CELLS,
) -> dict[str, Any]:
    """A heatmap panel: ``matrix[i][j]`` drawn at row ``rows[i]``, column ``cols[j]``.

    Args:
        matrix: 2-D numbers (rows x columns); NaN cells are drawn grey.
        rows, cols: axis labels (cut to :data:`LABEL_CHARS`; thinned out when dense).
        title, xlabel, ylabel: panel title and axis names.
        cmap: one of :data:`CMAPS`; ``"rdbu"`` is diverging, centred on 0 by default.
        vmin, vmax: colour scale limits (default: the data's range).
        annotate: write each value in its cell (default: only for at most
            :data:`ANNOTATE_CELLS` cells).
        text: ``{(i, j): label}`` written in those cells instead (e.g. roles or ranks).
        colors: a categorical colour per cell (``"#rrggbb"``) instead of the colour map; give
            ``legend`` as ``(label, colour)`` pairs.
        hover: text shown when hovering each cell (default: its value).
        size: about the longer side of the cell area, in pixels.
        fmt: d3-format specifier of the numbers shown (colour bar, hover), e.g. ``".3f"``;
            default: 3 significant digits.
        raw_rows, raw_cols: the raw strings behind ``rows`` / ``cols`` (e.g. raw tokens when the
            labels are readable tokens), shown on hover.
        max_cells: a matrix with more cells (default
            :data:`~inspector.render.budget.INLINE_CELLS`) is averaged in square blocks of
            tokens (rows and columns labelled by their positions and first token) and its title
            says so.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(rows), len(cols)):
        raise InputError(
            f"heatmap: matrix of shape {m.shape} does not match {len(rows)} rows x {len(cols)} "
            "columns"
        )
    if cmap not in CMAPS:
        raise InputError(f"heatmap: unknown colour map {cmap!r}; one of {list(CMAPS)}")
    if m.size > max_cells and colors is None and not text and hover is None:
        block = 2
        while -(-m.shape[0] // block) * -(-m.shape[1] // block) > max_cells:
            block += 1
        m = _block_mean(m, block)
        rows, cols = _block_labels(rows, block), _block_labels(cols, block)
        raw_rows = raw_cols = None
        title = f"{title} (mean of {block} x {block} token blocks)".strip()
    lo, hi = _range(m)
    if cmap == "rdbu" and vmin is None and vmax is None:
        bound = max(abs(lo), abs(hi), 1e-9)
        lo, hi = -bound, bound
    lo = lo if vmin is None else float(vmin)
    hi = hi if vmax is None else float(vmax)
    panel: dict[str, Any] = {
        "kind": "heatmap",
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "rows": [label(r) for r in rows],
        "cols": [label(c) for c in cols],
        "values": rounded(m),
        "cmap": cmap,
        "vmin": rounded(lo),
        "vmax": rounded(hi),
        "annotate": bool(m.size <= ANNOTATE_CELLS if annotate is None else annotate),
        "size": int(size),
        "canvas": bool(m.size > CANVAS_CELLS),
    }
    if fmt:
        panel["fmt"] = str(fmt)
    if raw_rows is not None:
        panel["raw_rows"] = [str(r) for r in raw_rows]
    if raw_cols is not None:
        panel["raw_cols"] = [str(c) for c in raw_cols]
    if text:
        panel["text"] = [[int(i), int(j), str(t)] for (i, j), t in sorted(text.items())]
    if colors is not None:
        panel["colors"] = [[str(c) for c in row] for row in colors]
    if hover is not None:
        panel["hover"] = [[str(t) for t in row] for row in hover]
    if legend:
        panel["legend"] = [[str(name), str(c)] for name, c in legend]
    return panel


def scatter(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    labels: Sequence[str],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    colors: Sequence[str] | None = None,
    legend: Sequence[tuple[str, str]] = (),
    ticks: bool = True,
) -> dict[str, Any]:
    """A labelled scatter panel (e.g. heads placed by MDS, labelled ``L3 H5``).

    Args:
        x, y: point coordinates.
        labels: one label per point, written next to it where it fits without overlapping
            (the panel says how many; hover shows every one).
        colors: one ``"#rrggbb"`` per point (default: one colour); ``legend`` explains them.
        ticks: number the axes (``False`` for axes without a unit, such as MDS: only grid
            lines, so no number sits next to a point's label).
    """
    if not len(x) == len(y) == len(labels):
        raise InputError("scatter: x, y and labels need the same length")
    return {
        "kind": "scatter",
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "x": rounded(x),
        "y": rounded(y),
        "labels": [label(t) for t in labels],
        "colors": [str(c) for c in colors] if colors is not None else None,
        "legend": [[str(name), str(c)] for name, c in legend],
        "ticks": bool(ticks),
    }


def stack_heatmap(
    stack: str,
    layer: int,
    head: int,
    *,
    title: str = "",
    cmap: str = "blues",
    norm: str = "fixed",
    size: int = 420,
) -> dict[str, Any]:
    """A panel drawing one head's map from the attention embedded in the page.

    Args:
        stack: the stack's kind in the page data (``"self"``, ``"encoder"``, ...); the section
            must call ``ctx.page.stack(kind)`` so the page embeds it.
        layer, head: *positions* along the stack's layer and head axes (not model indexes).
        title: panel title (default: "layer L, head H" with the model's indexes).
        cmap: a colour map of :data:`CMAPS`.
        norm: ``"fixed"`` (0 to 1) or ``"head"`` (0 to this head's largest weight).
        size: about the longer side of the map, in pixels.
    """
    if cmap not in CMAPS:
        raise InputError(f"stack_heatmap: unknown colour map {cmap!r}; one of {list(CMAPS)}")
    if norm not in GRID_NORMS:
        raise InputError(f"stack_heatmap: norm must be one of {list(GRID_NORMS)}, got {norm!r}")
    return {
        "kind": "stack",
        "stack": str(stack),
        "layer": int(layer),
        "head": int(head),
        "title": title,
        "xlabel": "key",
        "ylabel": "query",
        "cmap": cmap,
        "norm": norm,
        "size": int(size),
    }


def head_grid(stack: str, *, norm: str = "head", cmap: str = "blues") -> dict[str, Any]:
    """A panel drawing every head of an embedded stack as small multiples (one canvas).

    ``norm="head"`` scales each head to its own largest weight (structure shows at any length);
    ``"fixed"`` uses one 0-1 scale for all. The page offers a toggle and states the one in use.
    Clicking a head opens its :func:`stack_heatmap` in a zoom box.
    """
    if norm not in GRID_NORMS:
        raise InputError(f"head_grid: norm must be one of {list(GRID_NORMS)}, got {norm!r}")
    if cmap not in CMAPS:
        raise InputError(f"head_grid: unknown colour map {cmap!r}; one of {list(CMAPS)}")
    return {"kind": "grid", "stack": str(stack), "norm": norm, "cmap": cmap}


@dataclass(frozen=True)
class FigureSpec:
    """One downloadable figure: ``panels`` side by side (wrapping), drawn by ``figures.js``.

    Attributes:
        name: file stem of the downloads (``name.svg`` / ``name.png``), unique in a page.
        title: the figure's heading (drawn in the SVG and used as its accessible name).
        panels: dicts from :func:`heatmap` / :func:`scatter`.
        caption: optional text under the figure.
        shared_scale: offer a toggle between each panel's own colour range and one range for
            all panels (the union of their ranges).
    """

    name: str
    title: str
    panels: tuple[Mapping[str, Any], ...]
    caption: str = ""
    shared_scale: bool = False

    def __post_init__(self) -> None:
        if not self.panels:
            raise InputError(f"figure {self.name!r} has no panels")
        if not self.name or any(not (c.isalnum() or c in "-_.") for c in self.name):
            raise InputError(f"figure name {self.name!r}: use letters, digits, '-', '_', '.'")

    def data(self) -> dict[str, Any]:
        """What ``figures.js`` reads (embed with ``|tojson``)."""
        out: dict[str, Any] = {"name": self.name, "title": self.title, "panels": list(self.panels)}
        if self.shared_scale:
            out["shared_scale"] = True
        return out


__all__ = [
    "CMAPS",
    "FIGURE_SCRIPTS",
    "GRID_NORMS",
    "FigureSpec",
    "head_grid",
    "heatmap",
    "label",
    "rounded",
    "scatter",
    "stack_heatmap",
]
