"""Figure specs of per-head tables: metric heatmaps, roles, distances, MDS, comparison maps.

Each function takes frames of :mod:`inspector.analysis` (indexed by ``(layer, head)``) and
returns :class:`~inspector.render.figures.FigureSpec` data, drawn in the page by
``static/figures.js``; a head is named ``L3 H5`` (:func:`head_label`) only for display. They
read at any number of heads (72, 270, 576 and more): figures.js writes the tick labels that fit
without overlapping and the cell labels that fit at 8 px, and says which it left out (hover shows
every one); the distances of more than :data:`DISTANCE_HEADS` heads are averaged in blocks of
heads next to each other in cluster order, and the figure says so. Nothing here draws in Python
or runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..analysis import roles as _roles
from ..analysis.compare import Comparison
from ..errors import InputError
from .figures import FigureSpec, heatmap, scatter

ROLE_COLORS = {
    "previous": "#1f77b4",
    "next": "#17becf",
    "self": "#9467bd",
    "sink": "#d62728",
    "broad": "#2ca02c",
    "punctuation": "#ff7f0e",
    "other": "#d9d9d9",
}
#: Most rows of the head-distance matrix (beyond: blocks of heads adjacent in cluster order).
DISTANCE_HEADS = 300
#: Side of a roles-grid cell, in pixels: as big as fits in about 900 px, within these bounds.
ROLE_CELL = (12, 28)


def head_label(layer: int, head: int) -> str:
    """A head's display name, ``"L3 H5"`` (never a bare ``3.5`` that reads as a number)."""
    return f"L{layer} H{head}"


def head_heatmap(
    values: pd.Series,
    title: str,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    size: int = 320,
) -> dict[str, Any]:
    """A layer x head heatmap panel of a per-head series (indexed by ``(layer, head)``)."""
    grid = values.astype(float).unstack("head")
    return heatmap(
        grid.to_numpy(),
        rows=[str(i) for i in grid.index],
        cols=[str(h) for h in grid.columns],
        title=title,
        xlabel="head",
        ylabel="layer",
        vmin=vmin,
        vmax=vmax,
        size=size,
    )


def heatmap_columns(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """The metric columns of ``metrics`` to draw, with their registry labels: every registered
    metric (in registry order), then ``sink_share``, leaving out columns that are all NaN."""
    names = [*_metrics.list_metrics(), _metrics.SINK_SHARE.name]
    out = []
    for name in names:
        described = _metrics.describe_metric(name)
        if name in metrics.columns and metrics[name].notna().any() and described is not None:
            out.append((name, described.label))
    return out


def metric_heatmap_figure(
    metrics: pd.DataFrame,
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    name: str = "head-metrics",
    title: str = "head metrics",
    causal: bool = False,
) -> FigureSpec:
    """One layer x head heatmap per metric column of ``metrics`` (indexed by ``layer, head``).

    Columns with no value (``to_next`` of a causal model) or 0 for every head are not drawn;
    the figure's caption names them (with the reason when ``causal``)."""
    shown = heatmap_columns(metrics) if columns is None else list(columns)
    shown = [(c, lab) for c, lab in shown if c in metrics and metrics[c].notna().any()]
    zero = [(c, lab) for c, lab in shown if not (metrics[c].fillna(0.0) != 0).any()]
    shown = [item for item in shown if item not in zero]
    if not shown:
        raise InputError("metric_heatmap_figure: none of the metric columns has values")
    if columns is None:
        absent = [
            _metrics.describe_metric(n)
            for n in [*_metrics.list_metrics(), _metrics.SINK_SHARE.name]
            if n in metrics.columns and not metrics[n].notna().any()
        ]
        notes = []
        if absent:
            notes.append(
                "not drawn, no value for this input: "
                + ", ".join(d.label for d in absent if d is not None)
                + (" (a causal model never attends to later tokens)" if causal else "")
            )
        if zero:
            notes.append(
                "not drawn, 0 for every head: "
                + ", ".join(lab for _, lab in zero)
                + (" (the input has no such tokens)" if causal else "")
            )
        caption = "; ".join(notes)
    else:
        caption = ""
    panels = tuple(head_heatmap(metrics[column], lab, size=200) for column, lab in shown)
    return FigureSpec(name, title, panels, caption=caption)


def _role_short(label: str) -> str:
    short = label.replace("previous", "prev").replace("punctuation", "punct")
    return short.replace("sink ", "sink\n", 1)


def roles_figure(
    roles: pd.DataFrame, *, name: str = "head-roles", title: str = "head roles"
) -> FigureSpec:
    """Layer x head grid coloured by each head's main role, labelled where the label fits in its
    cell at a readable size (sinks name their token on a second line, dropped first); hover
    shows every label."""
    role = roles["role"].astype(str).unstack("head")
    labels = roles["label"].astype(str).unstack("head")
    n_l, n_h = role.shape
    codes = np.vectorize(_roles.ROLES.index)(role.to_numpy())
    text = {
        (i, j): _role_short(str(labels.iat[i, j]))
        for i in range(n_l)
        for j in range(n_h)
        if labels.iat[i, j] != "other"
    }
    cell = max(ROLE_CELL[0], min(ROLE_CELL[1], 900 // max(n_l, n_h, 1)))
    used = [r for r in _roles.ROLES if (roles["role"] == r).any()]
    panel = heatmap(
        codes,
        rows=[str(i) for i in role.index],
        cols=[str(h) for h in role.columns],
        xlabel="head",
        ylabel="layer",
        colors=[[ROLE_COLORS[r] for r in row] for row in role.to_numpy()],
        legend=[(r, ROLE_COLORS[r]) for r in used],
        text=text,
        hover=labels.to_numpy().tolist(),
        size=cell * max(n_l, n_h),
    )
    return FigureSpec(name, title, (panel,))


def distance_figure(
    distances: pd.DataFrame, *, name: str = "head-distances", title: str = "head distances"
) -> FigureSpec:
    """The head-distance matrix with rows and columns in hierarchical-cluster order. Beyond
    :data:`DISTANCE_HEADS` heads, heads next to each other in that order are averaged in blocks
    (labelled by their first head and how many more; hover lists them), and the title says so."""
    ordered = _distances.cluster_order(distances)
    names = [head_label(layer, head) for layer, head in ordered.index]
    n = len(names)
    matrix = ordered.to_numpy(dtype=np.float64)
    block = max(1, math.ceil(n / DISTANCE_HEADS))
    if block == 1:
        labels, members, what = names, None, "every head, in cluster order"
    else:
        starts = np.arange(0, n, block)
        sizes = np.diff(np.append(starts, n)).astype(np.float64)
        sums = np.add.reduceat(np.add.reduceat(matrix, starts, axis=0), starts, axis=1)
        matrix = sums / np.outer(sizes, sizes)
        labels = [f"{names[a]} +{int(k) - 1}" for a, k in zip(starts, sizes, strict=True)]
        members = [", ".join(names[a : a + int(k)]) for a, k in zip(starts, sizes, strict=True)]
        what = f"{n} heads in cluster order, averaged in blocks of {block} next to each other"
    panel = heatmap(
        matrix,
        rows=labels,
        cols=labels,
        raw_rows=members,
        raw_cols=members,
        title=what,
        cmap="magma_r",
        vmin=0.0,
        size=max(240, min(560, 7 * len(labels))),
        max_cells=len(labels) ** 2,
    )
    return FigureSpec(name, title, (panel,))


def embedding_figure(
    embedding: pd.DataFrame,
    roles: pd.DataFrame | None = None,
    *,
    name: str = "head-mds",
    title: str = "heads (MDS)",
) -> FigureSpec:
    """2-D MDS scatter of the heads labelled ``L3 H5``, coloured by role when ``roles`` is given
    (the axes have no unit, so they carry no numbers)."""
    colors = None
    legend: list[tuple[str, str]] = []
    if roles is not None:
        role = roles.loc[embedding.index, "role"].astype(str)
        colors = [ROLE_COLORS[r] for r in role]
        legend = [(r, ROLE_COLORS[r]) for r in _roles.ROLES if (role == r).any()]
    panel = scatter(
        embedding["x"].to_numpy(),
        embedding["y"].to_numpy(),
        labels=[head_label(layer, head) for layer, head in embedding.index],
        xlabel="MDS 1 (no unit: only distances between points count)",
        ylabel="MDS 2",
        colors=colors,
        legend=legend,
        ticks=False,
    )
    return FigureSpec(name, title, (panel,))


def comparison_figure(comparison: Comparison, layer: int, head: int) -> FigureSpec:
    """The two aligned attention maps of one head side by side, with their difference."""
    wa, wb = comparison.aligned_maps(layer, head)

    def shown(tokens: Any, positions: np.ndarray) -> list[str]:
        readable = tokens.readable or tokens.tokens
        return [readable[i] for i in positions]

    qa = shown(comparison.a.query, comparison.query_pairs[:, 0])
    qb = shown(comparison.b.query, comparison.query_pairs[:, 1])
    ka = shown(comparison.a.key, comparison.key_pairs[:, 0])
    kb = shown(comparison.b.key, comparison.key_pairs[:, 1])
    size = max(160, min(360, 14 * max(len(qa), len(ka))))
    diff = wb - wa
    finite = diff[np.isfinite(diff)]
    bound = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-3)
    panels = (
        heatmap(wa, rows=qa, cols=ka, title="a", cmap="blues", vmin=0, vmax=1, size=size,
                xlabel="key", ylabel="query", annotate=False, fmt=".3f"),
        heatmap(wb, rows=qb, cols=kb, title="b", cmap="blues", vmin=0, vmax=1, size=size,
                xlabel="key", ylabel="query", annotate=False, fmt=".3f"),
        heatmap(diff, rows=qb, cols=kb, title=f"b − a (scale ±{bound:.3f})", cmap="rdbu",
                vmin=-bound, vmax=bound, size=size, xlabel="key", ylabel="query",
                annotate=False, fmt="+.3f"),
    )  # fmt: skip
    js = float(comparison.frame["js"].to_numpy()[comparison.frame.index.get_loc((layer, head))])
    return FigureSpec(
        f"compare-{layer}-{head}", f"head {layer}.{head}: JS divergence {js:.3f}", panels
    )


__all__ = [
    "DISTANCE_HEADS",
    "ROLE_COLORS",
    "comparison_figure",
    "distance_figure",
    "embedding_figure",
    "head_label",
    "heatmap_columns",
    "metric_heatmap_figure",
    "roles_figure",
]
