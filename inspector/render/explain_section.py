"""The report's "what mattered" section: raw vs norm-based vs rollout maps, head importance.

A section builder factory (see :mod:`inspector.render.report`): the numbers come ready in an
:class:`inspector.explain.Explanation` (computing them runs the model, which rendering must not),
and :func:`explain_section` turns them into figures and tables. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..explain import Explanation
from .figures import StaticFigure, save_figure

if TYPE_CHECKING:
    from .report import ReportContext, Section

#: Longest token labels on the heatmap axes.
_LABEL_CHARS = 12


def _labels(tokens: Sequence[str]) -> list[str]:
    return [t if len(t) <= _LABEL_CHARS else t[: _LABEL_CHARS - 1] + "…" for t in tokens]


def _map(ax: Any, matrix: np.ndarray, tokens: Sequence[str], title: str) -> None:
    n = matrix.shape[0]
    ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=max(float(matrix.max()), 1e-9))
    ax.set_title(title, fontsize=9)
    if n <= 48:
        ax.set_xticks(range(n), _labels(tokens), rotation=90, fontsize=6)
        ax.set_yticks(range(n), _labels(tokens), fontsize=6)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_xlabel("key", fontsize=7)
    ax.set_ylabel("query", fontsize=7)


def token_maps_figure(expl: Explanation) -> StaticFigure:
    """Raw attention, norm-based attention (layer ``expl.layer``, mean over heads) and rollout."""
    from matplotlib.figure import Figure

    tokens = list(expl.tokens.tokens)
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    _map(axes[0], expl.raw, tokens, f"raw attention, layer {expl.layer} (mean of heads)")
    _map(axes[1], expl.norm, tokens, f"norm-based ‖αf(x)‖, layer {expl.layer} (share)")
    _map(axes[2], expl.rollout, tokens, "attention rollout, all layers")
    return save_figure(fig, "what-mattered-maps", "raw vs norm-based vs rollout")


def importance_figure(expl: Explanation) -> StaticFigure:
    """Layer × head importance heatmap, then the top heads' raw attention maps."""
    from matplotlib.figure import Figure

    imp = expl.importance.pivot(index="layer", columns="head", values="importance")
    n_top = len(expl.top_heads)
    fig = Figure(figsize=(4 + 3.2 * n_top, 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, 1 + n_top))
    ax = axes[0]
    image = ax.imshow(imp.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(imp.shape[1]), [str(h) for h in imp.columns], fontsize=7)
    ax.set_yticks(range(imp.shape[0]), [str(li) for li in imp.index], fontsize=7)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("head importance", fontsize=9)
    for rank, (li, hi) in enumerate(expl.top_heads, start=1):
        ax.text(hi, li, str(rank), ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8)
    tokens = list(expl.tokens.tokens)
    for rank, ((li, hi), matrix) in enumerate(
        zip(expl.top_heads, expl.top_maps, strict=True), start=1
    ):
        _map(axes[rank], matrix, tokens, f"#{rank}: layer {li} head {hi}")
    return save_figure(fig, "head-importance", "head importance and top heads")


def explain_context(expl: Explanation) -> dict[str, Any]:
    """The template values of the section."""
    f = expl.importance
    scores = {
        (int(li), int(hi)): (float(v), float(d))
        for li, hi, v, d in zip(f["layer"], f["head"], f["importance"], f["delta"], strict=True)
    }
    sinks = expl.sinks.to_dict("records")
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
        from .report import Section

        return Section(
            "what-mattered", "What mattered", "sections/explain.html.j2", explain_context(expl)
        )

    return build
