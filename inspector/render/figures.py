"""Static figures (matplotlib, imported lazily) with deterministic PNG and SVG bytes.

Figures are built on :class:`matplotlib.figure.Figure` directly (no pyplot, no global figure
state). SVG output fixes ``svg.hashsalt`` and drops the ``Date`` metadata, PNG output drops the
``Software`` tag, so the same data always gives the same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: rcParams applied while saving, for byte-identical output.
DETERMINISTIC_RC: Any = {"svg.hashsalt": "attention-inspector", "svg.fonttype": "none"}


@dataclass(frozen=True)
class StaticFigure:
    """One figure as PNG and SVG bytes, ready to embed (``png_uri``) and download."""

    name: str
    title: str
    png: bytes
    svg: bytes

    @property
    def png_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def svg_uri(self) -> str:
        return "data:image/svg+xml;base64," + base64.b64encode(self.svg).decode("ascii")


def save_figure(fig: Any, name: str, title: str, *, dpi: int = 100) -> StaticFigure:
    """Render a matplotlib figure to deterministic PNG and SVG bytes."""
    import matplotlib

    with matplotlib.rc_context(DETERMINISTIC_RC):
        png, svg = io.BytesIO(), io.BytesIO()
        fig.savefig(png, format="png", dpi=dpi, metadata={"Software": None})
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return StaticFigure(name, title, png.getvalue(), svg.getvalue())


def metric_heatmaps(
    frame: pd.DataFrame,
    metrics: Sequence[tuple[str, str]],
    *,
    title: str,
    layers: Sequence[int],
    heads: Sequence[int],
) -> Any:
    """One layer x head heatmap per metric, side by side.

    Args:
        frame: one row per head with ``layer``, ``head`` and the metric columns.
        metrics: ``(column, label)`` pairs.
        title: the figure's title.
        layers, heads: the model indexes on the axes, in order.
    """
    from matplotlib.figure import Figure

    n = len(metrics)
    n_l, n_h = len(layers), len(heads)
    width = max(2.6, 0.32 * n_h + 1.4)
    height = max(2.2, 0.3 * n_l + 1.2)
    fig = Figure(figsize=(width * n, height))
    fig.subplots_adjust(
        left=0.04, right=0.97, bottom=0.55 / height, top=1 - 0.6 / height, wspace=0.35
    )
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(1, n, squeeze=False)[0]
    annotate = n_l * n_h <= 48
    for ax, (column, label) in zip(axes, metrics, strict=True):
        grid = frame.pivot(index="layer", columns="head", values=column).reindex(
            index=list(layers), columns=list(heads)
        )
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.set_xticks(range(n_h), [str(h) for h in heads], fontsize=7)
        ax.set_yticks(range(n_l), [str(layer) for layer in layers], fontsize=7)
        fig.colorbar(image, ax=ax, shrink=0.85).ax.tick_params(labelsize=7)
        if annotate:
            lo, hi = float(values.min()), float(values.max())
            mid = (lo + hi) / 2
            for (i, j), v in _cells(values):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="black" if v > mid else "white",
                )
    return fig


def _cells(values: Any) -> list[tuple[tuple[int, int], float]]:
    return [
        ((i, j), float(values[i, j]))
        for i in range(values.shape[0])
        for j in range(values.shape[1])
    ]
