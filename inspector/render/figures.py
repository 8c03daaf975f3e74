"""Figure specs: the data of every report figure, drawn in the browser by ``static/figures.js``.

Python only builds data here; nothing is drawn in Python (no matplotlib). A :class:`FigureSpec`
holds one or more *panels*, each a plain dict made by :func:`heatmap` or :func:`scatter`; a
template embeds ``spec.data()`` with ``|tojson`` (see ``templates/sections/_figures.html.j2``)
and ``figures.js`` draws real SVG elements from it, with a colour scale, hover values and
"SVG" / "PNG" download buttons (both made in the page, without network). Matrices with more than
:data:`CANVAS_CELLS` cells are painted as one bitmap inside the SVG instead of one ``<rect>`` per
cell.

Numbers are rounded to 4 significant digits (:func:`rounded`) so pages stay small and the same
input always gives the same bytes. Sections that show figures add :data:`FIGURE_SCRIPTS` to
their ``scripts``.

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

#: The static script that draws figures; add it to a section's ``scripts``.
FIGURE_SCRIPTS: tuple[str, ...] = ("figures.js",)
#: Colour maps figures.js knows (``rdbu`` is diverging, for signed data).
CMAPS = ("viridis", "blues", "magma_r", "rdbu")
#: Heatmaps with more cells than this are painted as a bitmap inside the SVG.
CANVAS_CELLS = 4096
#: Longest axis label, in characters (longer labels end with "…").
LABEL_CHARS = 14
#: Matrices up to this many cells show their values in the cells (``annotate=None``).
ANNOTATE_CELLS = 48


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
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape != (len(rows), len(cols)):
        raise InputError(
            f"heatmap: matrix of shape {m.shape} does not match {len(rows)} rows x {len(cols)} "
            "columns"
        )
    if cmap not in CMAPS:
        raise InputError(f"heatmap: unknown colour map {cmap!r}; one of {list(CMAPS)}")
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
) -> dict[str, Any]:
    """A labelled scatter panel (e.g. heads placed by MDS, labelled ``L.H``).

    Args:
        x, y: point coordinates.
        labels: one label per point, written next to it.
        colors: one ``"#rrggbb"`` per point (default: one colour); ``legend`` explains them.
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
    }


@dataclass(frozen=True)
class FigureSpec:
    """One downloadable figure: ``panels`` side by side (wrapping), drawn by ``figures.js``.

    Attributes:
        name: file stem of the downloads (``name.svg`` / ``name.png``), unique in a page.
        title: the figure's heading (drawn in the SVG and used as its accessible name).
        panels: dicts from :func:`heatmap` / :func:`scatter`.
        caption: optional text under the figure.
    """

    name: str
    title: str
    panels: tuple[Mapping[str, Any], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.panels:
            raise InputError(f"figure {self.name!r} has no panels")
        if not self.name or any(not (c.isalnum() or c in "-_.") for c in self.name):
            raise InputError(f"figure name {self.name!r}: use letters, digits, '-', '_', '.'")

    def data(self) -> dict[str, Any]:
        """What ``figures.js`` reads (embed with ``|tojson``)."""
        return {"name": self.name, "title": self.title, "panels": list(self.panels)}


__all__ = [
    "CMAPS",
    "FIGURE_SCRIPTS",
    "FigureSpec",
    "heatmap",
    "label",
    "rounded",
    "scatter",
]
