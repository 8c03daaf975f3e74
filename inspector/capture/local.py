"""Local attention (LED's sliding window, LongT5's blocks) as full ``(query, key)`` matrices.

Some encoders never form a ``query x key`` matrix: LED (Longformer's attention) scores each query
against a window of ``2w + 1`` keys around it, LongT5's local attention each block of queries
against its own and the two neighbouring blocks. What such a module returns is expanded here to
the matrix it implies - its weights at their keys, zeros everywhere else - over the padded
sequence the model ran on. The recorder cuts the padding away; every kept row must then still
sum to 1 (the capture verifies it), so a weight on a position outside the input would be caught.

What cannot be written as a matrix over the input's tokens is refused with the reason: LongT5's
transient-global attention also attends to block summaries that are not tokens. The module found
is judged by its own attributes (``one_sided_attn_window_size``, ``block_len``,
``global_block_size``), not by a model name.

Pure tensor reshaping; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import CaptureError, UnsupportedModelError


def expander(module: Any, weights: Any, name: str) -> Callable[[Any], Any] | None:
    """How to turn ``module``'s weights into ``(batch, head, query, key)``, or ``None`` when they
    are that matrix already.

    Raises:
        UnsupportedModelError: the module's attention is not over the input's tokens.
    """
    if getattr(module, "global_block_size", None) is not None:
        raise UnsupportedModelError(
            f"{name} ({type(module).__name__}) is transient-global attention: besides a local "
            f"window of tokens each query attends to summaries of blocks of "
            f"{module.global_block_size} tokens, which are not positions of the input, so its "
            f"attention cannot be written as a (query, key) matrix over the tokens. inspector "
            f"captures LongT5 with encoder_attention_type='local'"
        )
    window = getattr(module, "one_sided_attn_window_size", None)
    if isinstance(window, int) and weights.dim() == 4:
        return lambda w: sliding_window(w, window)
    block = getattr(module, "block_len", None)
    if isinstance(block, int) and weights.dim() == 5:
        return lambda w: blocks(w, block)
    if weights.dim() != 4:
        raise UnsupportedModelError(
            f"{name} ({type(module).__name__}) returns attention weights of shape "
            f"{tuple(weights.shape)}, not (batch, head, query, key), and inspector does not know "
            f"how they map to positions"
        )
    return None


def sliding_window(w: Any, window: int) -> Any:
    """Longformer/LED local weights ``(batch, seq, head, 2·window + 1)`` → ``(batch, head, seq,
    seq)``: query ``i``'s entry ``j`` is key ``i + j - window``.

    Only local attention (no ``global_attention_mask``, inspector passes none) has exactly
    ``2·window + 1`` entries per row; extra leading columns (global keys) are refused.
    """
    import torch

    b, n, h, width = w.shape
    if width != 2 * window + 1:
        raise UnsupportedModelError(
            f"local attention rows have {width} entries where a window of {window} on each side "
            f"gives {2 * window + 1}: global attention (global_attention_mask) is not supported; "
            f"inspect without global tokens"
        )
    full = w.new_zeros(b, h, n, n + 2 * window)
    rows = torch.arange(n, device=w.device)[:, None]
    cols = rows + torch.arange(width, device=w.device)[None, :]  # key + window
    full[:, :, rows, cols] = w.permute(0, 2, 1, 3)
    return full[..., window : window + n]


def blocks(w: Any, block_len: int) -> Any:
    """LongT5 local weights ``(batch, blocks, head, block_len, 3·block_len)`` → ``(batch, head,
    seq, seq)`` with ``seq = blocks · block_len``: block ``b``'s key ``j`` is position
    ``(b - 1)·block_len + j``."""
    import torch

    b, nb, h, bl, width = w.shape
    if bl != block_len or width != 3 * block_len:
        raise CaptureError(
            f"block-local attention of shape {tuple(w.shape)} does not fit blocks of {block_len}"
        )
    n = nb * bl
    full = w.new_zeros(b, h, n, n + 2 * bl)
    block = torch.arange(nb, device=w.device)[:, None, None]
    rows = (block * bl + torch.arange(bl, device=w.device)[None, :, None]).expand(nb, bl, width)
    cols = (block * bl + torch.arange(width, device=w.device)[None, None, :]).expand(nb, bl, width)
    full[:, :, rows, cols] = w.permute(0, 2, 1, 3, 4)
    return full[..., bl : bl + n]


__all__ = ["blocks", "expander", "sliding_window"]
