"""Head-analysis figures (matplotlib, imported lazily) and report sections.

Figures take the frames of :mod:`inspector.metrics` / :mod:`inspector.compare` and return
:class:`matplotlib.figure.Figure` objects (no pyplot state); save them with
``fig.savefig("x.svg")`` or :func:`inspector.render.figures.save_figure` for PNG + SVG bytes.

Report sections: :func:`head_analysis_section` (metrics table, per-metric heatmaps, roles at a
glance, per-layer summary, head-distance matrix in cluster order, MDS scatter labelled ``L.H``) and
:func:`comparison_section` (ranked changes, both maps of the top heads side by side);
:func:`comparison_report` builds a whole comparison page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import metrics as _metrics
from ..capture import AttentionStack, Capture
from ..compare import Comparison
from .figures import StaticFigure, metric_heatmaps, save_figure
from .report import Report, ReportContext, Section, build_report, overview_section

#: Metrics shown as layer x head heatmaps: ``(column, label)``.
HEATMAP_METRICS: tuple[tuple[str, str], ...] = (
    ("entropy_norm", "normalised entropy"),
    ("mean_distance", "mean distance (tokens)"),
    ("to_prev", "to previous"),
    ("to_next", "to next"),
    ("to_self", "to self"),
    ("sink_share", "sink share"),
    ("to_punct", "to punctuation"),
)
ROLE_COLORS = {
    "previous": "#1f77b4",
    "next": "#17becf",
    "self": "#9467bd",
    "sink": "#d62728",
    "broad": "#2ca02c",
    "punctuation": "#ff7f0e",
    "other": "#d9d9d9",
}


def _grid(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[column].unstack("head")


def metric_heatmap_figure(
    metrics: pd.DataFrame, columns: Sequence[tuple[str, str]] = HEATMAP_METRICS, *, title: str = ""
) -> Any:
    """One layer x head heatmap per metric column (columns that are all NaN are left out)."""
    shown = [(c, label) for c, label in columns if c in metrics and metrics[c].notna().any()]
    flat = metrics.reset_index()
    return metric_heatmaps(
        flat.fillna({c: 0.0 for c, _ in shown}),
        shown,
        title=title or "head metrics",
        layers=list(pd.unique(flat["layer"])),
        heads=list(pd.unique(flat["head"])),
    )


def roles_figure(roles: pd.DataFrame, *, title: str = "head roles") -> Any:
    """Layer x head grid coloured by each head's main role, labelled (sinks name their token)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    codes = pd.Series(pd.Categorical(roles["role"], categories=_metrics.ROLES).codes, roles.index)
    grid = codes.unstack("head")
    labels = roles["label"].astype(str).unstack("head")
    n_l, n_h = grid.shape
    fig = Figure(
        figsize=(max(4.0, 0.55 * n_h + 2.5), max(2.5, 0.45 * n_l + 1.2)), layout="constrained"
    )
    ax = fig.subplots()
    cmap = ListedColormap([ROLE_COLORS[r] for r in _metrics.ROLES])
    ax.imshow(grid.to_numpy(), cmap=cmap, vmin=-0.5, vmax=len(_metrics.ROLES) - 0.5, aspect="auto")
    ax.set_xticks(range(n_h), [str(h) for h in grid.columns], fontsize=7)
    ax.set_yticks(range(n_l), [str(layer) for layer in grid.index], fontsize=7)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    if n_l * n_h <= 160:
        for i in range(n_l):
            for j in range(n_h):
                text = str(labels.iat[i, j])
                if text != "other":
                    short = text.replace("previous", "prev").replace("punctuation", "punct")
                    ax.text(
                        j, i, short.replace("sink ", "sink\n"), ha="center", va="center", fontsize=5
                    )
    used = [r for r in _metrics.ROLES if (roles["role"] == r).any()]
    ax.legend(
        handles=[Patch(color=ROLE_COLORS[r], label=r) for r in used],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
    )
    ax.set_title(title, fontsize=10)
    return fig


def distance_figure(distances: pd.DataFrame, *, title: str = "head distances") -> Any:
    """The head-distance matrix with rows and columns in hierarchical-cluster order."""
    from matplotlib.figure import Figure

    ordered = _metrics.cluster_order(distances)
    names = [f"{layer}.{head}" for layer, head in ordered.index]
    n = len(names)
    size = max(4.0, min(12.0, 0.09 * n + 3.0))
    fig = Figure(figsize=(size + 1.0, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(ordered.to_numpy(), cmap="magma_r", interpolation="nearest")
    step = max(1, n // 48)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=5)
    ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=5)
    fig.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=7)
    ax.set_title(title + " (cluster order, labels L.H)", fontsize=10)
    return fig


def embedding_figure(
    embedding: pd.DataFrame, roles: pd.DataFrame | None = None, *, title: str = "heads (MDS)"
) -> Any:
    """2-D MDS scatter of the heads labelled ``L.H``, coloured by layer (or by role)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 5.0), layout="constrained")
    ax = fig.subplots()
    layers = np.asarray(embedding.index.get_level_values("layer"))
    if roles is not None:
        colors = [ROLE_COLORS[str(r)] for r in roles.loc[embedding.index, "role"]]
        ax.scatter(
            embedding["x"], embedding["y"], c=colors, s=22, edgecolors="black", linewidths=0.3
        )
    else:
        points = ax.scatter(embedding["x"], embedding["y"], c=layers, cmap="viridis", s=22)
        fig.colorbar(points, ax=ax, shrink=0.8, label="layer")
    for (layer, head), (x, y) in zip(
        embedding.index, embedding[["x", "y"]].to_numpy(), strict=True
    ):
        ax.annotate(
            f"{layer}.{head}", (x, y), fontsize=5, xytext=(2, 2), textcoords="offset points"
        )
    ax.set_xlabel("MDS 1", fontsize=8)
    ax.set_ylabel("MDS 2", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def comparison_figure(comparison: Comparison, layer: int, head: int) -> Any:
    """The two aligned attention maps of one head side by side, with their difference."""
    from matplotlib.figure import Figure

    wa, wb = comparison.aligned_maps(layer, head)
    qa = [comparison.a.query.tokens[i] for i in comparison.query_pairs[:, 0]]
    qb = [comparison.b.query.tokens[i] for i in comparison.query_pairs[:, 1]]
    ka = [comparison.a.key.tokens[i] for i in comparison.key_pairs[:, 0]]
    kb = [comparison.b.key.tokens[i] for i in comparison.key_pairs[:, 1]]
    n = max(len(qa), len(ka))
    size = max(2.6, min(6.0, 0.22 * n + 1.6))
    fig = Figure(figsize=(3 * size + 1.0, size + 0.4), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        (wa, "a", qa, ka, "Blues", 0.0, 1.0),
        (wb, "b", qb, kb, "Blues", 0.0, 1.0),
        (wb - wa, "b - a", qb, kb, "RdBu_r", -1.0, 1.0),
    )
    for ax, (w, name, rows, cols, cmap, lo, hi) in zip(axes, panels, strict=True):
        image = ax.imshow(w, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
        ax.set_yticks(range(len(rows)), rows, fontsize=6)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.7).ax.tick_params(labelsize=6)
    js = float(comparison.frame["js"].to_numpy()[comparison.frame.index.get_loc((layer, head))])
    fig.suptitle(f"head {layer}.{head}: JS divergence {js:.3f}", fontsize=10)
    return fig


# --------------------------------------------------------------------------- report sections


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[list[Any]]:
    flat = frame.reset_index()
    rows = []
    for rec in flat[["layer", "head", *columns]].itertuples(index=False):
        rows.append([v.item() if isinstance(v, np.generic) else v for v in rec])
    return rows


def _stack_analysis(kind: str, stack: AttentionStack, model: str) -> dict[str, Any]:
    metrics = _metrics.head_metrics(stack)
    roles = _metrics.head_roles(metrics)
    table = metrics.join(roles[["label"]]).rename(columns={"label": "role"})
    columns = [*_metrics.list_metrics(), "sink_token", "sink_share", "role"]
    distances = _metrics.head_distance_frame(stack, "js")
    embedding = _metrics.head_embedding(distances)
    label = "self-attention" if kind == "self" else f"{kind} attention"
    figures: list[StaticFigure] = [
        save_figure(
            metric_heatmap_figure(metrics, title=f"{model} — {label}"),
            f"head-analysis-{kind}-heatmaps",
            f"metric heatmaps, {label}",
        ),
        save_figure(
            roles_figure(roles, title=f"head roles — {label}"),
            f"head-roles-{kind}",
            f"head roles, {label}",
        ),
        save_figure(
            distance_figure(distances, title=f"JS distance — {label}"),
            f"head-distances-{kind}",
            f"head distances, {label}",
        ),
        save_figure(
            embedding_figure(embedding, roles, title=f"heads by MDS — {label}"),
            f"head-mds-{kind}",
            f"MDS of heads, {label}",
        ),
    ]
    summary = _metrics.layer_summary(metrics, roles)
    return {
        "kind": kind,
        "label": label,
        "columns": ["layer", "head", *columns],
        "rows": _records(table, columns),
        "summary_columns": ["layer", *summary.columns],
        "summary_rows": [
            [int(i), *map(float, r)] for i, r in zip(summary.index, summary.to_numpy(), strict=True)
        ],
        "roles": [(r, int((roles["role"] == r).sum()), ROLE_COLORS[r]) for r in _metrics.ROLES],
        "figures": figures,
    }


def head_analysis_section(ctx: ReportContext) -> Section:
    """Section builder: full head metrics, roles, per-layer summary, distances and MDS."""
    model = str(ctx.capture.metadata.get("model_name", "model"))
    parts = [_stack_analysis(kind, stack, model) for kind, stack in ctx.capture.stacks.items()]
    return Section("head-analysis", "Head analysis", "sections/heads.html.j2", {"parts": parts})


def comparison_section(comparison: Comparison, *, k: int = 5) -> Any:
    """A section builder showing ``comparison``: ranked changes and the top ``k`` heads' maps."""

    def build(ctx: ReportContext) -> Section:
        ranked = comparison.ranked()
        columns = [c for c in ranked.columns]
        figures = [
            save_figure(
                comparison_figure(comparison, int(layer), int(head)),
                f"compare-{layer}-{head}",
                f"head {layer}.{head}",
            )
            for layer, head in ranked.index[:k]
        ]
        return Section(
            "comparison",
            "Comparison",
            "sections/heads_compare.html.j2",
            {
                "labels": comparison.labels,
                "method": comparison.method,
                "n_aligned": len(comparison.key_pairs),
                "n_keys": (len(comparison.a.key), len(comparison.b.key)),
                "columns": ["layer", "head", *columns],
                "rows": _records(ranked, columns),
                "figures": figures,
            },
        )

    return build


def comparison_report(
    capture: Capture, comparison: Comparison, *, k: int = 5, title: str | None = None
) -> Report:
    """A report page for ``comparison`` (``capture`` is side a's, for the overview)."""
    if not isinstance(capture, Capture):
        raise TypeError("comparison_report needs side a's Capture (Inspection.capture)")
    return build_report(
        capture,
        title=title or f"{comparison.labels[0]} vs {comparison.labels[1]}",
        sections=(overview_section, comparison_section(comparison, k=k)),
    )


__all__ = [
    "HEATMAP_METRICS",
    "comparison_figure",
    "comparison_report",
    "comparison_section",
    "distance_figure",
    "embedding_figure",
    "head_analysis_section",
    "metric_heatmap_figure",
    "roles_figure",
]
