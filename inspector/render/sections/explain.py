"""The report's "what mattered" section: raw vs norm-based vs rollout maps, head importance.

A section builder factory (see :mod:`inspector.render.report`): the numbers come ready in an
:class:`inspector.explain.result.Explanation` (computing them runs the model, which rendering must
not), and :func:`explain_section` turns them into figure data (drawn in the page by ``figures.js``)
and tables. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from ...explain.result import Explanation
from ..figures import FIGURE_SCRIPTS, FigureSpec, heatmap
from ..section import ReportContext, Section


def _map(matrix: np.ndarray, tokens: Sequence[str], title: str) -> dict[str, Any]:
    return heatmap(
        matrix,
        rows=tokens,
        cols=tokens,
        title=title,
        xlabel="key",
        ylabel="query",
        cmap="blues",
        vmin=0.0,
        vmax=max(float(np.nanmax(matrix)), 1e-9),
        annotate=False,
    )


def token_maps_figure(expl: Explanation) -> FigureSpec:
    """Raw attention, norm-based attention (layer ``expl.layer``, mean over heads) and rollout."""
    tokens = list(expl.tokens.tokens)
    return FigureSpec(
        "what-mattered-maps",
        "raw vs norm-based vs rollout",
        (
            _map(expl.raw, tokens, f"raw attention, layer {expl.layer} (mean of heads)"),
            _map(expl.norm, tokens, f"norm-based ‖αf(x)‖, layer {expl.layer} (share)"),
            _map(expl.rollout, tokens, "attention rollout, all layers"),
        ),
    )


def importance_figure(expl: Explanation) -> FigureSpec:
    """Layer × head importance heatmap (top heads numbered), then the top heads' raw maps."""
    imp = expl.importance["importance"].unstack("head")
    rows, cols = [int(i) for i in imp.index], [int(h) for h in imp.columns]
    ranks = {
        (rows.index(li), cols.index(hi)): str(rank)
        for rank, (li, hi) in enumerate(expl.top_heads, start=1)
    }
    panels = [
        heatmap(
            imp.to_numpy(),
            rows=[str(i) for i in rows],
            cols=[str(h) for h in cols],
            title="head importance (top heads numbered)",
            xlabel="head",
            ylabel="layer",
            text=ranks,
            size=240,
        )
    ]
    tokens = list(expl.tokens.tokens)
    for rank, ((li, hi), matrix) in enumerate(
        zip(expl.top_heads, expl.top_maps, strict=True), start=1
    ):
        panels.append(_map(matrix, tokens, f"#{rank}: layer {li} head {hi}"))
    return FigureSpec("head-importance", "head importance and top heads", tuple(panels))


def explain_context(expl: Explanation) -> dict[str, Any]:
    """The template values of the section."""
    f = expl.importance
    scores = {
        (int(li), int(hi)): (float(v), float(d))
        for (li, hi), v, d in zip(cast(Any, f.index), f["importance"], f["delta"], strict=True)
    }
    sinks = expl.sinks.reset_index().to_dict("records")
    return {
        "target": expl.target,
        "method": str(expl.importance.attrs.get("inspector", {}).get("method", "")),
        "layer": expl.layer,
        "figures": [token_maps_figure(expl), importance_figure(expl)],
        "top": [
            {
                "rank": rank,
                "layer": li,
                "head": hi,
                "importance": scores[(li, hi)][0],
                "delta": scores[(li, hi)][1],
            }
            for rank, (li, hi) in enumerate(expl.top_heads, start=1)
        ],
        "sinks": [
            {
                "layer": int(r["layer"]),
                "head": int(r["head"]),
                "token": str(r["key_token"]),
                "pos": int(r["key_pos"]),
                "raw": float(r["raw_share"]),
                "norm": float(r["norm_share"]),
                "importance": scores[(int(r["layer"]), int(r["head"]))][0],
            }
            for r in sinks
        ],
    }


def explain_section(expl: Explanation) -> Callable[[ReportContext], Section]:
    """A section builder showing ``expl``; pass it in ``build_report(extra_sections=[...])``."""

    def build(ctx: ReportContext) -> Section:
        return Section(
            "what-mattered",
            "What mattered",
            "sections/explain.html.j2",
            explain_context(expl),
            scripts=FIGURE_SCRIPTS,
        )

    return build
