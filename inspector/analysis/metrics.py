"""Per-head metrics and their registry: pure functions of a captured attention stack.

Nothing here runs a model or renders anything. Every metric is a function
``fn(weights, ctx) -> (layer, head)`` of the weights ``(layer, head, query, key)`` of one
:class:`~inspector.capture.types.AttentionStack` and a :class:`MetricContext` describing its
tokens. Metrics live in a registry (:data:`METRICS`, :func:`register_metric`,
:func:`list_metrics`) whose :class:`Metric` entries carry a display label and the bounds of
their values (reports label axes with them; the corpus atlas bins bounded metrics linearly).

Definitions (natural log, ``0 ln 0 = 0``; ``α`` is an attention row; each metric is the mean over
the query rows ``i`` of one input):

``entropy``        ``-Σ_j α_ij ln α_ij``
``entropy_norm``   entropy / ln(number of keys row ``i`` can see); rows that see one key are skipped
``max_weight``     ``max_j α_ij``
``mean_distance``  ``Σ_j α_ij |i - j|``
``to_self``        ``α_ii``
``to_prev``        ``α_i,i-1`` over rows ``i >= 1``
``to_next``        ``α_i,i+1`` over rows with a visible next key (NaN for causal attention)
``to_first``       ``α_i,0``
``to_special``     mass on special tokens (``[CLS]``, ``</s>``, ...)
``to_sep``         mass on separator tokens; NaN where the input has none (see below)
``to_punct``       mass on punctuation tokens

Besides the registry, :func:`head_metrics` adds the *sink*: the key position receiving the most
attention over all the head's rows (``sink_pos``, ``sink_token``) and its share of the head's total
attention (``sink_share``, in [0, 1]).

Cross attention (queries are decoder tokens, keys encoder tokens) has no shared positions:
``to_self``, ``to_prev``, ``to_next`` and ``mean_distance`` are NaN there, and the detectors'
previous-token score is NaN too. All other metrics are defined as usual.

Separators are detected from the tokens, not hard-coded: a separator is a special token that
follows a non-special token (``[SEP]`` in BERT, ``</s>`` in RoBERTa/BART/T5). A leading ``[CLS]``
or ``<s>`` is special but not a separator. Pass ``sep_ids=`` to :meth:`MetricContext.from_stack`
to use the tokenizer's own ``sep_token_id`` instead.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .._registry import Registry
from ..capture.types import AttentionStack, Tokens, strip_marker
from ..errors import InputError, InspectorError

MetricFn = Callable[[np.ndarray, "MetricContext"], np.ndarray]
"""A metric: ``fn(weights (layer, head, query, key), ctx) -> (layer, head)`` float array."""
RowFn = Callable[
    [np.ndarray, "MetricContext", np.ndarray], "tuple[np.ndarray, np.ndarray | None] | None"
]
"""A metric's row form (for bounded scans, see :mod:`inspector.analysis.rowmetrics`):
``fn(block (head, rows, key), ctx, positions (rows,)) -> (values (head, rows), included (rows,)
or None for all)``, or ``None`` when the metric is NaN for this attention; the metric is the
mean of the included values over all rows."""

#: Columns :func:`head_metrics` adds after the registered numeric metrics.
SINK_COLUMNS = ("sink_pos", "sink_token", "sink_share")
_TINY = np.float32(1e-30)
INF = float("inf")


# --------------------------------------------------------------------------- context


def punctuation_mask(tokens: Tokens) -> np.ndarray:
    """True for non-special tokens made only of Unicode punctuation (``.``, ``,``, ``"``, ...)."""
    out = np.zeros(len(tokens), dtype=bool)
    for i, tok in enumerate(tokens.tokens):
        text = strip_marker(tok).strip()
        if text and not tokens.special[i]:
            out[i] = all(unicodedata.category(c).startswith("P") for c in text)
    return out


def separator_mask(tokens: Tokens, sep_ids: Iterable[int] | None = None) -> np.ndarray:
    """True for separator tokens.

    With ``sep_ids`` (e.g. ``[tokenizer.sep_token_id]``) those ids are separators. Otherwise a
    separator is a special token directly after a non-special one, plus every other occurrence of
    such an id (RoBERTa's ``</s></s>`` pair): ``[SEP]`` in BERT, ``</s>`` in RoBERTa/BART/T5.
    """
    special = np.asarray(tokens.special, dtype=bool)
    if sep_ids is not None:
        return np.isin(tokens.ids, np.asarray(list(sep_ids), dtype=np.int64)) & special
    closes = special[1:] & ~special[:-1]
    ids = tokens.ids[1:][closes]
    return np.isin(tokens.ids, ids) & special


@dataclass(frozen=True, eq=False)
class MetricContext:
    """What a metric needs to know about the tokens of one attention stack.

    Attributes:
        n_query, n_key: number of query rows and key columns.
        key_special: ``(key,)`` True for special key tokens.
        key_punct: ``(key,)`` True for punctuation key tokens.
        key_sep: ``(key,)`` True for separator key tokens (all False where there is none).
        has_sep: whether the key sequence contains a separator.
        causal: True when query ``i`` sees keys ``0..i`` only.
        aligned: True when query and key index the same sequence (self-attention); False for
            cross attention, where positional metrics are NaN.
        first: the key position ``to_first`` measures (0).
        query_ids, key_ids: token ids, for the duplicate-token and induction detectors.
        query_special: ``(query,)`` True for special query tokens.
        key_tokens: key token strings (for naming sinks).
    """

    n_query: int
    n_key: int
    key_special: np.ndarray
    key_punct: np.ndarray
    key_sep: np.ndarray
    has_sep: bool
    causal: bool
    aligned: bool
    first: int
    query_ids: np.ndarray
    key_ids: np.ndarray
    query_special: np.ndarray
    key_tokens: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in ("key_special", "key_punct", "key_sep", "key_ids"):
            if np.shape(getattr(self, name)) != (self.n_key,):
                raise InputError(f"MetricContext.{name} must have shape ({self.n_key},)")
        for name in ("query_ids", "query_special"):
            if np.shape(getattr(self, name)) != (self.n_query,):
                raise InputError(f"MetricContext.{name} must have shape ({self.n_query},)")
        if not 0 <= self.first < self.n_key:
            raise InputError(f"MetricContext.first={self.first} is not a key position")

    @classmethod
    def from_tokens(
        cls,
        query: Tokens,
        key: Tokens | None = None,
        *,
        causal: bool = False,
        sep_ids: Iterable[int] | None = None,
    ) -> MetricContext:
        """Context for attention from ``query`` tokens to ``key`` tokens (default: the same)."""
        aligned = key is None or key is query
        key = query if key is None else key
        sep = separator_mask(key, sep_ids)
        return cls(
            n_query=len(query),
            n_key=len(key),
            key_special=np.asarray(key.special, dtype=bool),
            key_punct=punctuation_mask(key),
            key_sep=sep,
            has_sep=bool(sep.any()),
            causal=bool(causal and aligned),
            aligned=aligned,
            first=0,
            query_ids=np.asarray(query.ids),
            key_ids=np.asarray(key.ids),
            query_special=np.asarray(query.special, dtype=bool),
            key_tokens=tuple(key.tokens),
        )

    @classmethod
    def from_stack(
        cls, stack: AttentionStack, *, sep_ids: Iterable[int] | None = None
    ) -> MetricContext:
        """Context of one captured stack (cross attention is not aligned)."""
        if not isinstance(stack, AttentionStack):
            raise InputError(f"expected an AttentionStack, got {type(stack).__name__}")
        aligned = stack.kind != "cross" and len(stack.query) == len(stack.key)
        ctx = cls.from_tokens(stack.query, stack.key, sep_ids=sep_ids)
        return replace(ctx, aligned=aligned, causal=bool(stack.causal and aligned))

    def visible(self) -> np.ndarray:
        """``(query,)`` number of keys each query row can see."""
        if self.causal:
            return np.minimum(np.arange(1, self.n_query + 1), self.n_key)
        return np.full(self.n_query, self.n_key)


# --------------------------------------------------------------------------- metric functions


def _mean_rows(values: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Mean over the last axis (query rows), optionally only the ``rows`` selected."""
    if rows is not None:
        if not rows.any():
            return np.full(values.shape[:-1], np.nan)
        values = values[..., rows]
    return values.mean(axis=-1, dtype=np.float64)


def nan_heads(weights: np.ndarray) -> np.ndarray:
    return np.full(weights.shape[:2], np.nan)


def entropy_rows(weights: np.ndarray) -> np.ndarray:
    """Entropy (nats) of every attention row: ``(..., query, key) -> (..., query)``, float64.

    One ``log`` pass and a fused multiply-sum (``einsum``, accumulated in the weights' dtype:
    float32 rows of 512 keys are within 1e-5 of a float64 sum); ``0 ln 0 = 0``.
    """
    w = np.asarray(weights)
    logs = np.maximum(w, _TINY)
    np.log(logs, out=logs)
    return -np.einsum("...k,...k->...", w, logs).astype(np.float64)


def entropy(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean row entropy in nats."""
    return _mean_rows(entropy_rows(weights))


def entropy_norm(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean of row entropy / ln(keys visible to the row), over rows that see 2 keys or more."""
    visible = ctx.visible()
    rows = visible > 1
    denom = np.log(np.where(rows, visible, 2)).astype(np.float64)
    return _mean_rows(entropy_rows(weights) / denom, rows)


def max_weight(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean of each row's largest weight."""
    return _mean_rows(weights.max(axis=-1))


def mean_distance(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean attended distance ``Σ_j α_ij |i - j|`` in tokens (NaN for cross attention)."""
    if not ctx.aligned:
        return nan_heads(weights)
    dist = np.abs(
        np.arange(ctx.n_query, dtype=np.float32)[:, None]
        - np.arange(ctx.n_key, dtype=np.float32)[None, :]
    )
    return _mean_rows(np.einsum("lhqk,qk->lhq", weights, dist))


def _diagonal(weights: np.ndarray, ctx: MetricContext, offset: int) -> np.ndarray:
    """Mean of ``α_i,i+offset`` over the rows where that key exists and is visible."""
    if not ctx.aligned:
        return nan_heads(weights)
    q = np.arange(ctx.n_query)
    k = q + offset
    rows = (k >= 0) & (k < ctx.n_key)
    if ctx.causal:
        rows &= k <= q
    if not rows.any():
        return nan_heads(weights)
    return weights[..., q[rows], k[rows]].mean(axis=-1, dtype=np.float64)


def to_self(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean weight on the query's own position ``α_ii``."""
    return _diagonal(weights, ctx, 0)


def to_prev(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean weight on the previous position ``α_i,i-1`` (rows ``i >= 1``)."""
    return _diagonal(weights, ctx, -1)


def to_next(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean weight on the next position ``α_i,i+1`` (NaN when no row sees its next key)."""
    return _diagonal(weights, ctx, 1)


def to_first(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean weight on key position 0."""
    return _mean_rows(weights[..., ctx.first])


def _mass(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return np.zeros(weights.shape[:2])
    return _mean_rows(weights[..., mask].sum(axis=-1, dtype=np.float64))


def to_special(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean attention mass on special tokens."""
    return _mass(weights, ctx.key_special)


def to_sep(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean attention mass on separator tokens (NaN where the input has no separator)."""
    return _mass(weights, ctx.key_sep) if ctx.has_sep else nan_heads(weights)


def to_punct(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean attention mass on punctuation tokens (0 where the input has none)."""
    return _mass(weights, ctx.key_punct)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Metric:
    """One registered head metric.

    Attributes:
        name: the column name (a Python identifier).
        fn: ``fn(weights (layer, head, query, key), ctx) -> (layer, head)``.
        label: how reports name it (axis titles, panel titles).
        bounds: ``(low, high)`` every value lies in (``inf`` for unbounded), or ``None`` when
            unknown; ``(0, 1)`` marks a share of attention.
        rows: the metric's row form (:data:`RowFn`), which lets a bounded scan compute it a
            block of query rows at a time; built-in metrics have theirs in
            :mod:`inspector.analysis.rowmetrics`.
    """

    name: str
    fn: MetricFn
    label: str
    bounds: tuple[float, float] | None = None
    rows: RowFn | None = None

    def __call__(self, weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
        return self.fn(weights, ctx)

    @property
    def is_share(self) -> bool:
        """True for metrics bounded by [0, 1] (attention fractions, normalised entropy)."""
        return self.bounds == (0.0, 1.0)


_UNIT = (0.0, 1.0)
METRICS: Registry[Metric] = Registry(
    "metric",
    {
        m.name: m
        for m in (
            Metric("entropy", entropy, "entropy (nats)", (0.0, INF)),
            Metric("entropy_norm", entropy_norm, "normalised entropy", _UNIT),
            Metric("max_weight", max_weight, "max weight", _UNIT),
            Metric("mean_distance", mean_distance, "mean distance (tokens)", (0.0, INF)),
            Metric("to_self", to_self, "to self", _UNIT),
            Metric("to_prev", to_prev, "to previous", _UNIT),
            Metric("to_next", to_next, "to next", _UNIT),
            Metric("to_first", to_first, "to first token", _UNIT),
            Metric("to_special", to_special, "to special tokens", _UNIT),
            Metric("to_sep", to_sep, "to separators", _UNIT),
            Metric("to_punct", to_punct, "to punctuation", _UNIT),
        )
    },
)
"""Registered numeric metrics, name -> :class:`Metric`. Extend with :func:`register_metric`."""


def _sink_share_metric(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    return sink_arrays(weights)[1]


#: The share of a head's attention on its top key (:func:`sink_arrays`); a column of every
#: :func:`head_metrics` frame, described like a registered metric but not one of them.
SINK_SHARE = Metric("sink_share", _sink_share_metric, "sink share", _UNIT)


def list_metrics() -> list[str]:
    """Names of the registered numeric metrics, in column order."""
    return list(METRICS)


def describe_metric(name: str) -> Metric | None:
    """The registry entry of ``name`` (or :data:`SINK_SHARE`); ``None`` for unknown names."""
    return SINK_SHARE if name == SINK_SHARE.name else METRICS.get(name)


def register_metric(
    name: str,
    fn: MetricFn,
    *,
    label: str | None = None,
    bounds: tuple[float, float] | None = None,
    overwrite: bool = False,
    rows: RowFn | None = None,
) -> None:
    """Add a metric ``fn(weights, ctx) -> (layer, head)`` under ``name``.

    Args:
        name: the column name, a Python identifier.
        fn: the metric function.
        label: how reports name it (default: ``name``).
        bounds: ``(low, high)`` of its values (``(0, 1)`` for a share of attention).
        overwrite: replace a metric of the same name.
        rows: its row form (:data:`RowFn`) for bounded scans; without one, a scan computes it
            from whole layers on the eager path and reports NaN on the blockwise path.

    Example:
        >>> register_metric("to_last", lambda w, ctx: w[..., -1].mean(-1),
        ...                 label="to last token", bounds=(0, 1))  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"a metric name must be a Python identifier, got {name!r}")
    if name in SINK_COLUMNS or name == "n" or name.endswith("_std"):
        raise InputError(f"{name!r} is reserved for a column of head_metrics(); choose another")
    if not callable(fn):
        raise InputError(f"metric {name!r} must be callable, got {type(fn).__name__}")
    if bounds is not None:
        if len(bounds) != 2 or not float(bounds[0]) <= float(bounds[1]):
            raise InputError(f"bounds must be (low, high) with low <= high, got {bounds!r}")
        bounds = (float(bounds[0]), float(bounds[1]))
    if rows is not None and not callable(rows):
        raise InputError(f"metric {name!r}: rows= must be callable, got {type(rows).__name__}")
    METRICS.register(name, Metric(name, fn, label or name, bounds, rows), overwrite=overwrite)


def _names(names: Sequence[str] | str | None) -> list[str]:
    if names is None:
        return list(METRICS)
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise InputError(f"unknown metric {unknown[0]!r}; registered metrics: {list(METRICS)}")
    return list(dict.fromkeys(names))


def compute_metric_arrays(
    stack: AttentionStack,
    names: Sequence[str] | str | None = None,
    *,
    ctx: MetricContext | None = None,
) -> dict[str, np.ndarray]:
    """Every requested numeric metric of ``stack`` as a ``(layer, head)`` float64 array.

    Metrics run one layer at a time (``weights`` of shape ``(1, head, query, key)``), so their
    temporaries (a float copy for the entropy's logarithm, masked columns) follow one layer,
    not the whole stack (:func:`metric_bytes`).
    """
    ctx = ctx or MetricContext.from_stack(stack)
    w = stack.weights
    chosen = _names(names)
    out = {name: np.empty(w.shape[:2]) for name in chosen}
    for li in range(w.shape[0]):
        layer = w[li : li + 1]
        for name in chosen:
            value = np.asarray(METRICS[name](layer, ctx), dtype=np.float64)
            if value.shape != layer.shape[:2]:
                raise InspectorError(
                    f"metric {name!r} returned shape {value.shape} for one layer; a metric must "
                    f"return (layer, head) = {layer.shape[:2]}"
                )
            out[name][li] = value[0]
    return out


def metric_bytes(n_heads: int, n_query: int, n_key: int) -> int:
    """Bytes the metrics allocate at once (one layer: the entropy's float copy and einsum,
    masked columns and a float64 row reduction, at most three such maps)."""
    return 3 * n_heads * n_query * n_key * 4


def sink_arrays(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sink_pos, sink_share)``, each ``(layer, head)``: the key with the most total attention."""
    column = weights.mean(axis=2, dtype=np.float64)  # (layer, head, key), sums to 1 per head
    pos = column.argmax(axis=-1)
    return pos, np.take_along_axis(column, pos[..., None], axis=-1)[..., 0]


def head_index(stack: AttentionStack) -> pd.MultiIndex:
    """The ``(layer, head)`` MultiIndex of a stack's heads: the index of every per-head frame."""
    return pd.MultiIndex.from_product(
        [list(stack.layers), list(stack.heads)], names=["layer", "head"]
    )


def head_metrics(
    stack: AttentionStack,
    names: Sequence[str] | str | None = None,
    *,
    ctx: MetricContext | None = None,
) -> pd.DataFrame:
    """Per-head metrics of one input: a frame indexed by ``(layer, head)``.

    Columns: the registered metrics (or ``names``), then ``sink_pos``, ``sink_token`` and
    ``sink_share``.

    Example:
        >>> head_metrics(ins.stack).sort_values("to_prev").tail(3)  # doctest: +SKIP
    """
    arrays = compute_metric_arrays(stack, names, ctx=ctx)
    frame = pd.DataFrame({k: v.ravel() for k, v in arrays.items()}, index=head_index(stack))
    pos, share = sink_arrays(stack.weights)
    frame["sink_pos"] = pos.ravel().astype(np.int64)
    frame["sink_token"] = np.asarray(stack.key.tokens, dtype=object)[pos.ravel()]
    frame["sink_share"] = share.ravel()
    return frame


def check_same_heads(first: AttentionStack, other: AttentionStack) -> None:
    if (first.layers, first.heads, first.kind) != (other.layers, other.heads, other.kind):
        raise InputError(
            "all inputs must come from the same model, attention kind and layer/head selection; "
            f"got {first.kind} {len(first.layers)}x{len(first.heads)} and "
            f"{other.kind} {len(other.layers)}x{len(other.heads)}"
        )


def aggregate_head_metrics(
    stacks: Iterable[AttentionStack], names: Sequence[str] | str | None = None
) -> pd.DataFrame:
    """Per-head metrics averaged over many inputs (of one model and attention kind).

    Columns: each metric's mean over inputs (NaN inputs skipped) under its own name, the sink
    columns (``sink_pos`` / ``sink_token``: the most frequent one; ``sink_share``: the mean), then
    ``<metric>_std`` (sample standard deviation, ddof=1) for every numeric column, and ``n``, the
    number of inputs. The mean columns have the same names as :func:`head_metrics`'s, so roles and
    plots work on either frame.
    """
    names = _names(names)
    first: AttentionStack | None = None
    values: dict[str, list[np.ndarray]] = {n: [] for n in [*names, "sink_share"]}
    sink_tokens: list[np.ndarray] = []
    sink_pos: list[np.ndarray] = []
    for stack in stacks:
        if first is None:
            first = stack
        else:
            check_same_heads(first, stack)
        for name, arr in compute_metric_arrays(stack, names).items():
            values[name].append(arr)
        pos, share = sink_arrays(stack.weights)
        values["sink_share"].append(share)
        sink_pos.append(pos)
        sink_tokens.append(np.asarray(stack.key.tokens, dtype=object)[pos])
    if first is None:
        raise InputError("no inputs to average over; give at least one text")
    n = len(sink_pos)
    frame = pd.DataFrame(index=head_index(first))
    stds: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN heads and n == 1
        for name in names:
            arr = np.stack(values[name])
            frame[name] = np.nanmean(arr, axis=0).ravel()
            stds[name] = (
                np.nanstd(arr, axis=0, ddof=1).ravel() if n > 1 else np.full(arr[0].size, np.nan)
            )
        shares = np.stack(values["sink_share"])
        stds["sink_share"] = (
            shares.std(axis=0, ddof=1).ravel() if n > 1 else np.full(shares[0].size, np.nan)
        )
    frame["sink_pos"] = _mode(np.stack(sink_pos).reshape(n, -1)).astype(np.int64)
    frame["sink_token"] = _mode(np.stack(sink_tokens).reshape(n, -1))
    frame["sink_share"] = shares.mean(axis=0).ravel()
    for name, std in stds.items():
        frame[f"{name}_std"] = std
    frame["n"] = n
    return frame


def _mode(values: np.ndarray) -> np.ndarray:
    """Most frequent value of each column of ``(n, m)`` (ties: the first seen)."""
    return np.asarray(
        [pd.Series(values[:, j]).value_counts(sort=True).index[0] for j in range(values.shape[1])],
        dtype=values.dtype,
    )


__all__ = [
    "METRICS",
    "SINK_COLUMNS",
    "SINK_SHARE",
    "Metric",
    "MetricContext",
    "MetricFn",
    "RowFn",
    "aggregate_head_metrics",
    "check_same_heads",
    "compute_metric_arrays",
    "describe_metric",
    "entropy_rows",
    "head_index",
    "head_metrics",
    "list_metrics",
    "metric_bytes",
    "nan_heads",
    "punctuation_mask",
    "register_metric",
    "separator_mask",
    "sink_arrays",
]
