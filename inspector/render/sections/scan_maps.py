"""The scan page's pictures of every head: heads at a glance and the pooled maps.

* :func:`glance_figure` - one screen that tells heads apart: a layer x head grid of each head's
  attention against log distance (the ``profiles`` panel kind of ``static/scan-glance.js``;
  the share on the first tokens, the attention sink, is its own bar), and layer x head heatmaps
  of the sink share and of the share within :data:`LOCAL_DISTANCE` tokens.
* :func:`pooled_maps` - every head's pooled map embedded once, as 8-bit log values: thumbnails
  of at most :data:`THUMB_POOL` bins a side for the grid, and the maps at up to the scan's own
  pooled resolution (at most :data:`ZOOM_POOL`, within :data:`ZOOM_CELLS` for all heads) for
  the head a click enlarges. scan-maps.js decodes and draws them (log scale by default, or
  each row normalised, or linear).

Pure functions of a :class:`~inspector.analysis.scan.ScanStack`; nothing here draws or runs a
model.
"""

from __future__ import annotations

import base64
import itertools
import math
import zlib
from typing import Any

import numpy as np

from ...analysis.scan import ScanStack
from ..figures import FigureSpec, heatmap, rounded

#: Bins a side of the pooled-map thumbnails in the grid.
THUMB_POOL = 32
#: Most bins a side of the enlarged map (the scan pools to its own ``pool``, 256 by default).
ZOOM_POOL = 256
#: Most cells of the enlarged maps of all heads together (uint8 each, before compression):
#: past it the maps are merged to half the bins a side until they fit (the page says so).
ZOOM_CELLS = 5_000_000
#: Decades of the 8-bit log code below each head's largest block (smaller values are stored as
#: that floor; exact zeros, such as a causal map's upper triangle, stay zero).
LOG_DECADES = 6.0
#: "Local" attention in the overview: keys fewer than this many positions away.
LOCAL_DISTANCE = 16


def distance_labels(edges: np.ndarray) -> list[str]:
    """``["0", "1", "2–3", "4–7", ..., "4096–8191"]`` for distance bin edges."""
    out = []
    for a, b in itertools.pairwise(int(e) for e in edges):
        out.append(str(a) if b - a == 1 else f"{a}–{b - 1}")
    return out


def local_share(stack: ScanStack) -> np.ndarray | None:
    """``(layer, head)``: each head's mean share on keys fewer than :data:`LOCAL_DISTANCE`
    positions from the query (the first tokens left out), or ``None`` without distance bins."""
    if stack.distance_mass is None or stack.distance_edges is None:
        return None
    near = np.asarray(stack.distance_edges[1:]) <= LOCAL_DISTANCE
    return stack.distance_mass[..., near].sum(axis=-1)


def glance_figure(stack: ScanStack) -> FigureSpec | None:
    """Heads at a glance: attention by log distance per head, sink share, local share."""
    if stack.distance_mass is None or stack.distance_edges is None:
        return None
    k = stack.sink_tokens
    sink = stack.first_share.mean(axis=-1, dtype=np.float64)
    local = local_share(stack)
    assert local is not None
    layers = [str(x) for x in stack.layers]
    heads = [str(x) for x in stack.heads]
    profiles = {
        "kind": "profiles",
        "title": "attention by query-key distance (log bins)",
        "xlabel": "head",
        "ylabel": "layer",
        "rows": layers,
        "cols": heads,
        "bins": distance_labels(stack.distance_edges),
        "profile": rounded(stack.distance_mass, 3),
        "sink": rounded(sink, 3),
        "sink_label": f"first {k}",
    }
    size = max(200, min(1000, 15 * len(layers)))  # rows as tall as the charts beside them
    panels = [
        profiles,
        heatmap(sink, rows=layers, cols=heads, title=f"share on the first {k} tokens",
                xlabel="head", ylabel="layer", vmin=0.0, vmax=1.0, size=size, annotate=False),
        heatmap(local, rows=layers, cols=heads,
                title=f"share at distance 0–{LOCAL_DISTANCE - 1}", xlabel="head", ylabel="layer",
                vmin=0.0, vmax=1.0, size=size, annotate=False),
    ]  # fmt: skip
    caption = (
        f"Each small chart is one head: its red bar is the share of a row's attention on the "
        f"first {k} tokens (the attention sink; full height: all of it), the blue bars the rest "
        f"by distance from the query, in bins that double (0, 1, 2–3, 4–7, …), scaled to their "
        f"own tallest bin so that their shape shows. Hover a head for the numbers."
    )
    return FigureSpec("scan-glance", "heads at a glance", tuple(panels), caption=caption)


def repool(
    mean: np.ndarray, rows: np.ndarray, cols: np.ndarray, target: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled means ``(..., r, c)`` over bins ``rows`` x ``cols`` merged to at most ``target``
    bins a side, weighting each bin by its cells (exact: the mean of the merged cells, in
    float32; columns first, so the rows are merged on an array already narrowed)."""
    out = mean.astype(np.float32, copy=True)
    for axis, edges in ((-1, cols), (-2, rows)):
        n = len(edges) - 1
        group = max(1, math.ceil(n / target))
        if group == 1:  # already at most target bins on this axis
            continue
        starts = np.arange(0, n, group)
        size = np.diff(edges).astype(np.float32)
        shape = [1] * out.ndim
        shape[axis] = n
        out *= size.reshape(shape)  # out is this function's own copy
        out = np.add.reduceat(out, starts, axis=axis)
        shape[axis] = len(starts)
        out /= np.add.reduceat(size, starts).reshape(shape)
        new_edges = np.append(edges[starts], edges[-1])
        if axis == -2:
            rows = new_edges
        else:
            cols = new_edges
    return out, rows, cols


def zoom_side(stack: ScanStack, *, side: int = ZOOM_POOL, cells: int = ZOOM_CELLS) -> int:
    """Bins a side of the enlarged maps: the scan's pooled bins, at most ``side``, merged to
    half as many until all heads fit in ``cells``."""
    n_heads = len(stack.layers) * len(stack.heads)
    bins = max(len(stack.pool_rows), len(stack.pool_cols)) - 1
    target = min(side, bins)
    while target > THUMB_POOL and n_heads * target * target > cells:
        target = math.ceil(target / 2)
    return max(1, target)


def log_codes(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, lo, hi)``: maps ``(layer, head, r, c)`` as uint8 codes of log10 values, one
    range per head: ``0`` for 0, else ``1 + round(254 * (log10(v) - lo) / (hi - lo))`` with
    ``hi`` the head's largest value and ``lo`` its smallest positive one, at most
    :data:`LOG_DECADES` below ``hi`` (a relative error of at most 3% within the range)."""
    m = np.asarray(maps, dtype=np.float64)
    pos = m > 0
    with np.errstate(divide="ignore"):
        logs = np.where(pos, np.log10(np.where(pos, m, 1.0)), np.nan)
    flat = logs.reshape(*m.shape[:2], -1)
    has = pos.reshape(*m.shape[:2], -1).any(axis=-1)
    hi = np.where(has, np.nanmax(np.where(np.isnan(flat), -np.inf, flat), axis=-1), 0.0)
    lo = np.where(has, np.nanmin(np.where(np.isnan(flat), np.inf, flat), axis=-1), 0.0)
    lo = np.maximum(lo, hi - LOG_DECADES)
    lo, hi = np.asarray(rounded(lo, 6)), np.asarray(rounded(hi, 6))  # what the page decodes with
    span = np.where(hi > lo, hi - lo, 1.0)[..., None, None]
    t = (np.nan_to_num(logs, nan=0.0) - lo[..., None, None]) / span
    codes = np.where(pos, 1 + np.rint(np.clip(t, 0.0, 1.0) * 254), 0).astype(np.uint8)
    return codes, lo, hi


def _encode(codes: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(codes).tobytes(), 6)).decode()


def pooled_maps(stack: ScanStack, *, side: int = ZOOM_POOL, cells: int = ZOOM_CELLS) -> dict:
    """What the pooled-map grid and its enlarged head read (embed with ``|tojson``).

    Returns ``{"layers", "heads", "n_query", "n_key", "scan_bins", "causal", "thumb", "zoom"}``:
    the scan's own bins a side, whether blocks above the diagonal are masked, then for the
    thumbnails and the enlarged maps each ``{"shape", "rows", "cols", "lo", "hi", "data"}``: row
    and column bin edges, per-head log10 ranges and the zlib-compressed, base64 uint8 codes of
    :func:`log_codes`.
    """
    out: dict[str, Any] = {
        "layers": [int(x) for x in stack.layers],
        "heads": [int(x) for x in stack.heads],
        "n_query": len(stack.query),
        "n_key": len(stack.key),
        "scan_bins": [len(stack.pool_rows) - 1, len(stack.pool_cols) - 1],
        "causal": bool(stack.causal and len(stack.query) == len(stack.key)),
    }
    zoom = repool(
        stack.pooled_mean,
        stack.pool_rows,
        stack.pool_cols,
        zoom_side(stack, side=side, cells=cells),
    )
    thumb = repool(*zoom, THUMB_POOL)  # merging merged bins, weighted by their cells: exact too
    for name, (mean, rows, cols) in (("thumb", thumb), ("zoom", zoom)):
        codes, lo, hi = log_codes(mean)
        out[name] = {
            "shape": [int(x) for x in codes.shape],
            "rows": [int(x) for x in rows],
            "cols": [int(x) for x in cols],
            "lo": lo.tolist(),
            "hi": hi.tolist(),
            "data": _encode(codes),
        }
    return out


__all__ = [
    "LOCAL_DISTANCE",
    "THUMB_POOL",
    "ZOOM_CELLS",
    "ZOOM_POOL",
    "distance_labels",
    "glance_figure",
    "local_share",
    "log_codes",
    "pooled_maps",
    "repool",
    "zoom_side",
]
