"""Norm-based attention (Kobayashi et al. 2020): ``‖α_ij · f_h(x_j)‖``.

Raw attention weights mislead: a head can put most of its weight on a "sink" token such as
``[CLS]`` while passing on almost nothing from it. Weighting each weight by the size of the vector
the head moves corrects that. The model runs once more (through
:func:`inspector.capture.run.forward`) with hooks on the value projections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..capture.hooks import Hook
from ..capture.run import forward
from ..capture.types import AttentionStack
from ..errors import UnsupportedModelError
from ..frames import select_stack
from ..models.loading import ModelBundle
from .model import inputs_for, structure
from .result import NormAttention


def attention_norms(
    bundle: ModelBundle,
    stack: AttentionStack,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> NormAttention:
    """Norm-based attention ``‖α_ij · f_h(x_j)‖`` for one captured self-attention stack.

    ``f_h(x) = (x W_V + b_V) W_O^h`` is the vector head ``h`` adds to the residual stream per unit
    of attention (the output bias is shared by all tokens and left out, as in the paper). The
    model runs once more on exactly the stack's token ids, with a forward hook on each layer's
    value projection; ``α`` is the stack's own weights. Under grouped-query attention query head
    ``h`` reads value head ``h // (n_heads / n_kv_heads)``.

    Args:
        bundle: a loaded BERT-family, GPT-2 or LLaMA-style model.
        stack: its self-attention capture (``Inspection.stack``).
        layers, heads: keep only these model indexes (default: all the stack holds).

    Returns:
        A :class:`NormAttention`; ``norms`` has the shape of the (selected) weights.
    """
    import torch

    found = structure(bundle, "norm-based attention")
    if stack.kind != "self" or stack.key is not stack.query:
        raise UnsupportedModelError(
            f"norm-based attention needs a self-attention stack, got {stack.kind!r}"
        )
    stack = select_stack(stack, layers, heads)
    values: dict[int, Any] = {}

    def keep_values(index: int, piece: slice | None) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            values[index] = (output[..., piece] if piece is not None else output).detach()

        return hook

    hooks = [
        Hook(found.layers[li].value, keep_values(li, found.layers[li].value_slice))
        for li in stack.layers
    ]
    forward(bundle, inputs_for(bundle, stack.query), hooks=hooks)
    group = found.n_heads // found.n_kv_heads
    kv_of_head = torch.arange(found.n_heads) // group
    head_idx = list(stack.heads)
    vnorms = []
    with torch.inference_mode():
        for li in stack.layers:
            v = values[li][0].float()  # (seq, kv_heads * head_dim)
            v = v.view(v.shape[0], found.n_kv_heads, found.head_dim)[:, kv_of_head]
            w_o = found.layers[li].out_weight.float().to(v.device)  # (heads, d, hidden)
            f = torch.einsum("shd,hde->hse", v, w_o)  # (heads, seq, hidden)
            vnorms.append(f.norm(dim=-1)[head_idx])  # (heads, seq)
    value_norms = torch.stack(vnorms).cpu().numpy()
    weights = stack.weights
    return NormAttention(
        (weights * value_norms[:, :, None, :]).astype(np.float32),
        weights,
        value_norms,
        stack.query,
        stack.layers,
        stack.heads,
    )


__all__ = ["attention_norms"]
