"""Row forms of the built-in head metrics: each metric, a block of query rows at a time.

Every built-in metric of :mod:`.metrics` is the mean, over (some of) the query rows, of a
per-row value. Its row form computes those values for a block of rows ``(head, rows, key)`` at
query ``positions``, and says which rows count; a bounded scan sums them block by block and
divides by the number of counted rows at the end, which gives the same number as the metric on
the whole ``(query, key)`` map (tested to 1e-6). Same definitions, same dtypes: the row forms
reuse the metrics' own helpers.

A causal block may come narrowed to its first ``block.shape[-1]`` keys (the rest of its rows
is exactly 0): row forms read the key count from the block, not from ``ctx.n_key``.

Pure numpy; a metric registered with ``register_metric(..., rows=fn)`` brings its own.
"""

from __future__ import annotations

import numpy as np

from . import metrics as _m
from .metrics import Metric, MetricContext, RowFn

RowResult = tuple[np.ndarray, np.ndarray | None] | None


def _all(values: np.ndarray) -> RowResult:
    return values, None


def entropy(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(_m.entropy_rows(block))


def entropy_norm(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    visible = ctx.visible()[positions]
    rows = visible > 1
    denom = np.log(np.where(rows, visible, 2)).astype(np.float64)
    return _m.entropy_rows(block) / denom, rows


def max_weight(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(block.max(axis=-1))


def mean_distance(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    if not ctx.aligned:
        return None
    keys = np.arange(block.shape[-1], dtype=np.float32)
    dist = np.abs(positions.astype(np.float32)[:, None] - keys[None, :])
    return _all(np.einsum("hqk,qk->hq", block, dist))


def _diagonal(offset: int) -> RowFn:
    def fn(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
        if not ctx.aligned:
            return None
        k = positions + offset
        rows = (k >= 0) & (k < ctx.n_key)
        if ctx.causal:
            rows &= k <= positions
        cols = np.clip(k, 0, block.shape[-1] - 1)
        rows &= k < block.shape[-1]  # only a causal block is narrowed, and it hides k > row
        return block[:, np.arange(len(positions)), cols], rows

    return fn


def to_first(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(block[..., ctx.first])


def _mass(mask: np.ndarray, block: np.ndarray) -> np.ndarray:
    mask = mask[: block.shape[-1]]
    if not mask.any():
        return np.zeros(block.shape[:2])
    return block[..., mask].sum(axis=-1, dtype=np.float64)


def to_special(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(_mass(ctx.key_special, block))


def to_sep(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(_mass(ctx.key_sep, block)) if ctx.has_sep else None


def to_punct(block: np.ndarray, ctx: MetricContext, positions: np.ndarray) -> RowResult:
    return _all(_mass(ctx.key_punct, block))


#: Built-in metric name -> (its whole-map function, its row form).
BUILTIN_ROWS: dict[str, tuple[_m.MetricFn, RowFn]] = {
    "entropy": (_m.entropy, entropy),
    "entropy_norm": (_m.entropy_norm, entropy_norm),
    "max_weight": (_m.max_weight, max_weight),
    "mean_distance": (_m.mean_distance, mean_distance),
    "to_self": (_m.to_self, _diagonal(0)),
    "to_prev": (_m.to_prev, _diagonal(-1)),
    "to_next": (_m.to_next, _diagonal(1)),
    "to_first": (_m.to_first, to_first),
    "to_special": (_m.to_special, to_special),
    "to_sep": (_m.to_sep, to_sep),
    "to_punct": (_m.to_punct, to_punct),
}


def evaluate(
    forms: dict[str, RowFn], block: np.ndarray, ctx: MetricContext, positions: np.ndarray
) -> dict[str, RowResult]:
    """Every row form in ``forms`` on one block; the built-in entropy forms share one pass of
    :func:`~.metrics.entropy_rows` (the costliest part of a block: a log of every weight)."""
    out: dict[str, RowResult] = {}
    ent: np.ndarray | None = None
    for name, fn in forms.items():
        if fn is entropy or fn is entropy_norm:
            if ent is None:
                ent = _m.entropy_rows(block)
            if fn is entropy:
                out[name] = (ent, None)
            else:
                visible = ctx.visible()[positions]
                rows = visible > 1
                out[name] = (ent / np.log(np.where(rows, visible, 2)).astype(np.float64), rows)
        else:
            out[name] = fn(block, ctx, positions)
    return out


def row_form(metric: Metric) -> RowFn | None:
    """The row form of a registered metric: its own ``rows``, or the built-in one when the
    metric is still the built-in function (a metric replaced under a built-in name has none)."""
    if metric.rows is not None:
        return metric.rows
    builtin = BUILTIN_ROWS.get(metric.name)
    if builtin is not None and builtin[0] is metric.fn:
        return builtin[1]
    return None


__all__ = ["BUILTIN_ROWS", "RowResult", "evaluate", "row_form"]
