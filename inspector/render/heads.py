"""Head-analysis figures and report sections.

Figures take the frames of :mod:`inspector.metrics` / :mod:`inspector.compare` and return
:class:`inspector.render.figures.FigureSpec` data, drawn in the page by ``static/figures.js``
(SVG with PNG / SVG downloads); nothing here draws in Python or runs a model.

Report sections: :func:`head_analysis_section` ("Head metrics & roles", in the default report:
roles at a glance, a layer x head heatmap per metric, head-distance matrix in cluster order, MDS
scatter labelled ``L.H``, per-layer summary and the sortable metrics table) and
:func:`comparison_section` (ranked changes, both maps of the top heads side by side);
:func:`comparison_report` builds a whole comparison page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import metrics as _metrics
from ..capture import AttentionStack, Capture
from ..compare import Comparison
from ..errors import InputError
from .figures import FIGURE_SCRIPTS, FigureSpec, heatmap, scatter

if TYPE_CHECKING:
    from .report import Report, ReportContext, Section

#: Metrics shown as layer x head heatmaps, in order: ``(column, label)``.
HEATMAP_METRICS: tuple[tuple[str, str], ...] = (
    ("entropy", "entropy (nats)"),
    ("entropy_norm", "normalised entropy"),
    ("max_weight", "max weight"),
    ("mean_distance", "mean distance (tokens)"),
    ("to_prev", "to previous"),
    ("to_next", "to next"),
    ("to_self", "to self"),
    ("to_first", "to first token"),
    ("to_special", "to special tokens"),
    ("to_sep", "to separators"),
    ("to_punct", "to punctuation"),
    ("sink_share", "sink share"),
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
#: Cells of the roles grid that get a written label (bigger grids rely on colour and hover).
_ROLE_TEXT_CELLS = 400


def heatmap_columns(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    """The metric columns of ``metrics`` to draw: :data:`HEATMAP_METRICS` first, then any other
    registered metric, leaving out columns that are all NaN."""
    known = dict(HEATMAP_METRICS)
    names = [c for c, _ in HEATMAP_METRICS] + [m for m in _metrics.list_metrics() if m not in known]
    return [
        (c, known.get(c, c)) for c in names if c in metrics.columns and metrics[c].notna().any()
    ]


def metric_heatmap_figure(
    metrics: pd.DataFrame,
    columns: Sequence[tuple[str, str]] | None = None,
    *,
    name: str = "head-metrics",
    title: str = "head metrics",
) -> FigureSpec:
    """One layer x head heatmap per metric column of ``metrics`` (indexed by ``layer, head``)."""
    shown = heatmap_columns(metrics) if columns is None else list(columns)
    shown = [(c, lab) for c, lab in shown if c in metrics and metrics[c].notna().any()]
    if not shown:
        raise InputError("metric_heatmap_figure: none of the metric columns has values")
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
    return FigureSpec(name, title, tuple(panels))


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
    codes = np.vectorize(_metrics.ROLES.index)(role.to_numpy())
    text = {}
    if n_l * n_h <= _ROLE_TEXT_CELLS:
        text = {
            (i, j): _role_short(str(labels.iat[i, j]))
            for i in range(n_l)
            for j in range(n_h)
            if labels.iat[i, j] != "other"
        }
    used = [r for r in _metrics.ROLES if (roles["role"] == r).any()]
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
    ordered = _metrics.cluster_order(distances)
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
        legend = [(r, ROLE_COLORS[r]) for r in _metrics.ROLES if (role == r).any()]
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
    qa = [comparison.a.query.tokens[i] for i in comparison.query_pairs[:, 0]]
    qb = [comparison.b.query.tokens[i] for i in comparison.query_pairs[:, 1]]
    ka = [comparison.a.key.tokens[i] for i in comparison.key_pairs[:, 0]]
    kb = [comparison.b.key.tokens[i] for i in comparison.key_pairs[:, 1]]
    size = max(160, min(360, 14 * max(len(qa), len(ka))))
    panels = (
        heatmap(wa, rows=qa, cols=ka, title="a", cmap="blues", vmin=0, vmax=1, size=size,
                xlabel="key", ylabel="query", annotate=False),
        heatmap(wb, rows=qb, cols=kb, title="b", cmap="blues", vmin=0, vmax=1, size=size,
                xlabel="key", ylabel="query", annotate=False),
        heatmap(wb - wa, rows=qb, cols=kb, title="b − a", cmap="rdbu", vmin=-1, vmax=1,
                size=size, xlabel="key", ylabel="query", annotate=False),
    )  # fmt: skip
    js = float(comparison.frame["js"].to_numpy()[comparison.frame.index.get_loc((layer, head))])
    return FigureSpec(
        f"compare-{layer}-{head}", f"head {layer}.{head}: JS divergence {js:.3f}", panels
    )


# --------------------------------------------------------------------------- report sections


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[list[Any]]:
    flat = frame.reset_index()
    rows = []
    for rec in flat[["layer", "head", *columns]].itertuples(index=False):
        rows.append([v.item() if isinstance(v, np.generic) else v for v in rec])
    return rows


def _stack_analysis(
    kind: str, stack: AttentionStack, model: str, distances: Future[pd.DataFrame] | None
) -> dict[str, Any]:
    metrics = _metrics.head_metrics(stack)
    roles = _metrics.head_roles(metrics)
    table = metrics.join(roles[["label"]]).rename(columns={"label": "role"})
    columns = [*_metrics.list_metrics(), "sink_token", "sink_share", "role"]
    label = "self-attention" if kind == "self" else f"{kind} attention"
    figures = [
        roles_figure(roles, name=f"head-roles-{kind}", title=f"head roles — {label}"),
        metric_heatmap_figure(
            metrics, name=f"head-metrics-{kind}", title=f"{model} — {label}, per head"
        ),
    ]
    summary = _metrics.layer_summary(metrics, roles)
    rows = [[kind, *row] for row in _records(table, columns)]
    if distances is not None:
        dist = distances.result()
        figures.append(
            distance_figure(
                dist, name=f"head-distances-{kind}", title=f"JS distance between heads — {label}"
            )
        )
        if len(dist) > 2:
            figures.append(
                embedding_figure(
                    _metrics.head_embedding(dist),
                    roles,
                    name=f"head-mds-{kind}",
                    title=f"heads placed by MDS of their distances — {label}",
                )
            )
    return {
        "kind": kind,
        "label": label,
        "columns": columns,
        "rows": rows,
        "summary_columns": ["layer", *summary.columns],
        "summary_rows": [
            [int(i), *map(float, r)] for i, r in zip(summary.index, summary.to_numpy(), strict=True)
        ],
        "roles": [(r, int((roles["role"] == r).sum()), ROLE_COLORS[r]) for r in _metrics.ROLES],
        "figures": figures,
    }


def head_analysis_section(ctx: ReportContext) -> Section:
    """Section builder "Head metrics & roles": roles, a heatmap per metric, distances, MDS,
    per-layer summary and one sortable table of every head's metrics (CSV download).

    The head distances (numpy, the costly part) are computed on a worker thread while the
    metrics, roles and tables are built; the result does not depend on the timing.
    """
    from .report import Section

    model = str(ctx.capture.metadata.get("model_name", "model"))
    stacks = ctx.capture.stacks
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = {
            kind: pool.submit(_metrics.head_distance_frame, stack, "js")
            for kind, stack in stacks.items()
            if len(stack.layers) * len(stack.heads) > 1
        }
        parts = [
            _stack_analysis(kind, stack, model, pending.get(kind)) for kind, stack in stacks.items()
        ]
    return Section(
        "head-metrics",
        "Head metrics & roles",
        "sections/heads.html.j2",
        {
            "parts": parts,
            "columns": ["kind", "layer", "head", *parts[0]["columns"]],
            "rows": [row for part in parts for row in part["rows"]],
        },
        scripts=FIGURE_SCRIPTS,
    )


def comparison_section(comparison: Comparison, *, k: int = 5) -> Callable[[Any], Section]:
    """A section builder showing ``comparison``: ranked changes and the top ``k`` heads' maps."""

    def build(ctx: ReportContext) -> Section:
        from .report import Section

        ranked = comparison.ranked()
        columns = list(ranked.columns)
        figures = [
            comparison_figure(comparison, int(layer), int(head)) for layer, head in ranked.index[:k]
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
            scripts=FIGURE_SCRIPTS,
        )

    return build


def comparison_report(
    capture: Capture, comparison: Comparison, *, k: int = 5, title: str | None = None
) -> Report:
    """A report page for ``comparison`` (``capture`` is side a's, for the overview)."""
    from .report import build_report, overview_section

    if not isinstance(capture, Capture):
        raise TypeError("comparison_report needs side a's Capture (Inspection.capture)")
    return build_report(
        capture,
        title=title or f"{comparison.labels[0]} vs {comparison.labels[1]}",
        sections=(overview_section, comparison_section(comparison, k=k)),
    )


__all__ = [
    "HEATMAP_METRICS",
    "ROLE_COLORS",
    "comparison_figure",
    "comparison_report",
    "comparison_section",
    "distance_figure",
    "embedding_figure",
    "head_analysis_section",
    "heatmap_columns",
    "metric_heatmap_figure",
    "roles_figure",
]
