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

#: The one number format of the section (maps' colour bars, hover and tables).
FMT = ".3f"
#: Sink-dominated heads listed (most overstated first).
SINK_ROWS = 10


def _map(matrix: np.ndarray, tokens: Any, title: str) -> dict[str, Any]:
    return heatmap(
        matrix,
        rows=list(tokens.readable or tokens.tokens),
        cols=list(tokens.readable or tokens.tokens),
        raw_rows=list(tokens.tokens),
        raw_cols=list(tokens.tokens),
        title=title,
        xlabel="key",
        ylabel="query",
        cmap="blues",
        vmin=0.0,
        vmax=max(float(np.nanmax(matrix)), 1e-9),
        annotate=False,
        fmt=FMT,
    )


#: The maps :func:`token_maps_figure` draws, by the explainer that scores each.
MAP_NAMES = ("attention", "norms", "rollout")


def token_maps_figure(expl: Explanation, order: Sequence[str] | None = None) -> FigureSpec:
    """Raw attention, norm-based attention (layer ``expl.layer``, mean over heads) and rollout;
    ``order`` (names of :data:`MAP_NAMES`) puts them in another order, most trusted first."""
    tokens = expl.tokens
    maps = {
        "attention": _map(expl.raw, tokens, f"raw attention, layer {expl.layer} (mean of heads)"),
        "norms": _map(expl.norm, tokens, f"norm-based ‖αf(x)‖, layer {expl.layer} (share)"),
        "rollout": _map(expl.rollout, tokens, "attention rollout, all layers"),
    }
    names = [n for n in (order or ()) if n in maps]
    names += [n for n in MAP_NAMES if n not in names]
    return FigureSpec(
        "what-mattered-maps",
        "raw vs norm-based vs rollout",
        tuple(maps[n] for n in names),
        caption="each map has its own colour range unless you choose one range for all",
        shared_scale=True,
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
            size=max(240, 12 * max(len(rows), len(cols))),  # a rank fits its cell at 9 px
            fmt=FMT,
        )
    ]
    tokens = expl.tokens
    for rank, ((li, hi), matrix) in enumerate(
        zip(expl.top_heads, expl.top_maps, strict=True), start=1
    ):
        panels.append(_map(matrix, tokens, f"#{rank}: layer {li} head {hi}"))
    return FigureSpec("head-importance", "head importance and top heads", tuple(panels))


def explain_context(expl: Explanation, order: Sequence[str] | None = None) -> dict[str, Any]:
    """The template values of the section (``order``: of the token maps, see
    :func:`token_maps_figure`)."""
    f = expl.importance
    scores = {
        (int(li), int(hi)): (float(v), float(d))
        for (li, hi), v, d in zip(cast(Any, f.index), f["importance"], f["delta"], strict=True)
    }
    sinks = expl.sinks.reset_index()
    sinks["overstated"] = sinks["raw_share"] - sinks["norm_share"]
    ranked = sinks.sort_values(["overstated", "layer", "head"], ascending=[False, True, True])
    flagged = set(zip(sinks["layer"].astype(int), sinks["head"].astype(int), strict=True))
    top_sinks = [(rank, lh) for rank, lh in enumerate(expl.top_heads, start=1) if lh in flagged]
    # the table lists the most overstated heads and every important head the warning names
    warned = {lh for _, lh in top_sinks}
    pairs = list(zip(ranked["layer"].astype(int), ranked["head"].astype(int), strict=True))
    keep = [i < SINK_ROWS or lh in warned for i, lh in enumerate(pairs)]
    shown = ranked[keep]
    n_heads = len(f)
    names = expl.tokens.readable or expl.tokens.tokens  # ␣the, ⏎: never raw pieces
    return {
        "target": expl.target,
        "method": str(expl.importance.attrs.get("inspector", {}).get("method", "")),
        "layer": expl.layer,
        "figures": [token_maps_figure(expl, order), importance_figure(expl)],
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
                "token": str(
                    names[int(r["key_pos"])] if int(r["key_pos"]) < len(names) else r["key_token"]
                ),
                "pos": int(r["key_pos"]),
                "raw": float(r["raw_share"]),
                "norm": float(r["norm_share"]),
                "importance": scores[(int(r["layer"]), int(r["head"]))][0],
                "rank": 1
                + sorted(scores, key=lambda k: -scores[k][0]).index(
                    (int(r["layer"]), int(r["head"]))
                ),
            }
            for r in shown.to_dict("records")
        ],
        "n_sinks": len(sinks),
        "n_heads": n_heads,
        "top_sinks": [{"rank": rank, "layer": lh[0], "head": lh[1]} for rank, lh in top_sinks],
    }


def explain_section(
    expl: Explanation, order: Sequence[str] | None = None
) -> Callable[[ReportContext], Section]:
    """A section builder showing ``expl``; pass it in ``build_report(extra_sections=[...])``
    (``order``: of the token maps, most trusted first)."""

    def build(ctx: ReportContext) -> Section:
        return Section(
            "what-mattered",
            "What mattered",
            "sections/explain.html.j2",
            explain_context(expl, order),
            scripts=FIGURE_SCRIPTS,
        )

    return build
