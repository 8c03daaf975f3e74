"""Query and key vectors behind a self-attention capture (for bertviz's neuron view).

The model runs once more with hooks on each layer's query and key projections; the vectors are
kept only when they reproduce the captured weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..models.loading import ModelBundle
from .hooks import Hook
from .run import forward, stack_structure
from .tokenize import model_inputs
from .types import Capture, kv_head_map

#: Largest |softmax(q k / sqrt(d)) - captured weight| accepted as "the same attention".
RECOMPUTE_TOLERANCE = 2e-3


def query_key_vectors(bundle: ModelBundle, capture: Capture) -> tuple[np.ndarray, np.ndarray]:
    """Query and key vectors behind a self-attention capture (for bertviz's neuron view).

    The model runs once more on the capture's own tokens with hooks on each layer's query and
    key projections (found through :mod:`inspector.models.families`); the vectors must
    reproduce the captured weights (``softmax(q·k/√d)`` within :data:`RECOMPUTE_TOLERANCE`),
    which rules out models that transform them afterwards (rotary position embeddings).

    Returns:
        ``(queries, keys)``, float32 ``(layer, head, position, head_dim)`` of the kept layers
        and heads.
    """
    import torch

    from ..errors import UnsupportedModelError

    if "self" not in capture.stacks:
        raise UnsupportedModelError(
            f"{bundle.name} ({bundle.model_type}) is an encoder-decoder model; the neuron view "
            f"needs a self-attention model (use head_view() for encoder-decoder attention)"
        )
    stack = capture.stacks["self"]
    structure = stack_structure(bundle, "self", "the neuron view")
    if any(layer.query is None or layer.key is None for layer in structure.layers):
        raise UnsupportedModelError(
            f"{bundle.name}: the neuron view needs the query and key projections, which the "
            f"{structure.family} family table entry does not name; use head_view() instead"
        )
    found: dict[tuple[int, str], Any] = {}

    def keep(li: int, part: str, piece: slice | None) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            found[(li, part)] = (output[..., piece] if piece is not None else output).detach()

        return hook

    hooks = []
    for li in stack.layers:
        layer = structure.layers[li]
        hooks.append(Hook(layer.query, keep(li, "q", layer.query_slice)))
        if layer.key is layer.query and layer.key_slice == layer.query_slice:
            continue
        hooks.append(Hook(layer.key, keep(li, "k", layer.key_slice)))
    forward(bundle, model_inputs(bundle, [stack.query]), hooks=hooks)
    kv = torch.tensor(kv_head_map(bundle.n_heads, bundle.n_kv_heads))

    def split(t: Any, heads: int) -> Any:  # (1, seq, heads*dim) -> (heads, seq, dim)
        return t[0].reshape(t.shape[1], heads, -1).transpose(0, 1).float().cpu()

    queries, keys = [], []
    for li in stack.layers:
        q = split(found[(li, "q")], bundle.n_heads)
        k = split(found.get((li, "k"), found[(li, "q")]), bundle.n_kv_heads)[kv]
        queries.append(q[list(stack.heads)].numpy())
        keys.append(k[list(stack.heads)].numpy())
    q_arr, k_arr = np.stack(queries), np.stack(keys)
    _check_vectors(q_arr, k_arr, stack.weights, causal=stack.causal, name=bundle.name)
    return q_arr.astype(np.float32), k_arr.astype(np.float32)


def _check_vectors(
    queries: np.ndarray, keys: np.ndarray, weights: np.ndarray, *, causal: bool, name: str
) -> None:
    scores = queries @ keys.swapaxes(-1, -2) / np.sqrt(queries.shape[-1])
    if causal:
        n = scores.shape[-1]
        scores = np.where(np.triu(np.ones((n, n), dtype=bool), 1), -np.inf, scores)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    err = float(np.abs(probs - weights).max())
    if err > RECOMPUTE_TOLERANCE:
        from ..errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"{name}: the query/key vectors do not reproduce the captured attention (max "
            f"difference {err:.3g}; rotary position embeddings or scaled scores change them "
            f"after the projection), so the neuron view cannot show this model faithfully; use "
            f"head_view() instead"
        )


__all__ = ["RECOMPUTE_TOLERANCE", "query_key_vectors"]
