"""One forward pass that keeps what a trace needs to recompute any layer's attention rows later.

Tracing a prediction (:mod:`inspector.explain.attribution`, :mod:`inspector.explain.routes`)
needs attention rows of query positions that are only known after the pass (the route walk goes
top-down, the model runs bottom-up). :class:`KeptAttention` keeps, per layer, what those rows
are made of, and :func:`run_kept` runs the model once with it and the caller's own hooks:

* ``blockwise`` (models that dispatch attention through transformers' ``AttentionInterface``):
  the model runs ``sdpa`` for its output while :class:`KeptAttention`, registered as its
  attention function, keeps the post-rotary queries and keys (``heads x T x d``, not
  ``T x T``) with the mask, scaling and position bias it was called with; :meth:`rows` later
  recomputes the weights of any query rows as :class:`~.blockwise.BlockwiseAttention` does
  (same scaling, mask, causal rule and grouped-query mapping), in float64.
* ``eager``: forward hooks on the attention modules keep each layer's ``(head, T, T)`` weights.

Nothing here interprets the rows; this module only runs the model and keeps tensors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import CaptureError, InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from . import memory as _memory
from .blockwise import AttentionCall, SdpaAttentionFunction, soft_capped
from .hooks import Hook, attention_function, attention_hooks, dispatches_attention
from .memory import MemoryLimit
from .run import bundle_sites, forward

TraceMethod = Literal["auto", "eager", "blockwise"]


@dataclass
class _Kept:
    """What one attention call of one layer was made of (blockwise) or its weights (eager)."""

    query: Any = None  # (heads, q, d) float32
    key: Any = None  # (kv_heads, k, d) float32
    mask: Any = None
    scaling: float = 1.0
    causal: bool = False
    position_bias: Any = None
    weights: Any = None  # (heads, q, k), eager


class KeptAttention(SdpaAttentionFunction):
    """Keeps each layer's attention inputs (or weights) of one forward pass, by stack kind.

    Args:
        sites: attention modules by kind (:func:`inspector.capture.run.bundle_sites`).
        kinds: the stacks to keep (``self``; an encoder-decoder's ``decoder`` / ``cross``).
        model_name: for messages.
    """

    def __init__(
        self, sites: Mapping[str, Sequence[Any]], kinds: Sequence[str], model_name: str = "model"
    ) -> None:
        super().__init__(model_name)
        self.kinds = tuple(kinds)
        self.sites = {k: list(sites[k]) for k in self.kinds}
        for kind in self.kinds:
            for li, site in enumerate(self.sites[kind]):
                self.watch(kind, li, site)
        self.kept: dict[tuple[str, int], _Kept] = {}
        self.method = "blockwise"

    # ------------------------------------------------------------------ the two ways in

    what = "trace"

    def seen(self, where: tuple[str, int], call: AttentionCall) -> None:
        """Keep one layer's attention inputs (the blockwise way in: sdpa runs the output)."""
        self.kept[where] = _Kept(
            query=call.query[0].detach().float(),
            key=call.key[0].detach().float(),
            mask=call.mask,
            scaling=call.scale,
            causal=call.causal,
            position_bias=call.position_bias,
        )

    def eager_hooks(self) -> list[Hook]:
        """Forward hooks keeping every layer's eager ``(head, q, k)`` weights."""
        self.method = "eager"

        def keep(kind: str, li: int, w: Any) -> None:
            self.kept[(kind, li)] = _Kept(weights=w[0].detach().float())

        return attention_hooks(
            self.sites, list(range(len(next(iter(self.sites.values()))))), keep,
            model_name=self.model_name,
        )  # fmt: skip

    # ------------------------------------------------------------------------ reading

    def n_keys(self, kind: str, layer: int) -> int:
        """Keys of one layer's attention."""
        kept = self._get(kind, layer)
        return int(kept.weights.shape[-1] if kept.weights is not None else kept.key.shape[1])

    def rows(self, kind: str, layer: int, positions: Sequence[int]) -> Any:
        """The attention weights of query ``positions`` of one layer, ``(head, rows, key)``
        float64 (a torch tensor): recomputed from the kept queries and keys, or cut from the
        kept eager weights."""
        import torch

        kept = self._get(kind, layer)
        idx = torch.as_tensor(list(positions), dtype=torch.long)
        if kept.weights is not None:
            return kept.weights.index_select(1, idx).double()
        q = kept.query.index_select(1, idx).double()  # (h, r, d)
        k = kept.key.double()  # (kv, n_k, d)
        n_heads, n_kv = int(q.shape[0]), int(k.shape[0])
        if n_heads % n_kv:
            raise CaptureError(f"{self.model_name}: {n_heads} heads cannot share {n_kv} keys")
        group = n_heads // n_kv
        scores = (
            torch.matmul(
                q.reshape(n_kv, group, len(idx), -1), k.unsqueeze(1).transpose(-1, -2)
            ).flatten(0, 1)
            * kept.scaling
        )  # (h, r, n_k)
        n_k = int(k.shape[1])
        if kept.position_bias is not None:
            scores += _pick(kept.position_bias, idx, n_k).double()
        if kept.mask is not None:
            part = _pick(kept.mask, idx, n_k)
            if part.dtype == torch.bool:
                scores.masked_fill_(~part, float("-inf"))
            else:
                scores += part.double()
        if kept.causal:
            cols = torch.arange(n_k)[None, :]
            scores.masked_fill_(cols > idx[:, None], float("-inf"))
        return torch.softmax(scores, dim=-1)

    def _get(self, kind: str, layer: int) -> _Kept:
        kept = self.kept.get((kind, layer))
        if kept is None:
            raise CaptureError(
                f"{self.model_name}: the {kind} attention of layer {layer} did not run during "
                f"the traced forward pass"
            )
        return kept

    def check(self) -> None:
        """Raise unless every layer of every kept kind ran."""
        for kind in self.kinds:
            for li in range(len(self.sites[kind])):
                self._get(kind, li)


def _pick(t: Any, idx: Any, n_k: int) -> Any:
    """Rows ``idx`` and the first ``n_k`` keys of a ``(batch, head|1, query|1, key)`` tensor."""
    part = t[0, :, :, :n_k]
    return part if part.shape[1] == 1 else part.index_select(1, idx.to(part.device))


def resolve_trace_method(bundle: ModelBundle, method: str) -> str:
    """``eager`` or ``blockwise`` for ``method`` (``auto``: blockwise where the model
    dispatches attention through the interface and uses no soft-capping)."""
    if method not in ("auto", "eager", "blockwise"):
        raise InputError(f"method must be 'auto', 'eager' or 'blockwise', got {method!r}")
    supported = dispatches_attention(bundle.model)
    capped = soft_capped(bundle.model)
    if method == "auto":
        return "blockwise" if supported and not capped else "eager"
    if method == "blockwise" and not supported:
        raise UnsupportedModelError(
            f"{bundle.name}: {type(bundle.model).__name__} does not dispatch attention through "
            f"transformers' AttentionInterface; trace it with method='eager'"
        )
    return method


def trace_estimate(
    bundle: ModelBundle,
    shapes: Mapping[str, tuple[int, int]],
    method: str,
    recorded: Mapping[str, int] | None = None,
    max_memory: MemoryLimit | None = None,
) -> _memory.MemoryEstimate:
    """What :func:`run_kept` allocates for attention ``shapes`` (``kind -> (rows, keys)``):
    the kept queries and keys (blockwise; eager: the ``heads x rows x keys`` weights), the
    forward pass's transient, what the caller's hooks keep (``recorded``, by part), and the
    walk's scratch over one layer's values (float32 and float64 copies of ``heads x keys x
    head_dim``, twice)."""
    dims = _memory.model_dims(bundle.model)
    n_layers, heads, kv = bundle.n_layers, bundle.n_heads, bundle.n_kv_heads
    head_dim = dims["hidden"] // max(1, heads)
    if method == "eager":
        kept = sum(_memory.attention_bytes(n_layers, heads, r, k) for r, k in shapes.values())
    else:
        kept = sum(n_layers * (heads * r + kv * k) * head_dim * 4 for r, k in shapes.values())
    keys = max(k for _, k in shapes.values())
    parts = {
        "kept queries and keys" if method != "eager" else "kept attention": kept,
        "forward pass": _memory.forward_bytes(
            dims,
            n_heads=heads,
            shapes=shapes,
            model_itemsize=_memory.itemsize(bundle.dtype),
            eager=method == "eager",
            logits_rows=len(shapes),
        ),
        **(recorded or {}),
        "walk": 2 * heads * keys * head_dim * (4 + 8),
        "runtime": _memory.RUNTIME_BYTES,
    }
    rows = max(r for r, _ in shapes.values())
    return _memory.estimate(f"a trace of {rows:,} tokens", parts, max_memory)


def hook_bytes(
    bundle: ModelBundle, n: int, *, blocks: int = 0, outputs: Sequence[Any] = ()
) -> dict[str, int]:
    """What a caller's hooks keep of an ``n``-token pass, float32, for :func:`trace_estimate`:
    ``blocks`` hidden-size vectors per token (block inputs) and the whole output of each of the
    linear modules ``outputs`` (value sources)."""
    hidden = _memory.model_dims(bundle.model)["hidden"]
    width = sum(
        int(getattr(m, "out_features", 0) or getattr(m, "nf", 0) or hidden) for m in outputs
    )
    return {"block inputs": blocks * n * hidden * 4, "values": n * width * 4}


def run_kept(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    *,
    kinds: Sequence[str],
    hooks: Iterable[Hook] = (),
    method: str = "auto",
    recorded: Mapping[str, int] | None = None,
    max_memory: MemoryLimit | None = None,
    **call_kw: Any,
) -> tuple[Any, KeptAttention]:
    """One forward pass with ``hooks``, keeping the attention of ``kinds`` for later rows,
    after a memory pre-flight (:func:`trace_estimate`: ``recorded`` is what ``hooks`` keep, by
    part; ``max_memory`` the budget, default what is free).

    Returns:
        The model's output and the :class:`KeptAttention`.

    Raises:
        ResourceError: the estimate does not fit the budget (nothing was run).
    """
    sites = bundle_sites(bundle)
    if not sites or any(len(sites.get(k, ())) != bundle.stack_shape(k)[0] for k in kinds):
        raise UnsupportedModelError(
            f"{bundle.name}: its attention modules were not found, so its attention cannot be "
            f"traced"
        )
    kept = KeptAttention(sites, kinds, bundle.name)
    method = resolve_trace_method(bundle, method)
    hooks = list(hooks)
    shapes = _shapes(inputs, kinds)
    if max(r for r, _ in shapes.values()) >= _memory.TRIM_FROM_TOKENS:
        # after each layer's attention: its freed temporaries back to the system (see there)
        hooks += [
            Hook(site.module, lambda *_: _memory.release_freed_memory())
            for kind in kinds
            for site in sites[kind]
        ]
    with _memory.preflight(
        bundle.lock,
        lambda: trace_estimate(bundle, shapes, method, recorded, max_memory),
        _memory.ADVICE["trace"],
    ):
        if method == "eager":
            if any(s.needs_output_attentions for k in kinds for s in sites[k]):
                call_kw["output_attentions"] = True
            out = forward(bundle, inputs, hooks=[*hooks, *kept.eager_hooks()], **call_kw)
        else:
            with attention_function(bundle, kept):
                out = forward(bundle, inputs, hooks=hooks, **call_kw)
    kept.check()
    return out, kept


def _shapes(inputs: Mapping[str, Any], kinds: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``kind -> (rows, keys)`` of the attention stacks a trace runs."""
    n = int(inputs["input_ids"].shape[-1])
    d = int(inputs["decoder_input_ids"].shape[-1]) if "decoder_input_ids" in inputs else n
    table = {"self": (n, n), "encoder": (n, n), "decoder": (d, d), "cross": (d, n)}
    return {k: table[k] for k in kinds}


__all__ = [
    "KeptAttention",
    "TraceMethod",
    "hook_bytes",
    "resolve_trace_method",
    "run_kept",
    "trace_estimate",
]
