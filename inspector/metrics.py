"""Per-head metrics, head roles, detectors and head-to-head distances: pure functions of a capture.

Nothing here runs a model or renders anything. Every metric is a function
``fn(weights, ctx) -> (layer, head)`` of the weights ``(layer, head, query, key)`` of one
:class:`~inspector.capture.AttentionStack` and a :class:`MetricContext` describing its tokens.
Metrics live in a registry (:data:`METRICS`, :func:`register_metric`, :func:`list_metrics`).

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
from dataclasses import dataclass, fields, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from .capture import AttentionStack, Tokens
from .errors import InputError, InspectorError

MetricFn = Callable[[np.ndarray, "MetricContext"], np.ndarray]
"""A metric: ``fn(weights (layer, head, query, key), ctx) -> (layer, head)`` float array."""

#: Columns :func:`head_metrics` adds after the registered numeric metrics.
SINK_COLUMNS = ("sink_pos", "sink_token", "sink_share")
#: Head roles, in the order they are reported. ``other`` is a head without any role.
ROLES = ("previous", "next", "self", "sink", "broad", "punctuation", "other")
#: The metric that scores each role.
ROLE_SCORES = {
    "previous": "to_prev",
    "next": "to_next",
    "self": "to_self",
    "sink": "sink_share",
    "broad": "entropy_norm",
    "punctuation": "to_punct",
}
DETECTORS = ("previous_token", "duplicate_token", "induction")
_TINY = np.float32(1e-30)
_LN2 = float(np.log(2.0))
#: Pair elements (pairs x query x key) from which head_distances("js") uses 2 threads by default.
_JS_THREADED_ELEMENTS = 1 << 24


# --------------------------------------------------------------------------- context


def _strip_marker(token: str) -> str:
    return token.replace("##", "").replace("Ġ", "").replace("▁", "").strip()


def punctuation_mask(tokens: Tokens) -> np.ndarray:
    """True for non-special tokens made only of Unicode punctuation (``.``, ``,``, ``"``, ...)."""
    out = np.zeros(len(tokens), dtype=bool)
    for i, tok in enumerate(tokens.tokens):
        text = _strip_marker(tok)
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


def _nan(weights: np.ndarray) -> np.ndarray:
    return np.full(weights.shape[:2], np.nan)


def _xlogx_rows(x: np.ndarray) -> np.ndarray:
    """``Σ_k x ln x`` over the last axis, with ``0 ln 0 = 0`` (float64 sum)."""
    return (x * np.log(np.maximum(x, _TINY))).sum(axis=-1, dtype=np.float64)


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
        return _nan(weights)
    dist = np.abs(
        np.arange(ctx.n_query, dtype=np.float32)[:, None]
        - np.arange(ctx.n_key, dtype=np.float32)[None, :]
    )
    return _mean_rows(np.einsum("lhqk,qk->lhq", weights, dist))


def _diagonal(weights: np.ndarray, ctx: MetricContext, offset: int) -> np.ndarray:
    """Mean of ``α_i,i+offset`` over the rows where that key exists and is visible."""
    if not ctx.aligned:
        return _nan(weights)
    q = np.arange(ctx.n_query)
    k = q + offset
    rows = (k >= 0) & (k < ctx.n_key)
    if ctx.causal:
        rows &= k <= q
    if not rows.any():
        return _nan(weights)
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
    return _mass(weights, ctx.key_sep) if ctx.has_sep else _nan(weights)


def to_punct(weights: np.ndarray, ctx: MetricContext) -> np.ndarray:
    """Mean attention mass on punctuation tokens (0 where the input has none)."""
    return _mass(weights, ctx.key_punct)


# --------------------------------------------------------------------------- registry

METRICS: dict[str, MetricFn] = {
    "entropy": entropy,
    "entropy_norm": entropy_norm,
    "max_weight": max_weight,
    "mean_distance": mean_distance,
    "to_self": to_self,
    "to_prev": to_prev,
    "to_next": to_next,
    "to_first": to_first,
    "to_special": to_special,
    "to_sep": to_sep,
    "to_punct": to_punct,
}
"""Registered numeric metrics, name -> function. Extend with :func:`register_metric`."""


def list_metrics() -> list[str]:
    """Names of the registered numeric metrics, in column order."""
    return list(METRICS)


def register_metric(name: str, fn: MetricFn, *, overwrite: bool = False) -> None:
    """Add a metric ``fn(weights, ctx) -> (layer, head)`` under ``name``.

    Example:
        >>> register_metric("to_last", lambda w, ctx: w[..., -1].mean(-1))  # doctest: +SKIP
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"a metric name must be a Python identifier, got {name!r}")
    if name in SINK_COLUMNS or name == "n" or name.endswith("_std"):
        raise InputError(f"{name!r} is reserved for a column of head_metrics(); choose another")
    if not callable(fn):
        raise InputError(f"metric {name!r} must be callable, got {type(fn).__name__}")
    if name in METRICS and not overwrite:
        raise InputError(f"metric {name!r} is already registered; pass overwrite=True to replace")
    METRICS[name] = fn


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
    """Every requested numeric metric of ``stack`` as a ``(layer, head)`` float64 array."""
    ctx = ctx or MetricContext.from_stack(stack)
    w = stack.weights
    out: dict[str, np.ndarray] = {}
    for name in _names(names):
        value = np.asarray(METRICS[name](w, ctx), dtype=np.float64)
        if value.shape != w.shape[:2]:
            raise InspectorError(
                f"metric {name!r} returned shape {value.shape}; a metric must return "
                f"(layer, head) = {w.shape[:2]}"
            )
        out[name] = value
    return out


def sink_arrays(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sink_pos, sink_share)``, each ``(layer, head)``: the key with the most total attention."""
    column = weights.mean(axis=2, dtype=np.float64)  # (layer, head, key), sums to 1 per head
    pos = column.argmax(axis=-1)
    return pos, np.take_along_axis(column, pos[..., None], axis=-1)[..., 0]


def _index(stack: AttentionStack) -> pd.MultiIndex:
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
    frame = pd.DataFrame({k: v.ravel() for k, v in arrays.items()}, index=_index(stack))
    pos, share = sink_arrays(stack.weights)
    frame["sink_pos"] = pos.ravel().astype(np.int64)
    frame["sink_token"] = np.asarray(stack.key.tokens, dtype=object)[pos.ravel()]
    frame["sink_share"] = share.ravel()
    return frame


def _check_same_heads(first: AttentionStack, other: AttentionStack) -> None:
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
            _check_same_heads(first, stack)
        for name, arr in compute_metric_arrays(stack, names).items():
            values[name].append(arr)
        pos, share = sink_arrays(stack.weights)
        values["sink_share"].append(share)
        sink_pos.append(pos)
        sink_tokens.append(np.asarray(stack.key.tokens, dtype=object)[pos])
    if first is None:
        raise InputError("no inputs to average over; give at least one text")
    n = len(sink_pos)
    frame = pd.DataFrame(index=_index(first))
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


# --------------------------------------------------------------------------- roles


@dataclass(frozen=True)
class RoleThresholds:
    """When a head takes a role (all overridable, e.g. ``RoleThresholds(sink=0.8)``).

    Attributes:
        previous, next, self: share of attention on the previous / next / own position.
        sink: share of the head's total attention going to one key position (the sink).
        broad: normalised entropy (``entropy_norm``) above which a head spreads its attention.
        punctuation: share of attention on punctuation tokens.
    """

    previous: float = 0.5
    next: float = 0.5
    self: float = 0.5
    sink: float = 0.6
    broad: float = 0.85
    punctuation: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InputError(f"threshold {f.name} must be a number in [0, 1], got {value!r}")


def role_scores(metrics: pd.DataFrame) -> pd.DataFrame:
    """The score of every role per head (columns :data:`ROLE_SCORES`; NaN where undefined)."""
    missing = [m for m in ROLE_SCORES.values() if m not in metrics.columns]
    if missing:
        raise InputError(
            f"the metrics frame lacks {missing}; compute it with head_metrics() (all metrics)"
        )
    return pd.DataFrame(
        {role: metrics[col].astype(float) for role, col in ROLE_SCORES.items()},
        index=metrics.index,
    )


def head_roles(
    metrics: pd.DataFrame,
    thresholds: RoleThresholds | None = None,
    **overrides: float,
) -> pd.DataFrame:
    """Label each head from its metrics.

    A head takes every role whose score passes its threshold (:class:`RoleThresholds`, or keyword
    overrides such as ``sink=0.8``); its main ``role`` is the one with the highest score, or
    ``other``. Sink roles name the token, e.g. ``sink [CLS]``.

    Returns:
        A frame on the metrics' index with ``role``, ``label``, ``score`` and one boolean column
        per role (``is_previous``, ``is_sink``, ...).
    """
    thresholds = replace(thresholds or RoleThresholds(), **overrides)
    scores = role_scores(metrics)
    passed = pd.DataFrame(
        {role: scores[role] > getattr(thresholds, role) for role in ROLE_SCORES},
        index=metrics.index,
    )
    masked = scores.where(passed)
    has_role = passed.any(axis=1)
    role = masked.fillna(-1.0).idxmax(axis=1).where(has_role, "other")
    score = masked.max(axis=1)
    label = role.copy()
    is_sink = role == "sink"
    if "sink_token" in metrics.columns:
        label[is_sink] = "sink " + metrics.loc[is_sink, "sink_token"].astype(str)
    out = pd.DataFrame(
        {"role": pd.Categorical(role, categories=ROLES), "label": label, "score": score},
        index=metrics.index,
    )
    for r in ROLE_SCORES:
        out[f"is_{r}"] = passed[r]
    return out


def top_heads(metrics: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The ``k`` highest-scoring heads of every role (whether or not they pass the threshold).

    Returns a long frame with ``role, rank, layer, head, score``.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    scores = role_scores(metrics)
    rows = []
    for role in ROLE_SCORES:
        best = scores[role].dropna().sort_values(ascending=False, kind="stable").head(k)
        for rank, (key, score) in enumerate(best.items(), 1):
            layer, head = cast(tuple[int, int], key)
            rows.append({"role": role, "rank": rank, "layer": layer, "head": head, "score": score})
    return pd.DataFrame(rows, columns=["role", "rank", "layer", "head", "score"])


def layer_summary(metrics: pd.DataFrame, roles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-layer means of entropy, entropy_norm, mean_distance and max_weight, plus the share of
    the layer's heads with each main role (``share_previous``, ..., ``share_other``)."""
    cols = [c for c in ("entropy", "entropy_norm", "mean_distance", "max_weight") if c in metrics]
    out = metrics[cols].groupby(level="layer").mean()
    roles = head_roles(metrics) if roles is None else roles
    shares = pd.crosstab(roles.index.get_level_values("layer"), roles["role"], normalize="index")
    for role in ROLES:
        out[f"share_{role}"] = shares[role].to_numpy() if role in shares else 0.0
    out.index.name = "layer"
    return out


# --------------------------------------------------------------------------- detectors


def _expected_mean(weights: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Mean over rows with an expected key of the attention mass on the expected keys."""
    rows = expected.any(axis=1)
    if not rows.any():
        return _nan(weights)
    mass = np.einsum("lhqk,qk->lhq", weights[..., rows, :], expected[rows].astype(np.float32))
    return mass.mean(axis=-1, dtype=np.float64)


def detector_masks(ctx: MetricContext) -> dict[str, np.ndarray]:
    """The expected key positions ``(query, key)`` of each detector.

    - ``previous_token``: key ``i - 1``.
    - ``duplicate_token``: earlier keys with the same id as query ``i`` (any other occurrence for
      bidirectional attention).
    - ``induction``: the key right after an earlier occurrence of query ``i``'s token (after any
      other occurrence for bidirectional attention), excluding ``i`` itself.

    Special tokens are never expected positions, nor queries of the duplicate/induction detectors.
    Cross attention has no positional expectation: all masks are empty there.
    """
    nq, nk = ctx.n_query, ctx.n_key
    empty = np.zeros((nq, nk), dtype=bool)
    if not ctx.aligned:
        return {name: empty for name in DETECTORS}
    q = np.arange(nq)[:, None]
    k = np.arange(nk)[None, :]
    visible = k <= q if ctx.causal else np.ones((nq, nk), dtype=bool)
    plain_q = ~ctx.query_special[:, None]
    same = (ctx.query_ids[:, None] == ctx.key_ids[None, :]) & plain_q & ~ctx.key_special[None, :]
    same &= k != q
    duplicate = same & visible
    # induction: expected key j + 1 for every other occurrence j of the query's token
    after = np.zeros_like(same)
    after[:, 1:] = same[:, :-1]
    induction = after & (k != q) & visible & ~ctx.key_special[None, :]
    return {"previous_token": (k == q - 1), "duplicate_token": duplicate, "induction": induction}


def detector_scores(stack: AttentionStack) -> pd.DataFrame:
    """Previous-token, duplicate-token and induction scores of every head.

    Each score is the fraction of attention on the expected positions (see
    :func:`detector_masks`), averaged over the query rows that have one; NaN where no row has an
    expected position. Works for causal and bidirectional attention. Induction is meaningful on a
    random token sequence repeated twice: :func:`repeated_random_text` builds one and
    ``inspector.detect_heads(model)`` runs it.
    """
    ctx = MetricContext.from_stack(stack)
    masks = detector_masks(ctx)
    return pd.DataFrame(
        {name: _expected_mean(stack.weights, masks[name]).ravel() for name in DETECTORS},
        index=_index(stack),
    )


def vocabulary_words(vocab: Iterable[str], special: Iterable[str] = ()) -> list[str]:
    """Whole-word alphabetic entries of a tokenizer vocabulary, sorted, markers stripped.

    Byte-level (``Ġword``) and SentencePiece (``▁word``) vocabularies keep only word-initial
    entries; WordPiece drops ``##`` continuations.
    """
    vocab = [v for v in vocab if v not in set(special)]
    marked = [v for v in vocab if v[:1] in ("Ġ", "▁")]
    pool = marked if marked else [v for v in vocab if not v.startswith("##")]
    words = {v.lstrip("Ġ▁") for v in pool}
    return sorted(w for w in words if len(w) >= 2 and w.isascii() and w.isalpha())


def repeated_random_text(words: Sequence[str], n_tokens: int, *, seed: int = 0) -> str:
    """``n_tokens`` random words from ``words``, then the same words again, joined by spaces."""
    if n_tokens < 2:
        raise InputError(f"n_tokens must be at least 2, got {n_tokens}")
    if not words:
        raise InputError("no vocabulary words to sample from")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(words), size=n_tokens, replace=len(words) < n_tokens)
    half = [words[i] for i in pick]
    return " ".join(half + half)


# --------------------------------------------------------------------------- head distances


def _weights_of(stack: AttentionStack | np.ndarray) -> np.ndarray:
    w = stack.weights if isinstance(stack, AttentionStack) else np.asarray(stack)
    if w.ndim != 4:
        raise InputError(f"expected weights (layer, head, query, key), got shape {w.shape}")
    return w.astype(np.float32, copy=False)


def js_divergence_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (base 2, in [0, 1]) between matching rows of ``p`` and ``q``.

    Shapes broadcast; the last axis is the distribution. Identical rows give exactly 0.
    """
    m = (p + q) * np.float32(0.5)
    js = -_xlogx_rows(m) + 0.5 * (_xlogx_rows(p) + _xlogx_rows(q))
    return np.maximum(js / _LN2, 0.0)


def _doubled_mixture(s: np.ndarray, log_buf: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """``D(s) = Σ_k s ln s - ln 2 · Σ_k s = 2 Σ_k m ln m`` for ``m = s / 2``, per row.

    ``s`` is ``p + q`` (float32, ``(b, query, key)``), ``sums`` its float64 row sums ``(b,
    query)``; ``log_buf`` is scratch of the shape of ``s``.
    """
    np.log(s, out=log_buf)
    return np.einsum("bqk,bqk->bq", s, log_buf).astype(np.float64) - _LN2 * sums


def _js_distance_rows(
    x: np.ndarray,
    x_tiny: np.ndarray,
    row_sums: np.ndarray,
    self_sums: np.ndarray,
    a: int,
    chunk: int,
    bufs: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """JS distances of head ``a`` to heads ``a+1 ..``: ``(n - a - 1,)``.

    Per pair only ``s = p + q``, its log and one dot product per row are computed
    (:func:`_doubled_mixture`); ``self_sums`` holds ``D(p + p) = 2 Σ p ln p`` of every head,
    computed through the same path so that identical heads get exactly 0.
    """
    n = x.shape[0]
    out = np.empty(n - a - 1)
    for start in range(a + 1, n, chunk):
        stop = min(n, start + chunk)
        s = bufs[0][: stop - start]
        np.add(x_tiny[start:stop], x[a], out=s)
        mix = _doubled_mixture(s, bufs[1][: stop - start], row_sums[start:stop] + row_sums[a])
        # JS = H(M) - (H(P) + H(Q)) / 2 = (D(p + p) + D(q + q)) / 4 - D(p + q) / 2
        js = (0.25 / _LN2) * (self_sums[a] + self_sums[start:stop]) - (0.5 / _LN2) * mix
        out[start - a - 1 : stop - a - 1] = np.sqrt(np.maximum(js, 0.0)).mean(axis=-1)
    return out


def head_distances(
    stack: AttentionStack | np.ndarray,
    method: str = "js",
    *,
    block: int = 1 << 18,
    workers: int | None = None,
) -> np.ndarray:
    """Distance between every pair of heads of one input: ``(layer*head, layer*head)``.

    Heads are flattened layer-major (``index = layer_pos * n_heads + head_pos``).

    - ``js``: Jensen–Shannon *distance* (square root of the base-2 divergence, in [0, 1])
      between the two heads' attention rows at the same query position, averaged over query
      positions.
    - ``cosine``: 1 - cosine similarity of the two rows, averaged over query positions.

    The array is cheap (vectorised numpy) and additive: to average over inputs, sum the arrays
    and divide by their count (:func:`mean_head_distances` does this).

    ``js`` needs one logarithm per pair, query and key (``JS = H(M) - (H(P) + H(Q)) / 2``: the
    heads' own entropies are computed once); ``block`` bounds the float32 elements of each
    work buffer (the default, 1 MiB, stays in cache), and ``workers`` threads share the pairs
    (numpy releases the GIL; default: 2 for long inputs, 1 for short ones).
    """
    w = _weights_of(stack)
    n_l, n_h, n_q, n_k = w.shape
    x = np.ascontiguousarray(w.reshape(n_l * n_h, n_q, n_k))
    n = x.shape[0]
    if method == "cosine":
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        unit = (x / np.maximum(norm, _TINY)).reshape(n, n_q * n_k).astype(np.float64)
        out = 1.0 - (unit @ unit.T) / n_q
        np.fill_diagonal(out, 0.0)
        return np.clip(out, 0.0, 1.0)
    if method != "js":
        raise InputError(f"unknown distance method {method!r}; use 'js' or 'cosine'")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    # x + tiny keeps every s = p + q positive (no log 0) and changes no weight above 1e-23
    x_tiny = x + _TINY
    row_sums = x.sum(axis=-1, dtype=np.float64)  # (n, query)
    chunk = max(1, block // max(1, n_q * n_k))
    self_sums = np.empty((n, n_q))
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        s = x_tiny[start:stop] + x[start:stop]
        self_sums[start:stop] = _doubled_mixture(s, np.empty_like(s), 2 * row_sums[start:stop])
    # threads pay off on long inputs only (short ones are dominated by per-call overhead)
    big = n * (n - 1) // 2 * n_q * n_k >= _JS_THREADED_ELEMENTS
    n_workers = max(1, min(workers or (2 if big else 1), n - 1))
    buf_rows = min(chunk, max(1, n - 1))

    def run(first: int) -> list[tuple[int, np.ndarray]]:
        bufs = (
            np.empty((buf_rows, n_q, n_k), np.float32),
            np.empty((buf_rows, n_q, n_k), np.float32),
        )
        return [
            (a, _js_distance_rows(x, x_tiny, row_sums, self_sums, a, chunk, bufs))
            for a in range(first, n - 1, n_workers)
        ]

    if n_workers == 1:
        results = run(0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_workers) as pool:
            results = [r for part in pool.map(run, range(n_workers)) for r in part]
    out = np.zeros((n, n))
    for a, d in results:
        out[a, a + 1 :] = d
        out[a + 1 :, a] = d
    return out


def distance_frame(
    distances: np.ndarray, layers: Sequence[int], heads: Sequence[int]
) -> pd.DataFrame:
    """Wrap a ``(layer*head, layer*head)`` array as a square frame on ``(layer, head)``."""
    index = pd.MultiIndex.from_product([list(layers), list(heads)], names=["layer", "head"])
    if distances.shape != (len(index), len(index)):
        raise InputError(
            f"distances have shape {distances.shape}, expected {(len(index), len(index))}"
        )
    return pd.DataFrame(distances, index=index, columns=index.copy())


def head_distance_frame(stack: AttentionStack, method: str = "js") -> pd.DataFrame:
    """:func:`head_distances` of one stack as a square frame on ``(layer, head)``."""
    return distance_frame(head_distances(stack, method), stack.layers, stack.heads)


def mean_head_distances(stacks: Iterable[AttentionStack], method: str = "js") -> pd.DataFrame:
    """Head distances averaged over inputs (each input counts once), as a square frame."""
    total: np.ndarray | None = None
    first: AttentionStack | None = None
    count = 0
    for stack in stacks:
        if first is None:
            first = stack
        else:
            _check_same_heads(first, stack)
        d = head_distances(stack, method)
        total = d if total is None else total + d
        count += 1
    if first is None or total is None:
        raise InputError("no inputs to average over; give at least one text")
    return distance_frame(total / count, first.layers, first.heads)


# --------------------------------------------------------------------------- using distances


def _square(distances: pd.DataFrame) -> np.ndarray:
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise InputError(f"expected a square distance frame, got shape {d.shape}")
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d


def cluster_heads(
    distances: pd.DataFrame,
    *,
    method: str = "average",
    n_clusters: int | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Hierarchical clustering (scipy) of heads from a square distance frame.

    Args:
        distances: from :func:`head_distance_frame` or :func:`mean_head_distances`.
        method: scipy linkage method (``average``, ``complete``, ``single``, ``ward``).
        n_clusters: cut the tree into this many clusters (default: one per layer).
        threshold: cut at this distance instead.

    Returns:
        A frame on the distances' index with ``cluster`` (1-based) and ``order`` (position of the
        head in the dendrogram's leaf order, for reordering the matrix).
    """
    from scipy.cluster.hierarchy import fcluster, leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    d = _square(distances)
    index = distances.index
    if len(index) < 2:
        return pd.DataFrame({"cluster": [1], "order": [0]}, index=index)
    condensed = squareform(d, checks=False)
    tree = linkage(condensed, method=method)
    tree = optimal_leaf_ordering(tree, condensed)
    if threshold is not None:
        labels = fcluster(tree, t=threshold, criterion="distance")
    else:
        if n_clusters is None:
            levels = index.get_level_values(0) if isinstance(index, pd.MultiIndex) else index
            n_clusters = max(1, len(pd.unique(levels)))
        labels = fcluster(tree, t=n_clusters, criterion="maxclust")
    order = np.empty(len(index), dtype=np.int64)
    order[leaves_list(tree)] = np.arange(len(index))
    return pd.DataFrame({"cluster": labels.astype(np.int64), "order": order}, index=index)


def cluster_order(distances: pd.DataFrame, **kw: Any) -> pd.DataFrame:
    """The distance frame with rows and columns in dendrogram order (for a heatmap)."""
    order = cluster_heads(distances, **kw)["order"].sort_values().index
    return distances.loc[order, order]


def head_embedding(distances: pd.DataFrame, n_components: int = 2) -> pd.DataFrame:
    """Classical (Torgerson) MDS of the heads: coordinates ``x``, ``y`` (, ``z`` ...) per head.

    Plain numpy: double-centre the squared distances and keep the top eigenvectors.
    """
    d = _square(distances)
    n = d.shape[0]
    j = np.eye(n) - 1.0 / n
    b = -0.5 * j @ (d**2) @ j
    from scipy.linalg import eigh  # numpy's eigh can stall on threads for small matrices

    values, vectors = eigh(b)
    top = np.argsort(values)[::-1][:n_components]
    coords = vectors[:, top] * np.sqrt(np.maximum(values[top], 0.0))
    if coords.shape[1] < n_components:
        coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
    for c in range(coords.shape[1]):  # deterministic sign
        if coords[np.argmax(np.abs(coords[:, c])), c] < 0:
            coords[:, c] *= -1
    names = (
        ["x", "y", "z"][:n_components]
        if n_components <= 3
        else [f"dim{i}" for i in range(n_components)]
    )
    return pd.DataFrame(coords, index=distances.index, columns=names)


def nearest_heads(distances: pd.DataFrame, layer: int, head: int, k: int = 5) -> pd.DataFrame:
    """The ``k`` heads closest to ``(layer, head)``: a frame with ``layer, head, distance``."""
    if (layer, head) not in distances.index:
        raise InputError(f"head ({layer}, {head}) is not in the distance frame")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    pos = distances.index.get_loc((layer, head))
    row = pd.Series(np.asarray(distances)[pos], index=distances.columns)
    best = row.drop(index=(layer, head)).sort_values(kind="stable").head(k)
    return pd.DataFrame(
        {
            "layer": best.index.get_level_values(0),
            "head": best.index.get_level_values(1),
            "distance": best.to_numpy(),
        }
    )


def layer_distance_summary(distances: pd.DataFrame) -> pd.DataFrame:
    """Mean distance of each layer's heads to heads of the same layer and of other layers."""
    d = _square(distances)
    layers = np.asarray(distances.index.get_level_values(0))
    off = ~np.eye(len(layers), dtype=bool)
    rows = []
    for layer in pd.unique(layers):
        mine = layers == layer
        within = d[np.ix_(mine, mine)][off[np.ix_(mine, mine)]]
        between = d[np.ix_(mine, ~mine)]
        rows.append(
            {
                "layer": layer,
                "within": float(within.mean()) if within.size else np.nan,
                "between": float(between.mean()) if between.size else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("layer")


__all__ = [
    "DETECTORS",
    "METRICS",
    "ROLES",
    "ROLE_SCORES",
    "SINK_COLUMNS",
    "MetricContext",
    "MetricFn",
    "RoleThresholds",
    "aggregate_head_metrics",
    "cluster_heads",
    "cluster_order",
    "compute_metric_arrays",
    "detector_masks",
    "detector_scores",
    "distance_frame",
    "entropy_rows",
    "head_distance_frame",
    "head_distances",
    "head_embedding",
    "head_metrics",
    "head_roles",
    "js_divergence_rows",
    "layer_distance_summary",
    "layer_summary",
    "list_metrics",
    "mean_head_distances",
    "nearest_heads",
    "punctuation_mask",
    "register_metric",
    "repeated_random_text",
    "separator_mask",
    "sink_arrays",
    "top_heads",
    "vocabulary_words",
]
