"""The "why this token" page: a prediction's route graph, the heads that wrote it, the text
painted by what each token contributed, and the logit lens.

:func:`trace_page` draws a :class:`~inspector.explain.route_result.Routes` (information flow
plus the direct logit attribution of the same forward pass); its first lines answer in words
(:meth:`~inspector.explain.route_result.Routes.answer`). The route graph is drawn by
``static/trace.js`` with the page's d3: layers bottom to top, the walked token positions left
to right, edge width by contribution; hovering a node shows its logit lens, clicking an
attention edge its per-head split and each head's attention row over the text. The layer x
head attribution heatmap is a figure (:mod:`.figures`). :func:`generation_trace_section` adds
one line per generated token to a generation report. Nothing here runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..explain.route_result import (
    KINDS,
    PAGES,
    TOP_HEADS,
    Routes,
    fmt_token,
    head_keys,
    top_sources,
)
from .figures import FIGURE_SCRIPTS, FigureSpec, heatmap, rounded
from .page import Report, build_page
from .section import Section

#: Rows of the top-heads table.
TABLE_HEADS = 12
#: Tokens of the text painted by attribution (longer inputs: the heaviest ones and their
#: neighbours).
PAINT_TOKENS = 4096


def _heatmap(frame: pd.DataFrame, n_layers: int) -> FigureSpec:
    heads = frame[frame["kind"] == "head"]
    n_heads = int(heads.index.get_level_values("head").max()) + 1 if len(heads) else 0
    grid = np.full((n_layers, n_heads), np.nan)
    keys = head_keys(heads.index)
    for (layer, head), value in zip(keys, heads["attribution"].to_numpy(), strict=True):
        grid[layer, head] = value
    bound = float(np.nanmax(np.abs(grid))) if len(heads) else 1.0
    panel = heatmap(
        grid, rows=[f"L{i}" for i in range(n_layers)], cols=[f"H{h}" for h in range(n_heads)],
        title="direct logit attribution", xlabel="head", ylabel="layer", cmap="rdbu",
        vmin=-bound, vmax=bound, annotate=False, fmt=".3~g",
    )  # fmt: skip
    return FigureSpec("trace-heads", "direct logit attribution of every head", (panel,))


def _paint(values: np.ndarray) -> list[int]:
    """The positions painted (all of them, or the heaviest and their neighbours)."""
    n = len(values)
    if n <= PAINT_TOKENS:
        return list(range(n))
    keep: set[int] = set()
    for p in np.argsort(-np.abs(values))[:64].tolist():
        keep.update(range(max(0, p - 8), min(n, p + 9)))
    return sorted(keep)


def trace_context(routes: Routes) -> dict[str, Any]:
    """The template values of the "why this token" section."""
    attribution = routes.attribution
    frame: pd.DataFrame = attribution.frame
    tokens = list(routes.tokens.readable or routes.tokens.tokens)
    n = len(tokens)
    per_token: np.ndarray = np.zeros(n)
    if attribution.per_token is not None:
        part = attribution.per_token[attribution.per_token["kind"] == "head"]
        per_token = np.bincount(
            part["source_pos"].to_numpy(), part["attribution"].to_numpy(), minlength=n
        ).astype(np.float64)
    heads = frame[frame["kind"] == "head"].sort_values("attribution", ascending=False)
    top_rows = []
    values = heads["attribution"].to_numpy()
    for (layer, head), value in zip(head_keys(heads.index[:TABLE_HEADS]), values, strict=False):
        src = top_sources(attribution.per_token, [(layer, head)])[:3]
        top_rows.append({"layer": layer, "head": head, "value": float(value),
                         "reads": ", ".join(f"{tokens[p]} ({p})" for p in src)})  # fmt: skip
    rest = frame[frame["kind"] != "head"].sort_values("attribution", ascending=False)
    others = [
        {"component": str(r["component"]), "kind": KINDS.get(str(r["kind"]), str(r["kind"])),
         "value": float(r["attribution"])}
        for r in rest.to_dict("records") if abs(float(r["attribution"])) > 1e-9
    ][:TABLE_HEADS]  # fmt: skip
    data = _graph_data(routes, per_token)
    lens = attribution.lens
    return {
        **_header(routes),
        "remainder": float(frame.attrs["remainder"]),
        "unembedding_bias": float(frame.attrs["unembedding_bias"]),
        "figures": [_heatmap(frame, routes.n_layers)],
        "top_heads": top_rows,
        "others": others,
        "lens": [
            {"layer": int(r["layer"]), "rank": int(r["rank"]), "logit": float(r["logit"]),
             "prob": float(r["prob"]), "top": " | ".join(r["top"])}
            for r in lens.to_dict("records")
        ],
        "data": data,
    }  # fmt: skip


def _header(routes: Routes) -> dict[str, Any]:
    """The answer and the graph's size, atop both sections."""
    return {
        "answer": routes.answer(),
        "model": routes.model_name,
        "threshold": routes.threshold,
        "n_nodes": len(routes.nodes),
        "n_edges": len(routes.edges),
    }


def _spaces(tokens: Any, readable: list[str]) -> list[bool]:
    """Where the painted text puts a space before a token: each new word, for tokenizers whose
    tokens carry no space mark of their own (WordPiece's ``the cat``, not ``␣the␣cat``)."""
    if any(t.startswith(("␣", "▁")) for t in readable):
        return [False] * len(readable)
    words = np.asarray(tokens.word_ids)
    return [bool(i > 0 and (words[i] < 0 or words[i] != words[i - 1])) for i in range(len(words))]


def _graph_data(routes: Routes, per_token: np.ndarray) -> dict[str, Any]:
    """What ``trace.js`` draws: the walked nodes (with their lens, when they have one) and
    edges, each attention edge's heads and rows, and the text painted by ``per_token``."""
    tokens = list(routes.tokens.readable or routes.tokens.tokens)
    painted = _paint(per_token)
    return {
        "tokens": tokens,
        "spaces": _spaces(routes.tokens, tokens),
        "position": routes.position,
        "target": routes.target,
        "token": routes.token,
        "n_layers": routes.n_layers,
        "nodes": [
            {"id": r["node"], "kind": r["kind"], "layer": int(r["layer"]), "pos": int(r["pos"]),
             "rank": None if r["rank"] is None else int(r["rank"]), "logit": rounded(r["logit"]),
             "top": list(r["top"])}
            for r in routes.nodes.to_dict("records")
        ],
        "edges": [
            {"s": e["source"], "t": e["target"], "block": e["block"], "layer": int(e["layer"]),
             "w": rounded(e["weight"]), "sp": int(e["source_pos"]), "tp": int(e["target_pos"])}
            for e in routes.edges.to_dict("records")
        ],
        "heads": _head_splits(routes),
        "rows": {f"{layer}:{q}:{h}": [[k, rounded(w)] for k, w in row]
                 for (layer, q, h), row in routes.attention_rows.items()},
        "painted": painted,
        "per_token": rounded(per_token[painted]) if painted else [],
    }  # fmt: skip


def route_context(routes: Routes) -> dict[str, Any]:
    """The template values of an encoder's route section (no logit: no attribution, no lens;
    the text is painted by each token's share of the output node through the graph)."""
    scores = routes.token_scores()
    return {
        **_header(routes),
        "embedding": routes.target == "embedding",
        "data": _graph_data(routes, scores),
    }


def route_section(routes: Routes) -> Section:
    """The route graph of an encoder's representation (:func:`route_context`), a report
    section."""
    return Section(
        "route",
        "Information flow route",
        "sections/route.html.j2",
        route_context(routes),
        scripts=("trace.js",),
        css=("trace.css",),
    )


def _head_splits(routes: Routes) -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for r in routes.heads.to_dict("records"):
        out.setdefault(f"{r['layer']}:{r['source_pos']}:{r['target_pos']}", []).append(
            [int(r["head"]), rounded(r["weight"])]
        )
    return out


def trace_section(routes: Routes) -> Section:
    """The "why this token" section of one traced prediction."""
    return Section(
        "why",
        "Why this token",
        "sections/trace.html.j2",
        trace_context(routes),
        scripts=(*FIGURE_SCRIPTS, "trace.js"),
        css=("trace.css",),
    )


def trace_page(
    routes: Routes, path: str | os.PathLike[str] | None = None, *, title: str | None = None
) -> Report:
    """The self-contained "why this token" page; written to ``path`` when given."""
    if not isinstance(routes, Routes):
        from ..errors import InputError

        raise InputError("trace_page draws the result of information_flow")
    if routes.attribution is None:  # an encoder's representation: the route alone
        title = title or f"Information flow route — {routes.model_name}"
        report = build_page([lambda _ctx: route_section(routes)], None, title=title)
    else:
        title = title or f"Why {fmt_token(routes.token)}? — {routes.model_name}"
        report = build_page([lambda _ctx: trace_section(routes)], None, title=title)
    if path is not None:
        report.save(path)
    return report


def generation_trace_section(steps: Sequence[dict[str, Any]]) -> Any:
    """A report section builder listing, for every generated token, the heads that wrote it
    and the tokens they read (``steps``: one ``answer``-like record per step, see
    :func:`step_record`)."""

    def build(_ctx: Any) -> Section | None:
        if not steps:
            return None
        return Section("generation-why", "Why each generated token", "sections/trace_steps.html.j2",
                       {"steps": list(steps)})  # fmt: skip

    return build


def step_record(
    step: int, frame: pd.DataFrame, per_token: pd.DataFrame | None, tokens: Sequence[str]
) -> dict[str, Any]:
    """One generated token's line: its logit, probability, top heads and what they read."""
    a = frame.attrs
    heads = frame[frame["kind"] == "head"].sort_values("attribution", ascending=False)
    top = head_keys(heads.index[:TOP_HEADS])
    src = top_sources(per_token, top)[:3]
    values = heads["attribution"]
    mlp = frame[frame["kind"] == "mlp"]["attribution"]
    return {
        "step": step, "position": int(a["position"]), "token": str(a["token"]),
        "logit": float(a["logit"]), "prob": float(a["probability"]),
        "heads": ", ".join(f"{la}.{h} ({float(values.loc[(la, h)]):+.2f})" for la, h in top),
        "mlp": float(mlp.sum()) if len(mlp) else 0.0,
        "reads": ", ".join(f"{tokens[p]} ({p})" for p in src),
    }  # fmt: skip


PAGES.register("trace", trace_page, overwrite=True)

__all__ = [
    "generation_trace_section",
    "route_context",
    "route_section",
    "step_record",
    "trace_context",
    "trace_page",
    "trace_section",
]
