"""The scan page's sections: a long input seen through a bounded scan, drawable at 8k tokens.

Section builders ``(ScanContext) -> Section | None``: the overview (what was scanned, and every
head at a glance: attention by log distance, sink share, local share; :mod:`.scan_maps`), the row
explorer (a query-position picker that paints that exact row of a chosen head over the text, in a
token strip that renders only the lines in view: ``static/scan.js``), every head's pooled map (a
grid of thumbnails on a log or per-row scale; a click enlarges a head at the scan's pooled
resolution: ``static/scan-maps.js``), attention sinks (layer x head heatmaps, the
first-tokens share against query position, a sortable table), the head metrics table, and, when
given, retrieval heads. Tokens are shown as the tokenizer decodes them (``Tokens.readable``).
The page embeds statistics only: never a full ``T x T`` map.
"""

from __future__ import annotations

import base64
import itertools
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ...analysis import scan_tables as _long
from ...analysis.scan import ScanData, ScanStack, pool_edges
from ...capture.memory import format_bytes
from ..charts import head_heatmap
from ..figures import FIGURE_SCRIPTS, FigureSpec, heatmap
from ..names import model_label, readable_sinks
from ..section import Section, frame_table, table_context
from .scan_maps import THUMB_POOL, glance_figure, pooled_maps, repool

#: Bins a side of the pooled-map thumbnails (a click enlarges a head at the scan's bins).
PAGE_POOL = THUMB_POOL
#: Exact rows embedded for the row explorer (the last ones kept).
PAGE_ROWS = 8
#: Position bins of the sink-against-position figure.
CURVE_BINS = 48
SCAN_SCRIPTS: tuple[str, ...] = (*FIGURE_SCRIPTS, "scan-glance.js", "scan-maps.js", "scan.js")
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
    return table_context(
        **{"explorer": None, "extra_table": None, "tokens": None, "pooled": None}
        | {"facts_grid": False, **kw}
    )


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


def _ranges(edges: np.ndarray) -> list[str]:
    return [f"{int(a)}–{int(b) - 1}" for a, b in itertools.pairwise(edges)]


def _positions(positions: tuple[int, ...], n: int) -> str:
    shown = ", ".join(f"{p:,}" for p in positions)
    return f"{shown} (of 0–{n - 1:,})" if positions else "none"


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
    n_q = len(s.query)
    rows, cols = len(s.pool_rows) - 1, len(s.pool_cols) - 1
    block = int(s.pool_rows[1] - s.pool_rows[0]) if rows else 0
    maps = f"{rows} x {cols} blocks of {block:,} tokens a side per head"
    kind = " ".join(x for x in (str(m.get("model_type", "")), str(m.get("architecture", ""))) if x)
    facts = [
        ("model", model_label(m) + (f" ({kind})" if kind else "")),
        ("tokens", f"{n_q:,}"),
        ("layers x heads", f"{len(s.layers)} x {len(s.heads)} = {len(s.layers) * len(s.heads)}"),
        ("method", method),
        ("pooled maps (scan)", maps),
        ("query positions with an exact row", _positions(s.row_positions, n_q)),
        ("sink tokens", f"the first {s.sink_tokens}"),
    ]
    if m.get("memory_estimate"):
        facts.append(("memory estimate", format_bytes(int(m["memory_estimate"]))))
    if m.get("note"):
        facts.append(("note", str(m["note"])))
    tokens = {
        "tokens": list(s.key.readable or s.key.tokens),
        "special": [bool(x) for x in s.key.special],
    }
    glance = glance_figure(s)
    return _section(
        "overview",
        "Scan",
        intro=intro,
        facts=facts,
        facts_grid=True,
        tokens=tokens,
        figures=[glance] if glance is not None else [],
    )


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


def scan_sinks_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    table = readable_sinks(_long.sink_table(s), s.key)
    k = s.sink_tokens
    panels = [
        head_heatmap(table[column], title, vmin=0.0, vmax=1.0, size=220)
        for column, title in (
            ("first_k_share", f"share on the first {k} tokens"),
            ("late_first_k_share", "same, last quarter of positions"),
            ("sink_share", "share on the top key"),
        )
    ]
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
    intro = (
        f"Attention sinks (Xiao et al. 2023): the share of each query row's attention on the "
        f"first {k} tokens, averaged over rows, and over the last quarter of the positions; the "
        f"key receiving the most attention over all rows and its share."
    )
    return _section(
        "sinks",
        "Attention sinks",
        scripts=FIGURE_SCRIPTS,
        css=(),
        intro=intro,
        figures=figures,
        **frame_table(table.reset_index(), "scan-sinks-table", ("sink_token",)),
    )


def scan_pooled_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    maps = pooled_maps(s)
    thumb, zoom = maps["thumb"]["shape"], maps["zoom"]["shape"]
    scan_bins = maps["scan_bins"]
    zoom_block = int(maps["zoom"]["rows"][1]) if len(maps["zoom"]["rows"]) > 1 else 0
    thumb_block = int(maps["thumb"]["rows"][1]) if len(maps["thumb"]["rows"]) > 1 else 0
    merged = (
        ""
        if zoom[2:] == scan_bins
        else f" (the scan pooled {scan_bins[0]} x {scan_bins[1]}; merged to fit the page)"
    )
    intro = (
        f"Every head's map, block-averaged: a thumbnail of {thumb[2]} x {thumb[3]} blocks of "
        f"{thumb_block:,} tokens per head; click a head to enlarge it at {zoom[2]} x {zoom[3]} "
        f"blocks of {zoom_block:,} tokens{merged}. Colour: the mean weight of a block on a log "
        f"scale (4 decades below the head's largest block; white: no attention), or each query "
        f"block divided by its row's largest block, or linear. Hover a block for its positions "
        f"and their text."
    )
    spec = {"name": "scan-pooled", "title": "pooled maps of every head", "maps": maps}
    return _section("pooled", "Pooled maps", intro=intro, pooled=spec)


def scan_heads_section(ctx: ScanContext) -> Section | None:
    s = ctx.stack
    if s is None:
        return None
    frame = readable_sinks(_long.scan_head_metrics(s), s.key).reset_index()
    return _section(
        "heads",
        "Head metrics",
        scripts=(),
        css=(),
        intro="The registered head metrics, computed by blocks of rows (equal to inspect()).",
        **frame_table(frame, "scan-heads-table", ("sink_token",)),
    )


def retrieval_section(ctx: ScanContext) -> Section | None:
    heads, trials = ctx.retrieval, ctx.trials
    if heads is None or trials is None:
        return None
    figures = []
    figures.append(
        FigureSpec(
            "retrieval-heads",
            "retrieval score per head (mean over retrieved trials)",
            (head_heatmap(heads["retrieval_score"], "retrieval score", vmin=0.0, size=260),),
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
    n_ok = int(trials["success"].sum())
    if ctx.metadata.get("protocol", "wu") == "wu":
        span = f"the answer ({ctx.metadata.get('answer') or 'the scored part of the needle'})"
        rule = "ROUGE-1 recall with stemming > 0.5, as the paper's code"
    else:
        span = "the needle"
        rule = "word recall of the needle > 0.5"
    intro = (
        f"Retrieval heads (Wu et al. 2024): a head copies at a generation step when its "
        f"most-attended position is in {span} and holds the token being generated; its "
        f"score is the share of those tokens it copied, averaged over the {n_ok} of "
        f"{len(trials)} trials where the response recalled it ({rule}). depth_used is where "
        f"the needle went (the nearest sentence end, line end or word start)."
    )
    return _section(
        "retrieval",
        "Retrieval heads",
        scripts=FIGURE_SCRIPTS,
        css=(),
        intro=intro,
        figures=figures,
        **frame_table(ranked, "retrieval-table"),
        extra_table=frame_table(trials, "retrieval-trials", ("response",)),
    )


ScanSection = Callable[[ScanContext], "Section | None"]

#: The scan page's sections, in page order.
SCAN_SECTIONS: tuple[ScanSection, ...] = (
    scan_overview_section,
    retrieval_section,
    scan_explorer_section,
    scan_pooled_section,
    scan_sinks_section,
    scan_heads_section,
)


__all__ = ["PAGE_POOL", "SCAN_SECTIONS", "ScanContext", "repool"]
