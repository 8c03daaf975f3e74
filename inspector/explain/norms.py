"""Norm-based attention (Kobayashi et al. 2020): ``‖α_ij · f_h(x_j)‖``.

Raw attention weights mislead: a head can put most of its weight on a "sink" token such as
``[CLS]`` while passing on almost nothing from it. Weighting each weight by the size of the vector
the head moves corrects that. The model runs once more (through
:func:`inspector.capture.run.forward`) with hooks on the value projections and on the input of
the attention output projections.

The values are verified, not assumed: for every layer, ``Σ_j α_ij v_j`` (the captured weights
times the values read) must reproduce the input of the output projection, head by head. That
check settles how a fused projection holds the values (:data:`~inspector.models.families.LAYOUTS`)
and absorbs a bias added after the projection (DeBERTa's ``v_bias``: a constant difference, since
every row of ``α`` sums to 1); a model whose values cannot be read this way is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..capture import memory as _memory
from ..capture.hooks import Hook
from ..capture.memory import MemoryLimit
from ..capture.run import forward
from ..capture.types import AttentionStack, Capture, kv_head_map
from ..errors import InputError, UnsupportedModelError
from ..frames import select_stack
from ..models.loading import ModelBundle
from ..models.structure import AttentionLayer, Structure, split_values
from .budget import cut_logits, norms_estimate
from .model import inputs_for, structure
from .result import NormAttention

#: ``|Σ_j α_ij v_j - z_i|`` accepted, relative to the largest ``|z|`` (float32 weights; float16
#: storage adds its own rounding).
VALUE_TOLERANCE = 1e-3


def attention_norms(
    bundle: ModelBundle,
    stack: AttentionStack,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    capture: Capture | None = None,
    keep_vectors: bool = False,
    max_memory: MemoryLimit | None = None,
) -> NormAttention:
    """Norm-based attention ``‖α_ij · f_h(x_j)‖`` for one captured attention stack.

    ``f_h(x) = (x W_V + b_V) W_O^h`` is the vector head ``h`` adds to the residual stream per unit
    of attention (the output bias is shared by all tokens and left out, as in the paper). The
    model runs once more on exactly the capture's token ids, with forward hooks on each layer's
    value projection and output projection; ``α`` is the stack's own weights. Under grouped-query
    attention query head ``h`` reads value head ``h // (n_heads / n_kv_heads)``.

    Args:
        bundle: a loaded model.
        stack: a captured stack (``Inspection.stack``): ``self``, or an encoder-decoder's
            ``encoder``, ``decoder`` or ``cross`` (whose keys are the encoder's tokens).
        layers, heads: keep only these model indexes (default: all the stack holds).
        capture: the capture holding ``stack``; needed for an encoder-decoder's ``decoder``
            and ``cross`` stacks (their forward pass needs both token sequences).
        keep_vectors: also return the vectors ``f_h(x_j)`` themselves (``vectors``,
            ``(layer, head, key, hidden)``; memory grows with the hidden size).
        max_memory: memory budget (``"4GB"``; default: what is free now); refused with
            ``ResourceError`` before the model runs when :func:`norms_estimate` does not fit.

    Returns:
        A :class:`NormAttention`; ``norms`` has the shape of the (selected) weights.

    Raises:
        UnsupportedModelError: no value projection reproduces the attention's output.
    """
    found = structure(bundle, "norm-based attention", stack.kind)
    stack = select_stack(stack, layers, heads)
    inputs = _inputs(bundle, stack, capture)
    outputs: dict[tuple[int, int], Any] = {}
    hooks = value_hooks(found, stack.layers, outputs)
    hooks += cut_logits(bundle, -1)  # the norms read no logits: keep one position's
    with _memory.preflight(
        bundle.lock,
        lambda: norms_estimate(
            bundle, stack, keep_vectors=keep_vectors, budget=_memory.memory_budget(max_memory)
        ),
        "Use a shorter input, or fewer layers= / heads=",
    ):
        forward(bundle, inputs, hooks=hooks)
        weights = stack.weights
        value_norms = np.empty((*weights.shape[:2], weights.shape[3]), dtype=np.float32)
        kept = []
        for pos, li in enumerate(stack.layers):  # one layer's float64 vectors at a time
            f = _layer_vectors(found, found.layers[li], li, stack, pos, outputs, bundle.name)
            value_norms[pos] = f.norm(dim=-1).numpy()
            if keep_vectors:
                kept.append(f.numpy().astype(np.float32))
            del f
            for key in [k for k in outputs if k[0] == li]:
                del outputs[key]
        norms = np.multiply(weights, value_norms[:, :, None, :], dtype=np.float32)
    return NormAttention(
        norms,
        weights,
        value_norms,
        stack.query,
        stack.layers,
        stack.heads,
        key_tokens=stack.key,
        vectors=np.stack(kept) if keep_vectors else None,
    )


def _inputs(bundle: ModelBundle, stack: AttentionStack, capture: Capture | None) -> Any:
    if capture is not None and capture.image is not None:
        return inputs_for(bundle, capture)
    if bundle.modality == "image":
        raise InputError(
            "norm-based attention of an image needs its capture: "
            "attention_norms(bundle, stack, capture=ins.capture)"
        )
    if stack.kind == "self":
        return inputs_for(bundle, stack.query)
    if stack.kind == "encoder":
        return inputs_for(bundle, stack.query)
    if capture is None or capture.stacks.get(stack.kind) is None:
        raise InputError(
            f"norm-based attention of a {stack.kind} stack needs its capture (both token "
            f"sequences): attention_norms(bundle, stack, capture=ins.capture)"
        )
    return inputs_for(bundle, capture)


def _keep(store: dict[tuple[int, int], Any], key: tuple[int, int]) -> Callable[..., None]:
    def hook(_module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        store[key] = out.detach().reshape(-1, out.shape[-1]).float()  # batch of 1, any order

    return hook


def _keep_input(
    store: dict[tuple[int, int], Any], key: tuple[int, int], rows: Sequence[int] | None = None
) -> Callable[..., None]:
    def hook(_module: Any, args: tuple[Any, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1])
        store[key] = (x if rows is None else x[list(rows)]).float()

    return hook


def value_hooks(
    found: Structure,
    layers: Sequence[int],
    outputs: dict[tuple[int, int], Any],
    *,
    rows: Sequence[int] | None = None,
    only: Mapping[int, int] | None = None,
) -> list[Hook]:
    """Hooks that keep, for each of ``layers``, every candidate value source's output (key
    ``(layer, source)``; ``only``: just the source ``only[layer]``) and the output projection's
    input (key ``(layer, -1)``; only the query ``rows`` given, or all)."""
    hooks = []
    for li in layers:
        layer = found.layers[li]
        for si, source in enumerate(layer.values):
            if only is not None and only.get(li, si) != si:
                continue
            hooks.append(Hook(source.module, _keep(outputs, (li, si)), call=layer.call))
        hooks.append(Hook(layer.out, _keep_input(outputs, (li, -1), rows), "pre", call=layer.call))
    return hooks


def _layer_vectors(
    found: Structure,
    layer: AttentionLayer,
    li: int,
    stack: AttentionStack,
    pos: int,
    outputs: dict[tuple[int, int], Any],
    name: str,
) -> Any:
    """``f_h(x_j)`` ``(head, key, hidden)`` (float64 tensor) of the kept heads of one layer, from
    verified values."""
    import torch

    n_q = stack.weights.shape[2]
    alpha = torch.from_numpy(np.asarray(stack.weights[pos], dtype=np.float64))  # (h, q, k)
    values, w_o = head_values(
        found, layer, li, alpha, outputs[(li, -1)][:n_q], outputs,
        heads=stack.heads, tolerance=stack.tolerance, kind=stack.kind, name=name,
    )  # fmt: skip
    return values @ w_o  # (h, k, hidden)


def head_values(
    found: Structure,
    layer: AttentionLayer,
    li: int,
    alpha: Any,
    z: Any,
    outputs: dict[tuple[int, int], Any],
    *,
    heads: Sequence[int] | None = None,
    tolerance: float = 0.0,
    kind: str = "self",
    name: str = "model",
) -> tuple[Any, Any]:
    """Each head's values, verified: ``(values (head, key, head_dim), W_O (head, head_dim,
    hidden))`` float64 tensors, so that ``f_h(x_j) = values[h, j] @ W_O[h]``.

    Args:
        alpha: ``(head, rows, key)`` attention weights of some query rows (float64 tensor).
        z: ``(rows, heads * head_dim)``: the output projection's input at the same rows.
        outputs: the value sources' outputs kept by :func:`value_hooks`.
        heads: the query heads ``alpha`` holds (default: all).
        tolerance: the weights' own rounding (a float16 capture's).

    The value layout is the one whose ``Σ_j α_ij v_j`` reproduces ``z`` (up to a constant
    bias added after the projection, learned from two or more rows); grouped-query heads read
    their key/value head.

    Raises:
        UnsupportedModelError: no value source reproduces ``z``.
    """
    import torch

    heads = list(range(found.n_heads)) if heads is None else list(heads)
    n_k = int(alpha.shape[-1])
    d = found.head_dim
    z = z.double().cpu()
    n_rows = int(z.shape[0])
    z_heads = z.view(n_rows, found.n_heads, d)[:, heads].transpose(0, 1)  # (h, r, d)
    scale = float(z_heads.abs().max()) + 1e-12
    tol = max(VALUE_TOLERANCE, 10 * tolerance) * max(scale, 1e-3)
    tried = []
    for si, source in enumerate(layer.values):
        out = outputs.get((li, si))
        if out is None or out.shape[0] < n_k:
            continue
        for layout in source.layouts:
            v = split_values(out[:n_k].double().cpu(), layout, found.n_heads, d)
            if v is None or found.n_heads % v.shape[1]:
                continue
            kv_map = torch.as_tensor(kv_head_map(found.n_heads, v.shape[1]))[heads]
            v_heads = v[:, kv_map].transpose(0, 1)  # (h, k, d)
            residual = z_heads - alpha @ v_heads
            bias = (
                residual.mean(dim=1, keepdim=True)
                if n_rows > 1
                else torch.zeros_like(residual[:, :1])
            )
            err = float((residual - bias).abs().max())
            tried.append(f"{source.name or type(source.module).__name__} as {layout} ({err:.2g})")
            if err > tol:
                continue
            if float(bias.abs().max()) <= tol:
                bias = torch.zeros_like(bias)
            w_o = layer.out_weight.double().cpu()[heads]  # (h, d, hidden)
            return v_heads + bias, w_o
    raise UnsupportedModelError(
        f"{name}: in {kind} layer {li}, no value projection reproduces the attention output: "
        f"the input of {layer.name('out')} is not Σ_j α_ij v_j for any of "
        f"{', '.join(tried) or 'no candidate'} (largest difference after a constant bias, "
        f"tolerance {tol:.2g}); its values are transformed after the projection"
    )


__all__ = ["VALUE_TOLERANCE", "attention_norms", "head_values", "value_hooks"]
