"""Head importance: how much each head matters for a target (ablation or gradient).

* ablation - the change of a :class:`~.target.Target` when one head's output is zeroed (or
  mean-replaced); all ``layer × head`` ablations run as rows of a few batches that share the
  layers below each ablated layer;
* gradient - the gate gradient ``|∂target/∂ξ_h|`` at ``ξ = 1`` (Michel et al. 2019), normalised
  per layer.

Every pass runs through :func:`inspector.capture.run.forward` with gate hooks on the attention
output projections (found in :mod:`inspector.models.families`); hooks are always removed, and the
model is left exactly as loaded: eval mode, ``requires_grad`` flags, attention implementation and
``.grad`` untouched. Frames are indexed by ``(layer, head)``.

Memory: a language model's logits are cut to the one position the target reads before the LM
head runs (:func:`~.target.logit_position`), so a pass never holds ``rows x tokens x vocabulary``
logits; and the rows per ablation pass are the most of ``batch_size`` whose estimate
(:func:`ablation_estimate`) fits the budget, checked under the model's lock. A pass that does not
fit with a single ablated row is refused with :class:`~inspector.errors.ResourceError`.
"""

from __future__ import annotations

import contextlib
import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._progress import bar as progress_bar
from ..capture import memory as _memory
from ..capture.hooks import Hook, hooked
from ..capture.memory import MemoryLimit
from ..capture.run import forward
from ..capture.types import Capture, Tokens
from ..errors import InputError
from ..models.loading import ModelBundle
from ..models.structure import Structure
from .budget import ablation_estimate, ablation_rows, cut_logits, gradient_estimate
from .model import check_head, default_kind, input_device, inputs_for, structure
from .target import Resolved, Target, logit_position, resolve_target, target_values

Method = Literal["ablation", "gradient"]
AblationMode = Literal["zero", "mean"]


def _gate_hook(gate: Any, n_heads: int, mode: str, *, grow: int = 0) -> Callable[..., Any]:
    """Pre-hook on an output projection: head slice ``h`` becomes ``g·x_h (+ (1-g)·mean x_h)``.

    ``gate`` has shape ``(batch or 1, heads)``; a gate of 1 passes the head unchanged, 0 ablates
    it (zero, or its mean over positions when ``mode == "mean"``). ``grow`` first appends that
    many copies of row 0 of the input (see :func:`_shared_prefix_hooks`).
    """

    def hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = _append_row0(args[0], grow) if grow else args[0]
        b, s, width = x.shape
        heads = x.view(b, s, n_heads, width // n_heads)
        g = gate[:, None, :, None].to(x.dtype)
        if mode == "mean":
            mean = heads.mean(dim=1, keepdim=True)
            out = g * heads + (1 - g) * mean
        else:
            out = g * heads
        return (out.reshape(b, s, width), *args[1:])

    return hook


@contextlib.contextmanager
def ablated_heads(
    bundle: ModelBundle,
    heads: Iterable[tuple[int, int]],
    *,
    mode: AblationMode = "zero",
    kind: str | None = None,
) -> Iterator[None]:
    """Within the block, every forward pass of ``bundle.model`` runs with ``heads`` ablated.

    Args:
        bundle: a loaded model.
        heads: ``(layer, head)`` pairs to ablate; empty leaves the output bitwise unchanged.
        mode: ``zero`` the head's output, or replace it by its ``mean`` over positions.
        kind: the stack whose heads these are (an encoder-decoder's ``encoder``, ``decoder`` or
            ``cross``; default ``self`` / ``encoder``).

    Example:
        >>> with ablated_heads(bundle, [(0, 3)]):  # doctest: +SKIP
        ...     out = bundle.model(**inputs)
    """
    import torch

    found = structure(bundle, "head ablation", kind)
    _check_mode(mode)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        check_head(bundle, layer, head)
        by_layer.setdefault(layer, []).append(head)
    hooks = []
    device = next(bundle.model.parameters()).device
    for layer, hs in by_layer.items():
        gate = torch.ones(1, found.n_heads, device=device)
        gate[0, hs] = 0.0
        at = found.layers[layer]
        hooks.append(Hook(at.out, _gate_hook(gate, found.n_heads, mode), "pre", call=at.call))
    with hooked(bundle, hooks):
        yield


def _check_mode(mode: str) -> None:
    if mode not in ("zero", "mean"):
        raise InputError(f"ablation mode must be 'zero' or 'mean', not {mode!r}")


def _append_row0(x: Any, extra: int) -> Any:
    """``x`` with ``extra`` copies of its row 0 appended along the batch axis."""
    import torch

    return torch.cat([x, x[:1].expand(extra, *x.shape[1:])])


def _on_hidden(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    """Pre-hook (``with_kwargs``) applying ``fn`` to a module's input hidden states: the first
    positional argument, or the ``hidden_states`` keyword (LLaMA's attention)."""

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return hook


def _ablation_pass(
    bundle: ModelBundle,
    found: Structure,
    inputs: Mapping[str, Any],
    chunk: Sequence[tuple[int, int]],
    mode: str,
    extra: Sequence[Hook] = (),
) -> Any:
    """One forward pass whose row ``r >= 1`` ablates head ``chunk[r - 1]``; row 0 stays clean.

    Where the rows can share the layers below their ablated layer (``found.shared_prefix``)
    they do (:func:`_shared_prefix_hooks`); elsewhere the pass runs ``len(chunk) + 1`` copies
    of the input (:func:`_plain_hooks`). ``extra``: more hooks for the pass.
    """
    import torch

    device = input_device(inputs)
    if found.shared_prefix:
        hooks = _shared_prefix_hooks(found, chunk, mode, device)
    else:
        rows = len(chunk) + 1
        inputs = {
            k: v.expand(rows, *v.shape[1:])
            if isinstance(v, torch.Tensor) and v.shape[:1] == (1,)
            else v
            for k, v in inputs.items()
        }
        hooks = _plain_hooks(found, chunk, mode, device)
    return forward(bundle, inputs, hooks=[*hooks, *extra])


def _shared_prefix_hooks(
    found: Structure, chunk: Sequence[tuple[int, int]], mode: str, device: Any
) -> list[Hook]:
    """The hooks of an ablation pass that starts with a batch of 1 (the clean row).

    ``chunk`` is sorted by layer. In each layer ``l`` of ``chunk``, the rows ablating a head of
    ``l`` are added as copies of the clean row:

    * the block's input gets them (its residual stream needs them);
    * its attention module drops them again: their queries, keys, values and attention weights
      are the clean row's, computed once;
    * the output projection's pre-hook appends copies of the clean row's attention output and
      zeroes one head in each (:func:`_gate_hook`).

    Layers below ``l`` thus run once for all of ``l``'s ablations: 72 ablations of a 6-layer,
    12-head model cost about ``12·(6+5+...+1)`` row-layers instead of ``72·6``. Attention masks
    and position embeddings keep their batch of 1 and broadcast against the rows. Rows are
    independent, so each equals the same ablation in a plain batch (within float rounding).
    """
    import torch

    n_h = found.n_heads
    per_layer: dict[int, list[int]] = {}
    for li, hi in chunk:
        per_layer.setdefault(li, []).append(hi)
    hooks: list[Hook] = []
    rows = 1
    for li in sorted(per_layer):
        heads, layer = per_layer[li], found.layers[li]
        new = len(heads)
        gate = torch.ones(rows + new, n_h, device=device)
        gate[torch.arange(rows, rows + new), heads] = 0.0
        grow = _on_hidden(functools.partial(_append_row0, extra=new))
        keep = _on_hidden(operator.itemgetter(slice(None, rows)))
        hooks += [
            Hook(layer.block, grow, "pre_kw", call=layer.call),
            Hook(layer.attention, keep, "pre_kw", call=layer.call),
            Hook(layer.out, _gate_hook(gate, n_h, mode, grow=new), "pre", call=layer.call),
        ]
        rows += new
    return hooks


def _plain_hooks(
    found: Structure, chunk: Sequence[tuple[int, int]], mode: str, device: Any
) -> list[Hook]:
    """The hooks of an ablation pass of ``len(chunk) + 1`` copies of the input (for stacks
    where rows cannot share the layers below): row ``r``'s gate closes head ``chunk[r - 1]``."""
    import torch

    rows = len(chunk) + 1
    gates: dict[int, Any] = {}
    for r, (li, hi) in enumerate(chunk, start=1):
        gate = gates.setdefault(li, torch.ones(rows, found.n_heads, device=device))
        gate[r, hi] = 0.0
    return [
        Hook(
            found.layers[li].out,
            _gate_hook(g, found.n_heads, mode),
            "pre",
            call=found.layers[li].call,
        )
        for li, g in gates.items()
    ]


def _ablation_deltas(
    bundle: ModelBundle,
    found: Structure,
    inputs: Mapping[str, Any],
    target: Target,
    mode: str,
    batch_size: int,
    progress: bool | None = False,
    max_memory: MemoryLimit | None = None,
    reserved: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``delta[l, h] = target(head l,h ablated) - target(clean)``, batched.

    Each forward pass holds a clean row and ablated rows, which share the computation of the
    layers below their ablated layer (:func:`_ablation_pass`): up to ``batch_size`` rows,
    fewer where the budget (``max_memory``, less ``reserved`` bytes a caller holds) allows fewer
    (:func:`ablation_rows`, decided under the model's lock). The target is resolved on the clean
    row of the first pass.
    """
    import torch

    position = logit_position(target, bundle, inputs)
    extra = cut_logits(bundle, position)
    n_l, n_h = len(found.layers), found.n_heads
    plan = [(li, hi) for li in range(n_l) for hi in range(n_h)]
    deltas = np.zeros((n_l, n_h))
    clean_value = 0.0
    resolved: Resolved | None = None
    chosen: list[int] = []

    def estimate() -> _memory.MemoryEstimate:
        budget = _memory.memory_budget(max_memory)
        rows = ablation_rows(
            bundle, inputs, batch_size, cut=bool(extra), budget=budget, reserved=reserved
        )
        chosen.append(rows)
        est = ablation_estimate(bundle, inputs, rows, cut=bool(extra))
        parts = dict(est.parts)
        if reserved:
            parts["maps held"] = reserved
        return _memory.MemoryEstimate(est.what, parts, budget)

    with _memory.preflight(bundle.lock, estimate, "Use a shorter input"):
        per_chunk = max(1, chosen[-1] - 1)
        bar = progress_bar(total=len(plan), desc="ablating heads", unit=" heads", progress=progress)
        with bar, torch.inference_mode():
            for start in range(0, len(plan), per_chunk):
                chunk = plan[start : start + per_chunk]
                out = _ablation_pass(bundle, found, inputs, chunk, mode, extra)
                if resolved is None:  # row 0 is the unablated model
                    resolved = resolve_target(target, bundle, inputs, out)
                vals = target_values(resolved, out, len(chunk) + 1).double().cpu().numpy()
                del out  # the next pass's logits and activations are not held beside these
                clean_value = float(vals[0])
                for r, (li, hi) in enumerate(chunk, start=1):
                    deltas[li, hi] = vals[r] - vals[0]
                bar.update(len(chunk))
    assert resolved is not None
    return deltas, np.full((n_l, n_h), clean_value), resolved.description


def _gate_gradients(
    bundle: ModelBundle,
    found: Structure,
    inputs: Mapping[str, Any],
    target: Target,
    mode: str,
    max_memory: MemoryLimit | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``∂target/∂ξ[l, h]`` at ξ = 1 (``torch.autograd.grad``: no ``.grad`` is written)."""
    import torch

    if target.kind == "embedding" and target.embedding == "cosine":
        raise InputError(
            "target embedding:cosine has zero gradient at the unablated model (cosine is at its "
            "maximum 1 there); use method='ablation' or target='embedding' (the projection)"
        )
    n_h = found.n_heads
    device = input_device(inputs)
    gates = [torch.ones(1, n_h, device=device, requires_grad=True) for _ in found.layers]
    hooks = [
        Hook(layer.out, _gate_hook(gates[li], n_h, mode), "pre", call=layer.call)
        for li, layer in enumerate(found.layers)
    ]
    cut = cut_logits(bundle, logit_position(target, bundle, inputs))
    hooks += cut
    with (
        _memory.preflight(
            bundle.lock,
            lambda: gradient_estimate(
                bundle, inputs, cut=bool(cut), budget=_memory.memory_budget(max_memory)
            ),
            "Use a shorter input, or method='ablation' (it runs in passes that fit)",
        ),
        hooked(bundle),
        torch.enable_grad(),
    ):
        out = forward(bundle, inputs, hooks=hooks, grad=True)  # at ξ = 1: the clean output
        resolved = resolve_target(target, bundle, inputs, out)
        value = target_values(resolved, out, 1)
        grads = torch.autograd.grad(value.sum(), gates, allow_unused=True)
    g = np.stack(
        [np.zeros(n_h) if gr is None else gr[0].detach().double().cpu().numpy() for gr in grads]
    )
    return g, np.full(g.shape, float(value.detach()[0])), resolved.description


def _normalise_layers(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)


def _head_frame(
    columns: Mapping[str, np.ndarray], attrs: dict[str, Any], *, repeat: int = 1
) -> pd.DataFrame:
    """A frame on the ``(layer, head)`` MultiIndex from ``(..., layer, head)`` arrays (``repeat``
    stacks the index that many times, for one block of rows per text)."""
    n_l, n_h = next(iter(columns.values())).shape[-2:]
    heads = pd.MultiIndex.from_product([range(n_l), range(n_h)], names=["layer", "head"])
    index = (
        heads
        if repeat == 1
        else pd.MultiIndex.from_arrays(
            [np.tile(heads.get_level_values(i), repeat) for i in range(2)], names=["layer", "head"]
        )
    )
    frame = pd.DataFrame({k: np.asarray(v).reshape(-1) for k, v in columns.items()}, index=index)
    frame.attrs["inspector"] = attrs
    return frame


def _raw_importance(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    target: Target | str | Callable[[Any], Any] | None,
    method: str,
    mode: str,
    batch_size: int,
    progress: bool | None = False,
    kind: str | None = None,
    max_memory: MemoryLimit | None = None,
    reserved: int = 0,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Signed first-order / exact deltas ``(layer, head)``, the clean target value, description."""
    found = structure(bundle, "head importance", kind)
    _check_mode(mode)
    spec = Target.parse(target)
    if method == "ablation":
        if not isinstance(batch_size, int) or batch_size < 2:
            raise InputError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        return _ablation_deltas(
            bundle, found, inputs, spec, mode, batch_size, progress, max_memory, reserved
        )
    if method == "gradient":
        grads, clean, desc = _gate_gradients(bundle, found, inputs, spec, mode, max_memory)
        # ξ: 1 -> 0 changes the target by about -∂t/∂ξ: the first-order ablation delta.
        return -grads, clean, desc
    raise InputError(f"method must be 'ablation' or 'gradient', not {method!r}")


def head_importance(
    bundle: ModelBundle,
    inputs: Mapping[str, Any] | Tokens | Capture | str,
    *,
    target: Target | str | Callable[[Any], Any] | None = None,
    method: Method = "ablation",
    mode: AblationMode = "zero",
    batch_size: int = 73,
    progress: bool | None = None,
    kind: str | None = None,
    max_memory: MemoryLimit | None = None,
    reserved: int = 0,
) -> pd.DataFrame:
    """How much each head matters for ``target`` on one input.

    Args:
        bundle: a loaded model.
        inputs: a text, the :class:`Tokens` of a capture, a capture (an encoder-decoder's
            encoder and decoder tokens), or ready model inputs (batch of 1).
        target: see :class:`Target` (default ``"auto"``).
        method: ``ablation`` - ablate one head at a time and record ``delta = target(ablated) -
            target(clean)``; all ``layer × head`` ablations run as rows of a few batches (plus one
            clean row per batch). ``gradient`` - ``∂target/∂ξ_h`` for a gate ``ξ`` on each
            head's output at ``ξ = 1`` (one forward and one backward pass); ``delta`` is then the
            first-order estimate ``-∂target/∂ξ_h``.
        mode: ablate by ``zero``-ing the head's output or replacing it by its ``mean`` over
            positions.
        batch_size: rows per forward pass for ``ablation`` (at most: fewer where the memory
            budget allows fewer, :func:`ablation_rows`).
        progress: a bar over the ablated heads on stderr (``None``: on a terminal, elsewhere a
            line every 30 s; SmolLM2's 270 ablations take minutes on a CPU).
        kind: whose heads: ``self``, or an encoder-decoder's ``encoder`` (default),
            ``decoder`` or ``cross`` stack.
        max_memory: memory budget of a pass (``"4GB"``; default: what is free now, checked
            under the model's lock); a pass that cannot fit is refused with ``ResourceError``.
        reserved: bytes the caller holds for this run that the budget must leave room for
            (with an explicit ``max_memory``).

    Returns:
        Frame on ``(layer, head)`` with ``importance, delta, target_clean``, one row per head.
        ``importance`` is ``|delta|`` for ablation and ``|∂target/∂ξ|`` divided by its L2 norm
        over the layer's heads for gradient (Michel et al. 2019). ``attrs['inspector']`` names the
        target.
    """
    model_inputs = inputs_for(bundle, inputs)
    delta, clean, desc = _raw_importance(
        bundle,
        model_inputs,
        target,
        method,
        mode,
        batch_size,
        progress,
        kind=kind,
        max_memory=max_memory,
        reserved=reserved,
    )
    importance = np.abs(delta) if method == "ablation" else _normalise_layers(np.abs(delta))
    attrs = {"target": desc, "method": method, "mode": mode, "n_texts": 1}
    return _head_frame(
        {"importance": importance, "delta": delta, "target_clean": clean},
        {**attrs, "kind": kind or default_kind(bundle)},
    )


def head_importance_many(
    bundle: ModelBundle,
    texts: Sequence[str],
    *,
    target: Target | str | Callable[[Any], Any] | None = None,
    method: Method = "ablation",
    mode: AblationMode = "zero",
    batch_size: int = 73,
    per_text: bool = False,
    progress: bool | None = None,
    kind: str | None = None,
    max_memory: MemoryLimit | None = None,
) -> pd.DataFrame:
    """Head importance averaged over many texts (one input at a time, no padding).

    ``progress`` draws a bar over the texts on stderr (``None``: on a terminal; elsewhere a
    line every 30 s); ``max_memory``: the budget of each pass (see :func:`head_importance`).

    Returns:
        Frame on ``(layer, head)`` with ``importance, delta, std`` (mean over texts; ``std`` of
        the per-text importance; for ``gradient`` the mean ``|∂t/∂ξ|`` is normalised per layer
        after averaging), or with ``per_text=True`` one row per text and head, with a ``text``
        column first.
    """
    if isinstance(texts, str) or not texts:
        raise InputError("texts must be a non-empty list of strings")
    items: Iterable[str] = progress_bar(
        texts, desc="head importance", unit=" texts", progress=progress
    )
    deltas = []
    desc = ""
    for text in items:
        d, _, desc = _raw_importance(
            bundle,
            inputs_for(bundle, text),
            target,
            method,
            mode,
            batch_size,
            kind=kind,
            max_memory=max_memory,
        )
        deltas.append(d)
    stack = np.stack(deltas)  # (text, layer, head)
    attrs = {"target": desc, "method": method, "mode": mode, "n_texts": len(texts)}
    attrs["kind"] = kind or default_kind(bundle)
    n_t = stack.shape[0]
    if per_text:
        imp = np.abs(stack)
        if method == "gradient":
            imp = np.stack([_normalise_layers(x) for x in imp])
        text_index = np.broadcast_to(np.arange(n_t, dtype=np.int32)[:, None, None], stack.shape)
        columns = {"text": text_index, "importance": imp, "delta": stack}
        return _head_frame(columns, attrs, repeat=n_t)
    mean_abs = np.abs(stack).mean(axis=0)
    importance = _normalise_layers(mean_abs) if method == "gradient" else mean_abs
    return _head_frame(
        {"importance": importance, "delta": stack.mean(axis=0), "std": np.abs(stack).std(axis=0)},
        attrs,
    )


__all__ = [
    "AblationMode",
    "Method",
    "ablated_heads",
    "head_importance",
    "head_importance_many",
]
