"""What the explain passes allocate, and how they stay within the memory budget.

* :func:`cut_logits`: a pre-hook on a language model's LM head that keeps the one position a
  target reads (:func:`~.target.logit_position`), so no pass holds ``rows x tokens x
  vocabulary`` logits;
* :func:`ablation_estimate` / :func:`ablation_rows`: an ablation pass's bytes and the most rows
  per pass that fit a budget; :func:`gradient_estimate`: the gate-gradient pass;
* :func:`norms_estimate` / :func:`explain_estimate`: norm-based attention and the whole "what
  mattered" summary.

Estimates only (pure arithmetic over shapes, plus the hook); :mod:`.importance`,
:mod:`.norms` and :mod:`.summary` run the passes under :func:`~inspector.capture.memory.preflight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..capture import memory as _memory
from ..capture.hooks import Hook
from ..capture.image import patch_size
from ..errors import ResourceError
from ..models.loading import ModelBundle
from .model import inputs_for
from .target import Target, logit_position


def cut_logits(bundle: ModelBundle, position: int | None) -> list[Hook]:
    """A pre-hook on the LM head keeping its input at ``position`` only (none for models
    without an LM head, or targets that may read every position)."""
    getter = getattr(bundle.model, "get_output_embeddings", None)
    try:
        head = getter() if callable(getter) else None
    except Exception:  # a model without the method's backing module
        head = None
    if head is None or position is None:
        return []

    def keep(_module: Any, args: tuple[Any, ...]) -> Any:
        x = args[0]
        if getattr(x, "ndim", 0) != 3 or x.shape[1] <= 1:
            return None
        p = position if position >= 0 else x.shape[1] + position
        return (x[:, p : p + 1], *args[1:])

    return [Hook(head, keep, "pre")]


def _input_shapes(bundle: ModelBundle, inputs: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``kind -> (rows, keys)`` of one input (images: prefix and patch tokens)."""
    if "input_ids" in inputs:
        n = int(inputs["input_ids"].shape[-1])
    else:
        ph, pw = patch_size(bundle.model)
        height, width = (int(x) for x in inputs["pixel_values"].shape[-2:])
        n = (height // ph) * (width // pw) + 4  # a few prefix tokens
    if "decoder_input_ids" in inputs:
        d = int(inputs["decoder_input_ids"].shape[-1])
        return {"encoder": (n, n), "decoder": (d, d), "cross": (d, n)}
    return {"self": (n, n)}


def ablation_estimate(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    rows: int,
    *,
    cut: bool,
    budget: _memory.Budget | None = None,
) -> _memory.MemoryEstimate:
    """What one ablation pass of ``rows`` copies of ``inputs`` allocates (its eager forward:
    activations and one layer's attention for every row, the gates' copies of the attention
    output, and the logits: one position per row when ``cut``, else every position, with a
    log-softmax copy)."""
    shapes = _input_shapes(bundle, inputs)
    batched = {k: (rows * q, k_) for k, (q, k_) in shapes.items()}
    positions = 1 if cut else max(q for q, _ in shapes.values())
    dims = _memory.model_dims(bundle.model)
    size = _memory.itemsize(bundle.dtype)
    fwd = _memory.forward_bytes(
        dims,
        n_heads=bundle.n_heads,
        shapes=batched,
        model_itemsize=size,
        eager=True,
        logits_rows=2 * rows * positions,
        position_bias=bundle.model_type in ("t5", "mt5", "umt5", "longt5"),
    )
    tokens = sum(q for q, _ in batched.values())
    gates = 3 * tokens * dims["hidden"] * size
    what = f"head ablation, {rows} rows of {max(q for q, _ in shapes.values()):,} tokens"
    return _memory.MemoryEstimate(what, {"forward pass": fwd, "gates": gates}, budget)


def gradient_estimate(
    bundle: ModelBundle, inputs: Mapping[str, Any], *, cut: bool, budget: _memory.Budget | None
) -> _memory.MemoryEstimate:
    """What the gate-gradient pass allocates: its forward keeps every layer's activations and
    attention (scores and softmax) for the backward pass, which allocates as much again."""
    shapes = _input_shapes(bundle, inputs)
    dims = _memory.model_dims(bundle.model)
    size = max(4, _memory.itemsize(bundle.dtype))
    n_l = bundle.n_layers
    tokens = sum(q for q, _ in shapes.values())
    acts = n_l * tokens * (12 * dims["hidden"] + 3 * dims["ffn"]) * size
    attn = n_l * bundle.n_heads * sum(q * k for q, k in shapes.values()) * 3 * size
    positions = 1 if cut else max(q for q, _ in shapes.values())
    logits = 3 * positions * dims["vocab"] * 4
    what = f"head gradients of {max(q for q, _ in shapes.values()):,} tokens"
    return _memory.MemoryEstimate(
        what, {"forward for backward": acts + attn, "backward": acts + attn, "logits": logits},
        budget,
    )  # fmt: skip


def ablation_rows(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    batch_size: int,
    *,
    cut: bool,
    budget: _memory.Budget,
    reserved: int = 0,
) -> int:
    """The most rows per ablation pass (at most ``batch_size``, at least 2: the clean row and
    one ablated) whose estimate fits ``budget`` beside ``reserved`` bytes; raises
    :class:`ResourceError` when two rows do not fit."""
    room = budget.bytes - reserved
    lo, hi = 2, max(2, batch_size)
    if ablation_estimate(bundle, inputs, lo, cut=cut).total > room:
        est = ablation_estimate(bundle, inputs, lo, cut=cut, budget=budget)
        held = f" beside {_memory.format_bytes(reserved)} of maps" if reserved else ""
        raise ResourceError(
            f"{est.describe()}{held}, more than the {budget}; nothing was run. Use a shorter "
            f"input (or raise max_memory= if you know more is free)"
        )
    while lo < hi:  # the estimate grows with the rows
        mid = (lo + hi + 1) // 2
        if ablation_estimate(bundle, inputs, mid, cut=cut).total <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def norms_estimate(
    bundle: ModelBundle,
    stack: Any,
    *,
    keep_vectors: bool = False,
    budget: _memory.Budget | None = None,
) -> _memory.MemoryEstimate:
    """What norm-based attention of ``stack`` allocates: the norms (the shape of its weights,
    float32), its forward pass (logits of one position) with every kept layer's values and
    attention output held for the check, and one layer's float64 verification (the weights,
    ``α·v`` and the vectors ``f_h(x_j)``); with ``keep_vectors`` every layer's vectors."""
    n_l, n_h, n_q, n_k = stack.weights.shape
    dims = _memory.model_dims(bundle.model)
    hidden = dims["hidden"]
    shapes = {"self": (max(n_q, n_k), max(n_q, n_k))}
    fwd = _memory.forward_bytes(
        dims,
        n_heads=bundle.n_heads,
        shapes=shapes,
        model_itemsize=_memory.itemsize(bundle.dtype),
        eager=True,
        logits_rows=1,
        position_bias=bundle.model_type in ("t5", "mt5", "umt5", "longt5"),
    )
    held = n_l * max(n_q, n_k) * 4 * hidden * 4
    layer = 3 * n_h * n_q * n_k * 8 + 3 * n_h * n_k * hidden * 8
    parts = {
        "norm-based attention": n_l * n_h * n_q * n_k * 4,
        "forward pass": fwd + held,
        "one layer's check": layer,
    }
    if keep_vectors:
        parts["vectors"] = 2 * n_l * n_h * n_k * hidden * 4
    what = f"norm-based attention of {n_q:,} x {n_k:,} tokens x {n_l} layers x {n_h} heads"
    return _memory.MemoryEstimate(what, parts, budget)


#: Rows per ablation pass of a "what mattered" summary at most (head_importance's default).
EXPLAIN_ROWS = 73


def explain_estimate(
    bundle: ModelBundle,
    stack: Any,
    source: Any,
    target: Any,
    method: str,
    *,
    budget: _memory.Budget,
) -> tuple[_memory.MemoryEstimate, int, int]:
    """``(estimate, rows per ablation pass, bytes held during the passes)`` of the "what
    mattered" summary of ``stack``: the norm-based attention (:func:`norms_estimate`), the
    rollout (every layer's head mean in float64, one layer's float64 copy while it is made),
    then the importance passes beside those two (as many rows as fit, or the gradient pass)."""
    norms = norms_estimate(bundle, stack)
    n_l, n_h, n_q, n_k = stack.weights.shape
    roll = n_l * n_q * n_k * 8 + n_h * n_q * n_k * 8 + 2 * n_q * n_k * 8
    held = norms.parts["norm-based attention"] + roll
    inputs = inputs_for(bundle, source)
    cut = bool(cut_logits(bundle, logit_position(Target.parse(target), bundle, inputs)))
    rows = EXPLAIN_ROWS
    if method == "ablation":
        rows = ablation_rows(bundle, inputs, EXPLAIN_ROWS, cut=cut, budget=budget, reserved=held)
        importance = ablation_estimate(bundle, inputs, rows, cut=cut)
    else:
        importance = gradient_estimate(bundle, inputs, cut=cut, budget=None)
    transient = max(
        norms.parts["forward pass"] + norms.parts["one layer's check"], importance.total
    )
    parts = {
        "norm-based attention": norms.parts["norm-based attention"],
        "rollout": roll,
        f"largest pass ({importance.what})": transient,
    }
    what = f"explain() of {n_q:,} tokens x {n_l} layers x {n_h} heads"
    return _memory.MemoryEstimate(what, parts, budget), rows, held


__all__ = [
    "EXPLAIN_ROWS",
    "ablation_estimate",
    "ablation_rows",
    "cut_logits",
    "explain_estimate",
    "gradient_estimate",
    "norms_estimate",
]
