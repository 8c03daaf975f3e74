"""Figure specs of per-head tables: metric heatmaps, roles, distances, MDS, comparison maps.

Each function takes frames of :mod:`inspector.analysis` (indexed by ``(layer, head)``) and
returns :class:`~inspector.render.figures.FigureSpec` data, drawn in the page by
``static/figures.js``; ``"L.H"`` appears only as a display label. Nothing here draws in Python
or runs a model.
"""

from __future__ import annotations

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
#: Cells of the roles grid that get a written label (bigger grids rely on colour and hover).
_ROLE_TEXT_CELLS = 400


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
    panels = []
    for column, lab in shown:
        grid = metrics[column].astype(float).unstack("head")
        panels.append(
            heatmap(
                grid.to_numpy(),
                rows=[str(i) for i in grid.index],
                cols=[str(h) for h in grid.columns],
                title=lab,
                xlabel="head",
                ylabel="layer",
                size=200,
            )
        )
    return FigureSpec(name, title, tuple(panels), caption=caption)


def _role_short(label: str) -> str:
    short = label.replace("previous", "prev").replace("punctuation", "punct")
    return short.replace("sink ", "sink\n", 1)


def roles_figure(
    roles: pd.DataFrame, *, name: str = "head-roles", title: str = "head roles"
) -> FigureSpec:
    """Layer x head grid coloured by each head's main role, labelled (sinks name their token)."""
    role = roles["role"].astype(str).unstack("head")
    labels = roles["label"].astype(str).unstack("head")
    n_l, n_h = role.shape
    codes = np.vectorize(_roles.ROLES.index)(role.to_numpy())
    text = {}
    if n_l * n_h <= _ROLE_TEXT_CELLS:
        text = {
            (i, j): _role_short(str(labels.iat[i, j]))
            for i in range(n_l)
            for j in range(n_h)
            if labels.iat[i, j] != "other"
        }
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
        size=40 * max(n_l, n_h),
    )
    return FigureSpec(name, title, (panel,))


def distance_figure(
    distances: pd.DataFrame, *, name: str = "head-distances", title: str = "head distances"
) -> FigureSpec:
    """The head-distance matrix with rows and columns in hierarchical-cluster order."""
    ordered = _distances.cluster_order(distances)
    names = [f"{layer}.{head}" for layer, head in ordered.index]
    panel = heatmap(
        ordered.to_numpy(),
        rows=names,
        cols=names,
        title="cluster order, labels L.H",
        cmap="magma_r",
        vmin=0.0,
        size=max(240, min(560, 7 * len(names))),
    )
    return FigureSpec(name, title, (panel,))


def embedding_figure(
    embedding: pd.DataFrame,
    roles: pd.DataFrame | None = None,
    *,
    name: str = "head-mds",
    title: str = "heads (MDS)",
) -> FigureSpec:
    """2-D MDS scatter of the heads labelled ``L.H``, coloured by role when ``roles`` is given."""
    colors = None
    legend: list[tuple[str, str]] = []
    if roles is not None:
        role = roles.loc[embedding.index, "role"].astype(str)
        colors = [ROLE_COLORS[r] for r in role]
        legend = [(r, ROLE_COLORS[r]) for r in _roles.ROLES if (role == r).any()]
    panel = scatter(
        embedding["x"].to_numpy(),
        embedding["y"].to_numpy(),
        labels=[f"{layer}.{head}" for layer, head in embedding.index],
        xlabel="MDS 1",
        ylabel="MDS 2",
        colors=colors,
        legend=legend,
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
    "ROLE_COLORS",
    "comparison_figure",
    "distance_figure",
    "embedding_figure",
    "heatmap_columns",
    "metric_heatmap_figure",
    "roles_figure",
]
