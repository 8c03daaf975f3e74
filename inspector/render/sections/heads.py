"""The "Head metrics & roles" section and the comparison section.

"Head metrics & roles" (in the default report): roles at a glance, a layer x head heatmap per
metric, head distances in cluster order, an MDS scatter, a per-layer summary and one sortable
table of every head's metrics. The comparison section: ranked changes and the top heads' maps
side by side. Figures come from :mod:`inspector.render.charts`; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from ...analysis import distances as _distances
from ...analysis import metrics as _metrics
from ...analysis import roles as _roles
from ...analysis.compare import Comparison
from ...capture.types import AttentionStack
from ..charts import (
    ROLE_COLORS,
    comparison_figure,
    distance_figure,
    embedding_figure,
    metric_heatmap_figure,
    roles_figure,
)
from ..figures import FIGURE_SCRIPTS
from ..names import model_label, readable_sinks
from ..section import ReportContext, Section


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[list[Any]]:
    flat = frame.reset_index()
    rows = []
    for rec in flat[["layer", "head", *columns]].itertuples(index=False):
        rows.append([v.item() if isinstance(v, np.generic) else v for v in rec])
    return rows


def _stack_analysis(
    kind: str, stack: AttentionStack, model: str, distances: Future[pd.DataFrame] | None
) -> dict[str, Any]:
    metrics = readable_sinks(_metrics.head_metrics(stack), stack.key)
    roles = _roles.head_roles(metrics)
    table = metrics.join(roles[["label"]]).rename(columns={"label": "role"})
    # the role next to the head's name: in view whatever the width of the table
    columns = ["role", *_metrics.list_metrics(), "sink_token", "sink_share"]
    label = "self-attention" if kind == "self" else f"{kind} attention"
    figures = [
        roles_figure(roles, name=f"head-roles-{kind}", title=f"head roles — {label}"),
        metric_heatmap_figure(
            metrics,
            name=f"head-metrics-{kind}",
            title=f"{model} — {label}, per head",
            causal=bool(stack.causal),
        ),
    ]
    summary = _roles.layer_summary(metrics, roles)
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
                    _distances.head_embedding(dist),
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
        "roles": [(r, int((roles["role"] == r).sum()), ROLE_COLORS[r]) for r in _roles.ROLES],
        "figures": figures,
    }


def head_analysis_section(ctx: ReportContext) -> Section:
    """Section builder "Head metrics & roles": roles, a heatmap per metric, distances, MDS,
    per-layer summary and one sortable table of every head's metrics (CSV download).

    The head distances (numpy, the costly part) are computed on a worker thread while the
    metrics, roles and tables are built; the result does not depend on the timing.
    """
    model = model_label(ctx.capture.metadata)
    stacks = ctx.capture.stacks
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = {
            kind: pool.submit(_distances.head_distance_frame, stack, "js")
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
                "warning": comparison.warning,
                "columns": ["layer", "head", *columns],
                "rows": _records(ranked, columns),
                "figures": figures,
            },
            scripts=FIGURE_SCRIPTS,
        )

    return build
