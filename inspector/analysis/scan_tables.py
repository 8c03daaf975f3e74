"""Long-context analyses of a scan: head metrics, sinks, top-k keys, and what a row reads.

Pure functions of a :class:`~.scan.ScanStack` returning pandas frames, per-head ones on a
``(layer, head)`` index:

* :func:`scan_head_metrics` - the frame :func:`.metrics.head_metrics` gives for the full map.
* :func:`sink_table` - attention sinks (Xiao et al. 2023, StreamingLLM): per head, the mean
  share on the first ``k`` tokens, on the first token and on the top key (its position and
  token), plus that share among the last quarter of query positions; :func:`sink_curve` gives
  the first-``k`` share as a function of query position (binned), :func:`layer_sinks` per layer.
* :func:`topk_frame` - the top keys of every row as a long frame.
* :func:`context_spans` - for one query position, each head's top keys merged into spans of
  consecutive positions, with their text: what the (last) token reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..capture.types import Tokens
from ..errors import InputError
from .metrics import SINK_COLUMNS
from .scan import ScanStack


def head_index(stack: ScanStack) -> pd.MultiIndex:
    return pd.MultiIndex.from_product(
        [list(stack.layers), list(stack.heads)], names=["layer", "head"]
    )


def scan_head_metrics(stack: ScanStack, names: list[str] | None = None) -> pd.DataFrame:
    """Per-head metrics on ``(layer, head)``: the registered metrics, then the sink columns."""
    chosen = names if names is not None else list(stack.metrics)
    missing = [n for n in chosen if n not in stack.metrics]
    if missing:
        raise InputError(f"metric(s) {missing} were not scanned; scanned: {list(stack.metrics)}")
    frame = pd.DataFrame({n: stack.metrics[n].ravel() for n in chosen}, index=head_index(stack))
    pos, share = stack.sink_arrays()
    frame[SINK_COLUMNS[0]] = pos.ravel().astype(np.int64)
    frame[SINK_COLUMNS[1]] = np.asarray(stack.key.tokens, dtype=object)[pos.ravel()]
    frame[SINK_COLUMNS[2]] = share.ravel()
    return frame


def sink_table(stack: ScanStack) -> pd.DataFrame:
    """Attention sinks per head on ``(layer, head)``.

    Columns: ``first_k_share`` (mean share of a row on the first ``k`` keys), ``to_first``,
    ``sink_pos`` / ``sink_token`` / ``sink_share`` (the key with the most attention and its
    share), ``late_first_k_share`` (the first-``k`` share over the last quarter of the query
    positions, where a sink matters for long inputs) and ``k``.
    """
    pos, share = stack.sink_arrays()
    n_q = stack.n_query
    late = stack.first_share[..., max(0, n_q - max(1, n_q // 4)) :]
    frame = pd.DataFrame(
        {
            "first_k_share": stack.first_share.mean(axis=-1, dtype=np.float64).ravel(),
            "to_first": stack.key_mass[..., 0].ravel(),
            "sink_pos": pos.ravel().astype(np.int64),
            "sink_token": np.asarray(stack.key.tokens, dtype=object)[pos.ravel()],
            "sink_share": share.ravel(),
            "late_first_k_share": late.mean(axis=-1, dtype=np.float64).ravel(),
        },
        index=head_index(stack),
    )
    frame["k"] = stack.sink_tokens
    return frame


def layer_sinks(stack: ScanStack) -> pd.DataFrame:
    """:func:`sink_table` averaged over the heads of each layer (numeric columns)."""
    table = sink_table(stack).drop(columns=["sink_pos", "sink_token"])
    return table.groupby(level="layer").mean()


def sink_curve(stack: ScanStack, bins: int = 32) -> pd.DataFrame:
    """First-``k`` share as a function of query position: a long frame ``layer, head,
    query_start, query_end, first_k_share`` (mean over the rows of each position bin)."""
    if not isinstance(bins, int) or bins < 1:
        raise InputError(f"bins must be a positive integer, got {bins!r}")
    from .scan import pool_edges

    edges = pool_edges(stack.n_query, bins)
    sums = np.add.reduceat(stack.first_share, edges[:-1], axis=-1, dtype=np.float64)
    means = sums / np.diff(edges)
    n_l, n_h, n_b = means.shape
    return pd.DataFrame(
        {
            "layer": np.repeat(np.asarray(stack.layers), n_h * n_b),
            "head": np.tile(np.repeat(np.asarray(stack.heads), n_b), n_l),
            "query_start": np.tile(edges[:-1], n_l * n_h),
            "query_end": np.tile(edges[1:], n_l * n_h),
            "first_k_share": means.ravel(),
        }
    )


def topk_frame(stack: ScanStack) -> pd.DataFrame:
    """The top keys of every row: ``layer, head, query_pos, key_pos, weight`` (best first;
    slots past what a causal row sees are left out)."""
    if stack.topk_pos is None or stack.topk_weight is None:
        raise InputError("this scan kept no top-k keys; scan with topk=K")
    n_l, n_h, n_q, k = stack.topk_pos.shape
    keep = stack.topk_pos >= 0
    # the kept slots' columns, built at their final length: no full-length column is made and
    # then filtered (TOPK_ROW_BYTES a row, and the mask)
    per_row = keep.reshape(-1, k).sum(axis=1)  # (layer * head * query,)
    per_head = per_row.reshape(n_l * n_h, n_q).sum(axis=1)
    heads = np.tile(np.asarray(stack.heads, dtype=np.int16), n_l)
    return pd.DataFrame(
        {
            "layer": np.repeat(
                np.asarray(stack.layers, dtype=np.int16), per_head.reshape(n_l, n_h).sum(axis=1)
            ),
            "head": np.repeat(heads, per_head),
            "query_pos": np.repeat(np.tile(np.arange(n_q, dtype=np.int32), n_l * n_h), per_row),
            "key_pos": stack.topk_pos[keep],
            "weight": stack.topk_weight[keep],
        },
        copy=False,
    )


def span_text(tokens: Tokens, start: int, end: int) -> str:
    """The text of tokens ``start .. end-1``: from the source text through character offsets
    where they are known, else the readable tokens joined."""
    offsets = tokens.offsets[start:end]
    seq = tokens.sequence_ids[start:end]
    known = (offsets >= 0).all(axis=1) & (seq >= 0)
    if known.any() and tokens.texts:
        text_i = int(seq[known][0])
        if text_i < len(tokens.texts):
            lo, hi = int(offsets[known, 0].min()), int(offsets[known, 1].max())
            return tokens.texts[text_i][lo:hi]
    readable = tokens.readable or tokens.tokens
    return "".join(readable[start:end]).replace("␣", " ")


def merge_spans(positions: np.ndarray, weights: np.ndarray) -> list[tuple[int, int, float]]:
    """Consecutive positions merged into ``(start, end, summed weight)`` spans, heaviest first."""
    order = np.argsort(positions)
    pos, w = positions[order], weights[order]
    spans: list[tuple[int, int, float]] = []
    for p, v in zip(pos.tolist(), w.tolist(), strict=True):
        if spans and p == spans[-1][1]:
            s, _, total = spans[-1]
            spans[-1] = (s, p + 1, total + v)
        else:
            spans.append((p, p + 1, v))
    return sorted(spans, key=lambda s: (-s[2], s[0]))


def context_spans(stack: ScanStack, position: int = -1, k: int = 8) -> pd.DataFrame:
    """What query ``position`` reads: each head's top ``k`` keys merged into spans.

    Returns:
        A long frame ``layer, head, rank, start, end, weight, text``: span ``start .. end-1``
        (key positions), its summed weight and its text; heaviest span first per head.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    n_q = stack.n_query
    p = position + n_q if position < 0 else position
    if p not in stack.row_positions:
        raise InputError(
            f"query position {position} was not kept; this scan kept rows "
            f"{list(stack.row_positions)}: scan with rows=[{position}]"
        )
    rows = stack.rows[:, :, stack.row_positions.index(p)]
    n_k = rows.shape[-1]
    kk = min(k, n_k)
    records = []
    for li, layer in enumerate(stack.layers):
        for hi, head in enumerate(stack.heads):
            row = rows[li, hi]
            top = np.argpartition(row, n_k - kk)[n_k - kk :]
            top = top[row[top] > 0]
            for rank, (s, e, w) in enumerate(merge_spans(top, row[top])):
                records.append((layer, head, rank, s, e, w, span_text(stack.key, s, e)))
    return pd.DataFrame(
        records, columns=["layer", "head", "rank", "start", "end", "weight", "text"]
    )


__all__ = [
    "context_spans",
    "head_index",
    "layer_sinks",
    "merge_spans",
    "scan_head_metrics",
    "sink_curve",
    "sink_table",
    "span_text",
    "topk_frame",
]
