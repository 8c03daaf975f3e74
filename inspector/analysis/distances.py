"""Head-to-head distances, clusters and maps: pure functions of attention weights.

Jensen–Shannon or cosine distances between every pair of heads of one input (averaged over query
positions), their mean over inputs, hierarchical clusters (scipy), a 2-D classical MDS embedding
and nearest heads. Every square frame is indexed by the heads' ``(layer, head)`` MultiIndex on
both axes. Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import AttentionStack
from ..errors import InputError
from .metrics import check_same_heads

_TINY = np.float32(1e-30)
_LN2 = float(np.log(2.0))
#: Pair elements (pairs x query x key) from which head_distances("js") uses 2 threads by default.
_JS_THREADED_ELEMENTS = 1 << 24


def _xlogx_rows(x: np.ndarray) -> np.ndarray:
    """``Σ_k x ln x`` over the last axis, with ``0 ln 0 = 0`` (float64 sum)."""
    return (x * np.log(np.maximum(x, _TINY))).sum(axis=-1, dtype=np.float64)


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


#: What to do when head distances do not fit.
DISTANCE_ADVICE = "Use shorter texts, or raise max_memory= if you know more is free"


def distance_estimate(
    stack: AttentionStack | np.ndarray, method: str = "js", max_memory: MemoryLimit | None = None
) -> _memory.MemoryEstimate:
    """What :func:`head_distances` allocates beside the weights, against the budget: ``js``
    a shifted float32 copy of the stack (and small work buffers), ``cosine`` the unit rows in
    float32 and float64."""
    w = _weights_of(stack)
    copies = 12 if method == "cosine" else 4
    return _memory.estimate(
        f"head distances ({method}) of {w.shape[0] * w.shape[1]} heads",
        {"copies": int(w.size) * copies, "work": 8 * (1 << 18) * 4},
        max_memory,
    )


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


def mean_head_distances(
    stacks: Iterable[AttentionStack], method: str = "js", *, max_memory: MemoryLimit | None = None
) -> pd.DataFrame:
    """Head distances averaged over inputs (each input counts once), as a square frame; each
    input's distances are checked against ``max_memory`` (:func:`distance_estimate`) first."""
    total: np.ndarray | None = None
    first: AttentionStack | None = None
    count = 0
    for stack in stacks:
        if first is None:
            first = stack
        else:
            check_same_heads(first, stack)
        distance_estimate(stack, method, max_memory).check(DISTANCE_ADVICE)
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
    "DISTANCE_ADVICE",
    "cluster_heads",
    "cluster_order",
    "distance_estimate",
    "distance_frame",
    "head_distance_frame",
    "head_distances",
    "head_embedding",
    "js_divergence_rows",
    "layer_distance_summary",
    "mean_head_distances",
    "nearest_heads",
]
