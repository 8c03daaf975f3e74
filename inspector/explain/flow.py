"""Token-level corrections of raw attention: rollout and flow (Abnar & Zuidema 2020).

* :func:`rollout` - attention rollout: per layer ``Â = normalise(0.5·mean_heads(A) + 0.5·I)``,
  multiplied through the layers.
* :func:`attention_flow` - attention flow: max-flow through the layered attention graph with
  ``Â`` as capacities (networkx). Slow: limited to :data:`FLOW_MAX_TOKENS`.

Pure functions of ``(layer, head, query, key)`` arrays or stacks; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict, Unpack

import numpy as np
import pandas as pd

from .._progress import bar
from ..capture.types import AttentionStack, Tokens
from ..errors import InputError

HeadReduce = Literal["mean", "max", "min"]


class Composition(TypedDict, total=False):
    """How :func:`rollout` and :func:`attention_flow` compose the layers (keywords of both).

    Attributes:
        start_layer: first layer composed (negative counts from the end; default 0).
        head_reduce: how heads are combined: ``mean`` (the paper, default), ``max`` or ``min``.
        residual: weight of the identity standing for the residual connection (0.5 in the
            paper, default).
        special: boolean ``(n,)`` mask of special tokens (taken from the stack when omitted).
        exclude_special: drop special tokens' rows and columns from the result and renormalise
            the rows (the composition itself runs over all tokens; default False).
    """

    start_layer: int
    head_reduce: HeadReduce
    residual: float
    special: np.ndarray | None
    exclude_special: bool


#: Longest input :func:`attention_flow` accepts (one max-flow problem per query/key pair).
FLOW_MAX_TOKENS = 32
#: Measured wall time of :func:`attention_flow` at :data:`FLOW_MAX_TOKENS` tokens and 6 layers:
#: 29 s on an idle 2-core CPU, 66 s on a loaded one (bench/bench_explain.py re-measures it).
FLOW_SECONDS_AT_LIMIT = 60.0


def _as_weights(attention: AttentionStack | np.ndarray) -> np.ndarray:
    w = attention.weights if isinstance(attention, AttentionStack) else np.asarray(attention)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise InputError(
            f"expected self-attention weights (layer, head, query, key) with query == key, got "
            f"shape {w.shape}; cross attention has no rollout, use the encoder or decoder stack"
        )
    return w


def _reduce_heads(w: np.ndarray, head_reduce: str) -> np.ndarray:
    if head_reduce == "mean":
        return np.asarray(w.mean(axis=1))
    if head_reduce == "max":
        return np.asarray(w.max(axis=1))
    if head_reduce == "min":
        return np.asarray(w.min(axis=1))
    raise InputError(f"head_reduce must be 'mean', 'max' or 'min', not {head_reduce!r}")


def _start(start_layer: int, n_layers: int) -> int:
    s = start_layer + n_layers if start_layer < 0 else start_layer
    if not 0 <= s < n_layers:
        raise InputError(f"start_layer {start_layer} is out of range for {n_layers} layers")
    return s


def residual_attention(
    attention: AttentionStack | np.ndarray,
    *,
    head_reduce: HeadReduce = "mean",
    residual: float = 0.5,
) -> np.ndarray:
    """Per-layer ``Â = normalise((1 - residual)·reduce_heads(A) + residual·I)``.

    Args:
        attention: weights ``(layer, head, query, key)`` or an :class:`AttentionStack`.
        head_reduce: how heads are combined: ``mean`` (the paper), ``max`` or ``min``.
        residual: weight of the identity standing for the residual connection (0.5 in the paper).

    Returns:
        float64 ``(layer, query, key)`` with rows summing to 1.
    """
    w = _as_weights(attention)
    if not 0.0 <= residual <= 1.0:
        raise InputError(f"residual must lie in [0, 1], got {residual}")
    eye = residual * np.eye(w.shape[-1])
    out = np.empty((w.shape[0], *w.shape[2:]))
    for li in range(w.shape[0]):  # one layer in float64 at a time, not a copy of the stack
        a = (1.0 - residual) * _reduce_heads(w[li : li + 1].astype(np.float64), head_reduce)[0]
        a += eye
        out[li] = a / a.sum(axis=-1, keepdims=True)
    return out


def _composed(
    attention: AttentionStack | np.ndarray, options: Composition
) -> tuple[np.ndarray, int]:
    """The per-layer ``Â`` of ``options`` and the index of the first layer composed."""
    unknown = sorted(set(options) - set(Composition.__annotations__))
    if unknown:
        raise InputError(
            f"unknown option {', '.join(unknown)}; rollout and attention flow take "
            f"{', '.join(Composition.__annotations__)} (and flow max_tokens, progress, rows)"
        )
    a = residual_attention(
        attention,
        head_reduce=options.get("head_reduce", "mean"),
        residual=options.get("residual", 0.5),
    )
    return a, _start(options.get("start_layer", 0), a.shape[0])


def _composed_result(
    matrix: np.ndarray, attention: AttentionStack | np.ndarray, options: Composition
) -> np.ndarray:
    return _finish(matrix, attention, options.get("special"), options.get("exclude_special", False))


def rollout(
    attention: AttentionStack | np.ndarray, **composition: Unpack[Composition]
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): ``Â_{L-1} ··· Â_{start}``.

    Args:
        attention: weights ``(layer, head, query, key)`` or an :class:`AttentionStack` (whose
            axis 0 must be consecutive layers).
        composition: ``start_layer``, ``head_reduce``, ``residual``, ``special``,
            ``exclude_special``: see :class:`Composition`.

    Returns:
        float64 ``(query, key)``: how much of each output position's representation flows from
        each input position. Rows sum to 1.

    Example:
        >>> import numpy as np
        >>> w = np.full((2, 1, 3, 3), 1 / 3)
        >>> rollout(w).round(3)[0].tolist()
        [0.5, 0.25, 0.25]
    """
    a, s = _composed(attention, composition)
    out = np.eye(a.shape[-1])
    for layer in range(s, a.shape[0]):
        out = a[layer] @ out
    return _composed_result(out, attention, composition)


def _special_of(attention: Any, special: np.ndarray | None, n: int) -> np.ndarray:
    if special is not None:
        mask = np.asarray(special, dtype=bool)
    elif isinstance(attention, AttentionStack):
        mask = np.asarray(attention.query.special, dtype=bool)
    else:
        raise InputError("exclude_special=True needs special= (a boolean mask of special tokens)")
    if mask.shape != (n,):
        raise InputError(f"special has shape {mask.shape}, expected ({n},)")
    if mask.all():
        raise InputError("every token is special; nothing is left after exclude_special=True")
    return mask


def _finish(
    matrix: np.ndarray, attention: Any, special: np.ndarray | None, exclude_special: bool
) -> np.ndarray:
    if not exclude_special:
        return matrix
    keep = ~_special_of(attention, special, matrix.shape[-1])
    return renormalise(matrix[..., keep, :][..., keep])


def renormalise(matrix: np.ndarray) -> np.ndarray:
    """Divide each row (last axis) by its sum; all-zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float64)
    sums = m.sum(axis=-1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def exclude_special_tokens(
    values: np.ndarray, special: np.ndarray, *, normalise: bool = True
) -> np.ndarray:
    """Drop special tokens from the last two axes ``(..., query, key)`` and renormalise rows."""
    keep = ~np.asarray(special, dtype=bool)
    if keep.shape != values.shape[-1:] or not keep.any():
        raise InputError(
            f"special mask of shape {keep.shape} does not fit values {values.shape} or "
            f"leaves no token"
        )
    out = values[..., keep, :][..., keep]
    return renormalise(out) if normalise else out


def attention_flow(
    attention: AttentionStack | np.ndarray,
    *,
    max_tokens: int = FLOW_MAX_TOKENS,
    progress: bool | None = None,
    rows: Sequence[int] | None = None,
    **composition: Unpack[Composition],
) -> np.ndarray:
    """Attention flow (Abnar & Zuidema 2020): max-flow through the layered attention graph.

    Nodes are ``(level, position)`` for levels ``start_layer .. L``; an edge from position ``i``
    at level ``l + 1`` to position ``j`` at level ``l`` has capacity ``Â_l[i, j]``
    (:func:`residual_attention`). Entry ``[i, j]`` is the maximum flow from output ``i`` to input
    ``j``; each row is then normalised to sum to 1.

    It solves ``n²`` max-flow problems on a graph of ``layers·n²`` edges, so it refuses inputs
    longer than ``max_tokens`` (default :data:`FLOW_MAX_TOKENS` = 32; 30 to 60 s at that
    limit with 6 layers on a 2-core CPU, see :data:`FLOW_SECONDS_AT_LIMIT`). Use :func:`rollout` for
    long inputs: it is the fast approximation. ``progress`` draws a bar over the ``n²``
    problems on stderr (``None``: on a terminal; elsewhere a line every 30 s). ``rows`` solves
    only those output positions' problems (the others stay rows of the identity): a decoder's
    next-token scores need its last row alone, ``n`` problems instead of ``n²``.
    ``composition``: ``start_layer``, ``head_reduce``, ``residual``, ``special``,
    ``exclude_special``, as for :func:`rollout` (:class:`Composition`).

    Returns:
        float64 ``(query, key)``, rows summing to 1.
    """
    import networkx as nx
    from networkx.algorithms.flow import build_residual_network

    a, s = _composed(attention, composition)
    n = a.shape[-1]
    if n > max_tokens:
        raise InputError(
            f"attention flow on {n} tokens is too slow: it solves {n}² max-flow problems; the "
            f"limit is {max_tokens} tokens (up to about {FLOW_SECONDS_AT_LIMIT:.0f} s at "
            f"{FLOW_MAX_TOKENS} tokens and 6 layers). Shorten the input, or use rollout(), the "
            f"fast approximation"
        )
    layers = a.shape[0] - s
    graph = nx.DiGraph()
    for depth in range(layers):
        mat = a[s + depth]
        for i in range(n):
            for j in range(n):
                if mat[i, j] > 0:
                    graph.add_edge((depth + 1, i), (depth, j), capacity=float(mat[i, j]))
    flow = np.eye(n)
    solve = range(n) if rows is None else sorted({int(r) % n for r in rows})
    if layers > 0:
        # One residual network reused by every problem: ~6x faster than maximum_flow_value.
        residual_net = build_residual_network(graph, "capacity")
        total = n * len(solve)
        with bar(total=total, desc="attention flow", unit=" max-flows", progress=progress) as b:
            for i in solve:
                for j in range(n):
                    flow[i, j] = _max_flow(graph, (layers, i), (0, j), residual_net)
                b.update(n)
    return _composed_result(renormalise(flow), attention, composition)


def _max_flow(graph: Any, source: Any, sink: Any, residual_net: Any) -> float:
    """The maximum flow value from ``source`` to ``sink``: networkx's preflow-push, or, where its
    relabelling fails on float capacities (``min() arg is an empty sequence``, seen on MiniLM
    with UD EWT sentences), Edmonds-Karp, the algorithm the paper's own code
    (samiraabnar/attention_flow) runs; both give the same value."""
    from networkx.algorithms.flow import edmonds_karp, preflow_push

    try:
        solved = preflow_push(graph, source, sink, residual=residual_net)
    except ValueError:
        solved = edmonds_karp(graph, source, sink, residual=residual_net)
    return float(solved.graph["flow_value"])


def matrix_frame(matrix: np.ndarray, tokens: Tokens, *, value: str = "weight") -> pd.DataFrame:
    """Long frame of a ``(query, key)`` matrix: ``query_pos, key_pos, query_token, key_token``."""
    n_q, n_k = matrix.shape
    names = list(tokens.tokens)
    if n_q != len(names) or n_k != len(names):
        keep = np.flatnonzero(~tokens.special)
        if n_q != keep.size:
            raise InputError(f"matrix {matrix.shape} does not match {len(names)} tokens")
        positions = keep
    else:
        positions = np.arange(n_q)
    q = np.repeat(positions, n_k)
    k = np.tile(positions, n_q)
    return pd.DataFrame(
        {
            "query_pos": q.astype(np.int32),
            "key_pos": k.astype(np.int32),
            "query_token": pd.Categorical([names[i] for i in q]),
            "key_token": pd.Categorical([names[i] for i in k]),
            value: matrix.reshape(-1).astype(np.float32),
        }
    )


__all__ = [
    "FLOW_MAX_TOKENS",
    "HeadReduce",
    "attention_flow",
    "exclude_special_tokens",
    "matrix_frame",
    "renormalise",
    "residual_attention",
    "rollout",
]
