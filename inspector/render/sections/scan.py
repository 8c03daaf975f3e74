"""The scan page's sections: a long input seen through a bounded scan, drawable at 8k tokens.

Section builders ``(ScanContext) -> Section | None``: overview, the row explorer (a query-position
picker that paints that exact row of a chosen head over the text, in a token strip that renders
only the lines in view: ``static/scan.js``), attention sinks (a layer x head heatmap, the
first-tokens share against query position, a sortable table), every head's pooled map (canvas
heatmaps of :mod:`..figures`, re-pooled to at most :data:`PAGE_POOL` bins a side, hover shows the
position ranges and scan.js their text), the head metrics table, and, when given, retrieval
heads. The page embeds statistics only: never a full ``T x T`` map.
"""

from __future__ import annotations

import base64
import itertools
import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...analysis import long as _long
from ...analysis.scan import ScanData, ScanStack, pool_edges
from ...capture.memory import format_bytes
from ..figures import FIGURE_SCRIPTS, FigureSpec, heatmap
from ..section import Section, table_context

#: Bins a side of the pooled maps drawn in the page (the scan keeps up to its own ``pool``).
PAGE_POOL = 32
#: Exact rows embedded for the row explorer (the last ones kept).
PAGE_ROWS = 8
#: Position bins of the sink-against-position figure.
CURVE_BINS = 48
SCAN_SCRIPTS: tuple[str, ...] = (*FIGURE_SCRIPTS, "scan.js")
SCAN_CSS: tuple[str, ...] = ("scan.css",)


@dataclass
class ScanContext:
    """What the scan page's section builders get."""

    data: ScanData | None = None
    kind: str | None = None
    retrieval: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def stack(self) -> ScanStack | None:
        return None if self.data is None else self.data.stack(self.kind)


def _context(**kw: Any) -> dict[str, Any]:
    """:func:`table_context` plus the scan template's own keys."""
    return table_context(**{"explorer": None, "extra_table": None, "tokens": None, **kw})


def _section(
    key: str,
    title: str,
    scripts: tuple[str, ...] = SCAN_SCRIPTS,
    css: tuple[str, ...] = SCAN_CSS,
    **context: Any,
) -> Section:
    """A section of the scan page (its one template) with ``context`` over the defaults."""
    return Section(
        key, title, "sections/scan.html.j2", _context(**context), scripts=scripts, css=css
    )


def _table(frame: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    rows = [
        [v.item() if isinstance(v, np.generic) else v for v in row]
        for row in frame.itertuples(index=False)
    ]
    return [str(c) for c in frame.columns], rows


def _ranges(edges: np.ndarray) -> list[str]:
    return [f"{int(a)}–{int(b) - 1}" for a, b in itertools.pairwise(edges)]


def repool(
    mean: np.ndarray, rows: np.ndarray, cols: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled means ``(..., r, c)`` over bins ``rows`` x ``cols`` merged to at most ``target``
    bins a side, weighting each bin by its cells (exact: the mean of the merged cells)."""
    out = mean.astype(np.float64)
    for axis, edges in ((-2, rows), (-1, cols)):
        n = len(edges) - 1
        group = max(1, math.ceil(n / target))
        starts = np.arange(0, n, group)
        size = np.diff(edges).astype(np.float64)
        shape = [1] * out.ndim
        shape[axis] = n
        weighted = out * size.reshape(shape)
        summed = np.add.reduceat(weighted, starts, axis=axis)
        shape[axis] = len(starts)
        out = summed / np.add.reduceat(size, starts).reshape(shape)
        new_edges = np.append(edges[starts], edges[-1])
        if axis == -2:
            rows = new_edges
        else:
            cols = new_edges
    return out, rows, cols


def made_from_capture(metadata: Mapping[str, Any]) -> bool:
    """Whether the statistics come from a full capture (a long inspection's report), not from a
    bounded scan: the page's words say which."""
    return metadata.get("method") == "capture"


def _how_made(metadata: Mapping[str, Any]) -> tuple[str, str]:
    """The overview's intro and its ``method`` value, true to how the statistics were made."""
    method = str(metadata.get("method", ""))
    if made_from_capture(metadata):
        return (
            "Statistics of a full capture: one forward pass kept every head's attention (the "
            "inspection holds it), and this page embeds only what was measured from it "
            "(pooled maps, sinks, kept rows), never a full attention map.",
            "capture (every weight held, then measured)",
        )
    return (
        "A bounded scan: every head's statistics were computed a block of query rows at a "
        "time, so no full attention map was ever held or embedded here.",
        f"{method} (bounded scan, a block of query rows at a time)" if method else "",
    )


def scan_overview_section(ctx: ScanContext) -> Section | None:
    if ctx.data is None or ctx.stack is None:
        return None
    m, s = ctx.data.metadata, ctx.stack
    intro, method = _how_made(m)
    facts = [
        ("model", str(m.get("model_name", ""))),
        ("type", f"{m.get('model_type', '')} ({m.get('architecture', '')})"),
        ("tokens", f"{len(s.query):,}"),
        ("layers x heads", f"{len(s.layers)} x {len(s.heads)}"),
        ("method", method),
        ("pooled maps", f"{len(s.pool_rows) - 1} x {len(s.pool_cols) - 1} bins per head"),
        ("exact rows kept", ", ".join(str(p) for p in s.row_positions) or "none"),
        ("sink tokens", str(s.sink_tokens)),
    ]
    if m.get("memory_estimate"):
        facts.append(("memory estimate", format_bytes(int(m["memory_estimate"]))))
    if m.get("note"):
        facts.append(("note", str(m["note"])))
    tokens = {
        "tokens": list(s.key.readable or s.key.tokens),
        "special": [bool(x) for x in s.key.special],
    }
    return _section("overview", "Scan", intro=intro, facts=facts, tokens=tokens)


def _encode_rows(rows: np.ndarray) -> dict[str, Any]:
    q = np.rint(np.clip(rows, 0.0, 1.0) * 255).astype("<u1")
    return {
        "shape": [int(x) for x in q.shape],
        "scale": 255,
        "data": base64.b64encode(zlib.compress(np.ascontiguousarray(q).tobytes(), 6)).decode(),
    }


def scan_explorer_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None or not s.row_positions:
        return None
    keep = list(range(len(s.row_positions)))[-PAGE_ROWS:]
    rows = s.rows[:, :, keep]
    explorer = {
        "row_positions": [int(s.row_positions[i]) for i in keep],
        "layers": [int(x) for x in s.layers],
        "heads": [int(x) for x in s.heads],
        "rows": _encode_rows(rows),
    }
    intro = (
        "Pick a kept query position, a layer and a head (or the mean or max over heads): the "
        "text below is coloured by that exact attention row (stored as uint8, error ≤ 0.002), "
        "and its heaviest spans are listed. Only the lines in view are drawn."
    )
    if len(keep) < len(s.row_positions):
        intro += f" The page holds the last {len(keep)} of {len(s.row_positions)} kept rows."
    return _section("rows", "What a position reads", intro=intro, explorer=explorer)


def _grid(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    return frame[column].astype(float).unstack("head")


def scan_sinks_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    table = _long.sink_table(s)
    k = s.sink_tokens
    panels = []
    for column, title in (
        ("first_k_share", f"share on the first {k} tokens"),
        ("late_first_k_share", "same, last quarter of positions"),
        ("sink_share", "share on the top key"),
    ):
        grid = _grid(table, column)
        panels.append(
            heatmap(
                grid.to_numpy(),
                rows=[str(i) for i in grid.index],
                cols=[str(h) for h in grid.columns],
                title=title,
                xlabel="head",
                ylabel="layer",
                vmin=0.0,
                vmax=1.0,
                size=220,
            )
        )
    edges = pool_edges(s.n_query, CURVE_BINS)
    sums = np.add.reduceat(s.first_share, edges[:-1], axis=-1, dtype=np.float64)
    curve = (sums / np.diff(edges)).mean(axis=1)  # (layer, bins): mean over heads
    curve_panel = heatmap(
        curve,
        rows=[str(x) for x in s.layers],
        cols=_ranges(edges),
        title=f"mean share on the first {k} tokens by query position",
        xlabel="query positions",
        ylabel="layer",
        vmin=0.0,
        vmax=1.0,
        size=560,
    )
    figures = [
        FigureSpec("scan-sinks", "attention sinks per head", tuple(panels)),
        FigureSpec(
            "scan-sink-curve",
            "attention sinks against query position (mean over each layer's heads)",
            (curve_panel,),
        ),
    ]
    flat = table.reset_index()
    columns, rows = _table(flat)
    intro = (
        f"Attention sinks (Xiao et al. 2023): the share of each query row's attention on the "
        f"first {k} tokens, averaged over rows, and over the last quarter of the positions; the "
        f"key receiving the most attention over all rows and its share."
    )
    return Section(
        "sinks",
        "Attention sinks",
        "sections/scan.html.j2",
        _context(
            intro=intro,
            figures=figures,
            columns=columns,
            rows=rows,
            table_id="scan-sinks-table",
            text_columns=("sink_token",),
        ),
        scripts=FIGURE_SCRIPTS,
    )


def scan_pooled_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    mean, r_edges, c_edges = repool(s.pooled_mean, s.pool_rows, s.pool_cols, PAGE_POOL)
    rows, cols = _ranges(r_edges), _ranges(c_edges)
    figures = []
    for li, layer in enumerate(s.layers):
        panels = []
        for hi, head in enumerate(s.heads):
            panel = heatmap(
                mean[li, hi],
                rows=rows,
                cols=cols,
                title=f"{layer}.{head}",
                xlabel="keys",
                ylabel="queries",
                size=150,
            )
            panel["canvas"] = True  # one bitmap per head, never a rect per cell
            panels.append(panel)
        figures.append(FigureSpec(f"scan-pooled-{layer}", f"layer {layer}", tuple(panels)))
    intro = (
        f"Every head's map, block-averaged to {len(rows)} x {len(cols)} blocks of positions "
        f"(colour: mean weight in the block, each panel on its own scale). Hover a block for "
        f"its positions and their text."
    )
    return _section("pooled", "Pooled maps", intro=intro, figures=figures)


def scan_heads_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    frame = _long.scan_head_metrics(s).reset_index()
    columns, rows = _table(frame)
    return Section(
        "heads",
        "Head metrics",
        "sections/scan.html.j2",
        _context(
            intro="The registered head metrics, computed by blocks of rows (equal to inspect()).",
            columns=columns,
            rows=rows,
            table_id="scan-heads-table",
            text_columns=("sink_token",),
        ),
    )


def retrieval_section(ctx: ScanContext) -> Section | None:
    heads, trials = ctx.retrieval, ctx.trials
    if heads is None or trials is None:
        return None
    figures = []
    grid = heads["retrieval_score"].astype(float).unstack("head")
    figures.append(
        FigureSpec(
            "retrieval-heads",
            "retrieval score per head (mean over retrieved trials)",
            (
                heatmap(
                    grid.to_numpy(),
                    rows=[str(i) for i in grid.index],
                    cols=[str(h) for h in grid.columns],
                    title="retrieval score",
                    xlabel="head",
                    ylabel="layer",
                    vmin=0.0,
                    size=260,
                ),
            ),
        )
    )
    success = trials.pivot_table(index="length", columns="depth", values="recall", aggfunc="mean")
    figures.append(
        FigureSpec(
            "retrieval-success",
            "needle recall per prompt length and needle depth",
            (
                heatmap(
                    success.to_numpy(),
                    rows=[str(i) for i in success.index],
                    cols=[f"{d:g}" for d in success.columns],
                    title="ROUGE-1 recall",
                    xlabel="depth",
                    ylabel="length (tokens)",
                    vmin=0.0,
                    vmax=1.0,
                    annotate=True,
                    size=260,
                ),
            ),
        )
    )
    ranked = heads.reset_index().sort_values("retrieval_score", ascending=False)
    columns, rows = _table(ranked)
    n_ok = int(trials["success"].sum())
    intro = (
        f"Retrieval heads (Wu et al. 2024): a head copies at a generation step when its "
        f"most-attended position is in the needle and holds the token being generated; its "
        f"score is the share of needle tokens it copied, averaged over the {n_ok} of "
        f"{len(trials)} trials where the answer recalled the needle (ROUGE-1 recall > 0.5)."
    )
    t_columns, t_rows = _table(trials)
    return Section(
        "retrieval",
        "Retrieval heads",
        "sections/scan.html.j2",
        _context(
            intro=intro,
            figures=figures,
            columns=columns,
            rows=rows,
            table_id="retrieval-table",
            text_columns=(),
            extra_table={"id": "retrieval-trials", "columns": t_columns, "rows": t_rows},
        ),
        scripts=FIGURE_SCRIPTS,
    )


ScanSection = Callable[[ScanContext], "Section | None"]

#: The scan page's sections, in page order.
SCAN_SECTIONS: tuple[ScanSection, ...] = (
    scan_overview_section,
    retrieval_section,
    scan_explorer_section,
    scan_sinks_section,
    scan_pooled_section,
    scan_heads_section,
)


__all__ = ["PAGE_POOL", "SCAN_SECTIONS", "ScanContext", "repool"]
