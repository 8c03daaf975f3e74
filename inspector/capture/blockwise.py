"""Attention weights a block of query rows at a time, from post-rotary queries and keys.

Eager attention materialises ``heads x T x T`` per layer (2.4 GB at 8k tokens on SmolLM2). A
scan goes below that: the model runs its ``sdpa`` kernel for the layer's output (memory O(T)),
and :class:`BlockwiseAttention`, registered as the model's attention function
(:func:`inspector.capture.hooks.attention_function`), recomputes the weights of ``block_rows``
query rows at a time from the very query and key tensors the kernel got: same scaling, same mask
(boolean or additive), the same causal rule as ``sdpa`` (upper-left aligned, and only when no
mask is given), T5's position bias, and grouped-query attention (query head ``h`` reads key head
``h // (heads / kv_heads)``, as ``repeat_kv`` does). Each block, ``(head, rows, key)`` float32
on the CPU, goes to a consumer and is dropped, so memory is O(block_rows x T) per head.

:func:`weight_blocks` cuts an eager layer's full weights into the same blocks, so both paths
feed consumers identically. Nothing here calls a model; :mod:`.scan` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CaptureError, UnsupportedModelError
from .hooks import AttentionSite, kept_sites

#: ``on_block(kind, layer_position, row_start, block)``: ``block`` is ``(head, rows, key)``.
BlockFn = Callable[[str, int, int, np.ndarray], None]

#: Keyword arguments of an attention call that change the weights in ways sdpa cannot run.
_REFUSED_KWARGS = ("softcap", "s_aux", "sinks")


def sdpa_output(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    model_name: str,
    what: str,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """The attention output as transformers' ``sdpa`` computes it, for an attention function
    that also reads the weights; refuses what sdpa cannot run (soft-capping, sinks), saying to
    ``what`` (``scan``, ``trace``) the model with ``method='eager'``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    for name in _REFUSED_KWARGS:
        if kwargs.get(name) is not None:
            raise UnsupportedModelError(
                f"{model_name}: its attention uses {name!r}, which the blockwise path cannot "
                f"reproduce with sdpa; {what} it with method='eager'"
            )
    out: tuple[Any, Any] = sdpa_attention_forward(
        module, query, key, value, attention_mask, **kwargs
    )
    return out


#: Inputs of at least this many tokens are captured block by block where the model allows
#: (:func:`records_by_blocks`): eager attention computes every layer's ``heads x T x T`` scores,
#: softmax and cast (7 GB at 8k tokens on SmolLM2) even when one layer is kept.
BLOCKWISE_FROM = 1024


def records_by_blocks(
    bundle: Any, sites: Mapping[str, Sequence[AttentionSite]], shapes: Mapping[str, Any], batch: int
) -> bool:
    """True when :func:`inspector.capture.run.record` runs ``sdpa`` and rebuilds the kept layers'
    weights block by block instead of running eager attention: one input of
    :data:`BLOCKWISE_FROM` tokens or more, a single self-attention stack of full-attention
    layers, a model that dispatches attention through transformers' interface, and no
    soft-capping (which ``sdpa`` cannot run)."""
    from .hooks import dispatches_attention

    if batch != 1 or set(shapes) != {"self"} or shapes["self"][0] < BLOCKWISE_FROM:
        return False
    if any(site.expand is not None for site in sites.get("self", ())):
        return False  # local (windowed, bucketed) attention keeps padded weights
    return not soft_capped(bundle.model) and dispatches_attention(bundle.model)


def soft_capped(model: Any) -> bool:
    """Whether ``model`` soft-caps its attention scores (Gemma 2), which ``sdpa`` cannot run."""
    return getattr(getattr(model, "config", None), "attn_logit_softcapping", None) is not None


def rows_per_block(n_heads: int, n_keys: int, budget_bytes: int = 32 * 2**20) -> int:
    """Query rows per block so that one block's float32 scratch stays near ``budget_bytes``."""
    per_row = max(1, n_heads * n_keys * 4 * 4)
    return int(max(8, min(4096, budget_bytes // per_row)))


def to_numpy(block: Any) -> np.ndarray:
    """A ``(head, rows, key)`` tensor as float32 numpy on the CPU (a view when it already is)."""
    import torch

    t = block.detach()
    if t.device.type != "cpu" or t.dtype != torch.float32:
        t = t.to(device="cpu", dtype=torch.float32)
    return t.numpy()


def weight_blocks(
    weights: Any, heads: Sequence[int], block_rows: int, *, last_row_only: bool = False
) -> Iterator[tuple[int, np.ndarray]]:
    """``(row_start, block)`` pieces of an eager layer's ``(1, head, query, key)`` weights."""
    import torch

    if weights.dim() != 4 or weights.shape[0] != 1:
        raise CaptureError(f"expected (1, head, query, key) weights, got {tuple(weights.shape)}")
    w = weights[0]
    if len(heads) != w.shape[0]:
        w = w.index_select(0, torch.tensor(list(heads), device=w.device))
    n = int(w.shape[1])
    starts = [n - 1] if last_row_only else range(0, n, block_rows)
    for r0 in starts:
        yield r0, to_numpy(w[:, r0 : min(n, r0 + block_rows)])


@dataclass(frozen=True)
class AttentionCall:
    """What one call of an attention function weighs its keys with (a batch of one)."""

    module: Any
    query: Any  # (1, heads, q, d), post-rotary
    key: Any  # (1, kv_heads, k, d)
    mask: Any  # boolean or additive, (1, head|1, q|1, k), or None
    scaling: float | None
    is_causal: bool | None
    position_bias: Any  # T5's, (1, head, q|1, k), or None

    @property
    def causal(self) -> bool:
        """Whether ``sdpa`` applies its causal mask: the call's ``is_causal`` (else the
        module's, else True), and only without a mask and for more than one query row."""
        causal = self.is_causal
        if causal is None:
            causal = getattr(self.module, "is_causal", True)
        return bool(causal) and int(self.query.shape[2]) > 1 and self.mask is None

    @property
    def scale(self) -> float:
        """The call's ``scaling``, else sdpa's default ``1 / sqrt(head_dim)``."""
        return float(self.scaling) if self.scaling is not None else self.query.shape[-1] ** -0.5


class SdpaAttentionFunction:
    """An attention function that runs ``sdpa`` for the output and hands the inputs of each
    watched module's call (one input at a time) to :meth:`seen`.

    Call it as transformers calls an attention function:
    ``fn(module, query, key, value, attention_mask, scaling=..., **kwargs) -> (output, None)``.
    Subclasses watch modules with :meth:`watch` and say in :attr:`what` (``scan``, ``trace``)
    what the user runs, for messages.
    """

    what = "scan"

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.where: dict[int, tuple[str, int]] = {}

    def watch(self, kind: str, layer_position: int, site: Any) -> None:
        """Hand over the calls of ``site``'s attention module as ``(kind, layer_position)``;
        every module inside it counts (the module transformers hooks may wrap the one that
        calls the attention function: T5's T5LayerSelfAttention around T5Attention)."""
        for module in site.module.modules():
            self.where[id(module)] = (kind, layer_position)

    def __call__(
        self,
        module: Any,
        query: Any,
        key: Any,
        value: Any,
        attention_mask: Any,
        dropout: float = 0.0,
        scaling: float | None = None,
        is_causal: bool | None = None,
        position_bias: Any = None,
        **kwargs: Any,
    ) -> tuple[Any, None]:
        """The attention function (transformers' signature): sdpa's output."""
        out = sdpa_output(
            module, query, key, value, attention_mask, self.model_name, self.what,
            dropout=dropout, scaling=scaling, is_causal=is_causal, position_bias=position_bias,
            **kwargs,
        )  # fmt: skip
        where = self.where.get(id(module))
        if where is not None:
            if query.shape[0] != 1:
                raise CaptureError(
                    f"{self.model_name}: a {self.what} runs one input at a time, got a batch "
                    f"of {query.shape[0]}"
                )
            call = AttentionCall(
                module, query, key, attention_mask, scaling, is_causal, position_bias
            )
            self.seen(where, call)
        return out

    def seen(self, where: tuple[str, int], call: AttentionCall) -> None:
        """One watched call, ``where`` = ``(kind, layer_position)``."""
        raise NotImplementedError


class BlockwiseAttention(SdpaAttentionFunction):
    """The attention function a scan registers: ``sdpa`` for the output, weights by blocks.

    Args:
        sites: attention modules by kind (:func:`inspector.capture.hooks.attention_sites`).
        layers / heads: model indexes to measure (others run sdpa only).
        on_block: the consumer of every block.
        block_rows: query rows per block.
        last_row_only: hand over only each call's last query row (generation steps).
        model_name: for messages.
    """

    def __init__(
        self,
        sites: Mapping[str, Sequence[AttentionSite]],
        layers: Sequence[int],
        heads: Sequence[int],
        on_block: BlockFn,
        *,
        block_rows: int = 256,
        last_row_only: bool = False,
        model_name: str = "model",
    ) -> None:
        super().__init__(model_name)
        for kind, li, _, site in kept_sites(sites, layers, model_name):
            self.watch(kind, li, site)
        self.heads = tuple(heads)
        self.on_block = on_block
        self.block_rows = int(block_rows)
        self.last_row_only = last_row_only
        self.filled: dict[tuple[str, int], int] = {}
        self.calls = 0

    def seen(self, where: tuple[str, int], call: AttentionCall) -> None:
        import torch

        self.calls += 1
        query, key, mask, position_bias = call.query, call.key, call.mask, call.position_bias
        n_q, n_k = int(query.shape[2]), int(key.shape[2])
        n_heads, n_kv = int(query.shape[1]), int(key.shape[1])
        if n_heads % n_kv:
            raise CaptureError(
                f"{self.model_name}: {n_heads} query heads cannot share {n_kv} key heads"
            )
        # sdpa's rule, upper-left aligned (keys past the query count are cut, as
        # sdpa_attention_forward does).
        causal = call.causal
        if causal and n_k > n_q:
            n_k = n_q
        heads = torch.tensor(self.heads, device=query.device)
        group = n_heads // n_kv
        if self.heads == tuple(range(n_heads)):
            # every head: (kv, group, rows, d) @ (kv, 1, d, keys), views of the model's own
            # tensors, no repeated keys (grouped-query heads share their key head)
            q = query[0].float().reshape(n_kv, group, n_q, -1)
            k_t = key[0, :, :n_k].float().unsqueeze(1).transpose(-1, -2)
        else:
            q = query[0].index_select(0, heads).float().unsqueeze(1)
            k_t = key[0, :, :n_k].index_select(0, heads // group).float().unsqueeze(1)
            k_t = k_t.transpose(-1, -2)
        scale = call.scale
        lowest = torch.finfo(torch.float32).min
        start = self.filled.get(where, 0)
        starts = [n_q - 1] if self.last_row_only else range(0, n_q, self.block_rows)
        for r0 in starts:
            r1 = min(n_q, r0 + self.block_rows)
            # a causal block never sees keys past its last row: compute only those (about half
            # the work), the rest of each row is exactly 0 as in eager's softmax
            width = r1 if causal else n_k
            scores = torch.matmul(q[:, :, r0:r1], k_t[..., :width]).flatten(0, 1) * scale
            if position_bias is not None:
                scores += _rows(position_bias, r0, r1, width, heads).float()
            if mask is not None:
                part = _rows(mask, r0, r1, width, None)
                if part.dtype == torch.bool:
                    scores.masked_fill_(~part, lowest)
                else:
                    scores += part.float()
            if causal:
                rows = torch.arange(r0, r1, device=scores.device)[:, None]
                cols = torch.arange(width, device=scores.device)[None, :]
                scores.masked_fill_(cols > rows, lowest)
            weights = torch.softmax(scores, dim=-1)
            del scores
            if width < n_k:
                full = weights.new_zeros((weights.shape[0], r1 - r0, n_k))
                full[:, :, :width] = weights
                weights = full
            self.on_block(where[0], where[1], start + r0, to_numpy(weights))
        self.filled[where] = start + n_q


def _rows(t: Any, r0: int, r1: int, n_k: int, heads: Any) -> Any:
    """Rows ``r0:r1`` and the first ``n_k`` keys of a ``(batch, head|1, query, key)`` tensor."""
    part = t[0, :, :, :n_k] if t.shape[2] == 1 else t[0, :, r0:r1, :n_k]
    if heads is not None and part.shape[0] != 1:
        part = part.index_select(0, heads)
    return part


__all__ = [
    "AttentionCall",
    "BlockFn",
    "BlockwiseAttention",
    "SdpaAttentionFunction",
    "rows_per_block",
    "sdpa_output",
    "to_numpy",
    "weight_blocks",
]
