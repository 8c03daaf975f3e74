"""Many inputs of a decoder that share their first tokens, run as one prefix tree.

Token deletion (faithfulness, occlusion) runs hundreds of inputs a text, and most of them begin
the same way: every input that keeps the text's first ``p`` tokens, or another input's first
``p``, would compute the same states for them, since a causal model's state at a position
depends only on the tokens up to it. :func:`tree_logits` packs the inputs into a prefix tree
(each distinct beginning once: about half the tokens of the inputs themselves on UD EWT
sentences with the faithfulness scoreboard's eleven methods) and runs the tree as one sequence:
a node's position is its depth, and it attends to its own ancestors only
(:class:`TreeAttention`, registered with transformers' ``AttentionInterface`` by
:func:`inspector.capture.hooks.attention_function`). So every node's state is the state of an
input ending there, and each input's logits are read at its last node.

Attention is block-sparse. Nodes are numbered in depth-first order, so a node's subtree is the
range ``[j, j + size[j])`` and the ancestors of a block of consecutive nodes are the ancestors
of its first node plus nodes inside the block: each block of :data:`BLOCK` queries attends to at
most ``depth + BLOCK`` keys, and ``sdpa`` runs all blocks at once with the ancestor mask.

Only models whose attention is softmax over scaled dot products of rotary or absolute-position
queries and keys (what transformers' ``sdpa`` runs) can use it: :func:`tree_refusal` says why a
model cannot, and :class:`TreeAttention` refuses a call it cannot reproduce (soft-capping,
sinks, a sliding window shorter than the inputs) with :class:`UnsupportedModelError`, so callers
run those inputs one by one instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, UnsupportedModelError
from ..models.families import forward_accepts
from ..models.loading import ModelBundle
from . import memory as _memory
from .hooks import attention_function, dispatches_attention
from .run import forward

#: Query nodes a block of the block-sparse attention holds.
BLOCK = 64
#: Default cap on the nodes of one pass (larger CPU passes stop paying off).
MAX_NODES = 4096
#: Share of the memory budget one pass may take.
PASS_SHARE = 0.5
#: Keyword arguments of an attention call whose non-``None`` value changes the weights in a way
#: the tree's attention does not reproduce.
_REFUSED = ("softcap", "s_aux", "sinks", "position_bias", "head_mask")


@dataclass(frozen=True)
class PrefixTree:
    """Token-id rows packed as a prefix tree, nodes in depth-first order.

    Attributes:
        ids: the node tokens, ``(nodes,)``.
        depth: each node's position in the rows through it (0 for a first token), ``(nodes,)``.
        size: each node's subtree size (itself included): node ``i`` is in ``j``'s subtree when
            ``j <= i < j + size[j]``, ``(nodes,)``.
        parent: each node's parent (``-1`` for a first token), ``(nodes,)``.
        ends: the node each row ends at, ``(rows,)``.
    """

    ids: np.ndarray
    depth: np.ndarray
    size: np.ndarray
    parent: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[Sequence[int]]) -> PrefixTree:
        """The tree of ``rows`` (each at least one token). Rows are inserted in sorted order,
        so the nodes come out in depth-first order."""
        if not rows or any(len(r) == 0 for r in rows):
            raise InputError("a prefix tree needs at least one row, each of at least one token")
        order = sorted(range(len(rows)), key=lambda r: tuple(rows[r]))
        child: dict[tuple[int, int], int] = {}
        ids: list[int] = []
        depth: list[int] = []
        parent: list[int] = []
        ends = np.zeros(len(rows), dtype=np.int64)
        for r in order:
            node = -1
            for d, token in enumerate(rows[r]):
                key = (node, int(token))
                nxt = child.get(key)
                if nxt is None:
                    nxt = child[key] = len(ids)
                    ids.append(int(token))
                    depth.append(d)
                    parent.append(node)
                node = nxt
            ends[r] = node
        par = np.asarray(parent, dtype=np.int64)
        size = np.ones(len(ids), dtype=np.int64)
        for i in range(len(ids) - 1, -1, -1):  # children come after their parent
            if par[i] >= 0:
                size[par[i]] += size[i]
        return cls(
            np.asarray(ids, dtype=np.int64), np.asarray(depth, dtype=np.int64), size, par, ends
        )

    def __len__(self) -> int:
        return len(self.ids)

    def ancestors(self, node: int) -> list[int]:
        """The strict ancestors of ``node``, root first."""
        out = []
        node = int(self.parent[node])
        while node >= 0:
            out.append(node)
            node = int(self.parent[node])
        return out[::-1]

    def blocks(self, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
        """The block-sparse layout: ``keys`` ``(blocks, K)``, the nodes each block of ``block``
        consecutive query nodes reads (padded with node 0), and ``mask`` ``(blocks, block, K)``,
        True where the key is the query node or one of its ancestors (a padding query past the
        last node reads key 0 alone, so no row is empty)."""
        n = len(self)
        starts = range(0, n, block)
        chains = [self.ancestors(b0) + list(range(b0, min(n, b0 + block))) for b0 in starts]
        width = max(len(c) for c in chains)
        keys = np.zeros((len(chains), width), dtype=np.int64)
        valid = np.zeros((len(chains), width), dtype=bool)
        for b, chain in enumerate(chains):
            keys[b, : len(chain)] = chain
            valid[b, : len(chain)] = True
        query = np.arange(len(chains) * block).reshape(len(chains), block)
        real = query < n
        q = np.minimum(query, n - 1)[:, :, None]
        k = keys[:, None, :]
        mask = valid[:, None, :] & (k <= q) & (q < k + self.size[k]) & real[:, :, None]
        mask[~real, 0] = True
        return keys, mask


class TreeAttention:
    """The attention function of a tree pass (transformers' signature): each node attends to
    itself and its ancestors, from the very queries and keys the model made (post-rotary),
    with the call's scaling and grouped-query layout, softmax in float32 as ``sdpa``."""

    def __init__(self, tree: PrefixTree, model_name: str, block: int = BLOCK) -> None:
        import torch

        keys, mask = tree.blocks(block)
        self.n = len(tree)
        self.block = block
        self.longest = int(tree.depth.max()) + 1
        self.keys = torch.from_numpy(keys)
        self.mask = torch.from_numpy(mask)[:, None]  # (blocks, 1, block, K)
        self.model_name = model_name
        self._layouts: dict[tuple[str, int], tuple[Any, Any]] = {}

    def _layout(self, device: Any, group: int) -> tuple[Any, Any]:
        """The key indexes and the mask for ``group`` query heads a key head, on ``device``
        (made once a pass: every layer reads the same)."""
        found = self._layouts.get((str(device), group))
        if found is None:
            mask = self.mask.repeat(1, 1, group, 1) if group > 1 else self.mask
            found = self._layouts[(str(device), group)] = (self.keys.to(device), mask.to(device))
        return found

    def __call__(
        self, module: Any, query: Any, key: Any, value: Any, mask: Any, **kwargs: Any
    ) -> tuple[Any, None]:
        """The nodes' attention output ``(1, nodes, heads, dim)``; the model's own ``mask``
        (causal over the packed sequence), ``dropout`` (eval) and ``is_causal`` do not apply."""
        import torch
        import torch.nn.functional as F

        for name in _REFUSED:
            if kwargs.get(name) is not None:
                raise UnsupportedModelError(
                    f"{self.model_name}: its attention uses {name!r}, which a prefix-tree pass "
                    f"does not reproduce"
                )
        window = kwargs.get("sliding_window")
        if window is not None and int(window) < self.longest:
            raise UnsupportedModelError(
                f"{self.model_name}: a sliding window of {window} tokens is shorter than the "
                f"inputs ({self.longest}); a prefix-tree pass does not reproduce it"
            )
        _, heads, n, dim = query.shape
        if query.shape[0] != 1 or n != self.n:
            raise UnsupportedModelError(
                f"{self.model_name}: a prefix-tree pass expected one sequence of {self.n} nodes, "
                f"got queries of shape {tuple(query.shape)}"
            )
        kv_heads = key.shape[1]
        group = heads // kv_heads
        keys, mask = self._layout(query.device, group)
        blocks = keys.shape[0]
        # queries (blocks, kv_heads, group * block, dim): a key head's query heads read its keys
        # side by side, so the keys are gathered once per key head, not once per query head
        q = F.pad(query[0], (0, 0, 0, blocks * self.block - n))
        q = q.view(kv_heads, group, blocks, self.block, dim).permute(2, 0, 1, 3, 4)
        q = q.reshape(blocks, kv_heads, group * self.block, dim)
        k = key[0][:, keys].transpose(0, 1)  # (blocks, kv_heads, K, dim)
        v = value[0][:, keys].transpose(0, 1)
        scaling = kwargs.get("scaling")
        scale = float(scaling) if scaling is not None else dim**-0.5
        with torch.autocast(query.device.type, enabled=False):
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        out = out.view(blocks, kv_heads, group, self.block, dim).permute(1, 2, 0, 3, 4)
        out = out.reshape(heads, blocks * self.block, dim)[:, :n]
        return out.transpose(0, 1).unsqueeze(0).contiguous(), None


def tree_refusal(bundle: ModelBundle) -> str | None:
    """Why ``bundle``'s model cannot run inputs as a prefix tree, or ``None`` when it can: a
    decoder that dispatches attention through transformers' interface and takes
    ``position_ids`` and ``logits_to_keep``, without soft-capped attention."""
    model = bundle.model
    if bundle.architecture != "decoder":
        return "only a decoder's states depend on the tokens before them alone"
    if not dispatches_attention(model):
        return f"{type(model).__name__} does not dispatch attention through AttentionInterface"
    if getattr(getattr(model, "config", None), "attn_logit_softcapping", None) is not None:
        return "its attention is soft-capped"
    for name in ("position_ids", "logits_to_keep"):
        if not forward_accepts(model, name):
            return f"its forward takes no {name}"
    return None


def tree_logits(bundle: ModelBundle, rows: Sequence[Sequence[int]]) -> tuple[Any, int]:
    """The logits after the last token of each row, ``(rows, 1, vocab)``, and the number of
    tokens the model ran for them (the tree's nodes): the model run on the rows' prefix tree in
    one pass (see the module docstring; :func:`plan_trees` cuts many rows into passes that fit).

    Raises:
        UnsupportedModelError: the model's attention is not one the tree reproduces.
    """
    import torch

    reason = tree_refusal(bundle)
    if reason is not None:
        raise UnsupportedModelError(f"{bundle.name}: no prefix-tree pass: {reason}")
    tree = PrefixTree.of(rows)
    device = next(bundle.model.parameters()).device
    inputs = {
        "input_ids": torch.from_numpy(tree.ids[None].copy()).to(device),
        "position_ids": torch.from_numpy(tree.depth[None].copy()).to(device),
    }
    keep = torch.from_numpy(tree.ends.copy()).to(device)
    with attention_function(bundle, TreeAttention(tree, bundle.name)):
        out = forward(bundle, inputs, logits_to_keep=keep)
    return out.logits[0][:, None, :], len(tree)


def plan_trees(
    bundle: ModelBundle,
    rows: Sequence[Sequence[int]],
    *,
    budget: _memory.Budget,
    max_nodes: int = MAX_NODES,
    max_rows: int | None = None,
) -> list[list[int]]:
    """Rows cut into passes (lists of row indexes, in sorted order so that rows sharing a
    beginning go together), each tree at most ``max_nodes`` nodes (or one row, if longer),
    ``max_rows`` rows, and within :data:`PASS_SHARE` of ``budget``."""
    order = sorted(range(len(rows)), key=lambda r: tuple(rows[r]))
    limit = PASS_SHARE * budget.bytes
    dims = _memory.model_dims(bundle.model)
    passes: list[list[int]] = []
    current: list[int] = []
    nodes = longest = 0
    previous: Sequence[int] = ()
    for r in order:
        row = rows[r]
        shared = 0
        while shared < min(len(row), len(previous)) and row[shared] == previous[shared]:
            shared += 1
        grow = len(row) - shared
        wider = max(longest, len(row))
        if current and (
            nodes + grow > max_nodes
            or (max_rows is not None and len(current) >= max_rows)
            or _pass_bytes(bundle, nodes + grow, wider, len(current) + 1, dims) > limit
        ):
            passes.append(current)
            current, nodes, grow, wider = [], 0, len(row), len(row)
        current.append(r)
        longest = wider
        nodes += grow
        previous = row
    if current:
        passes.append(current)
    return passes


def _pass_bytes(
    bundle: ModelBundle, nodes: int, longest: int, rows: int, dims: dict[str, int] | None = None
) -> int:
    """Estimated peak bytes of a tree pass of ``nodes`` tokens, inputs of at most ``longest``
    tokens and ``rows`` logits (``dims``: the model's, read once by a caller in a loop)."""
    return _memory.forward_bytes(
        dims or _memory.model_dims(bundle.model),
        n_heads=bundle.n_heads,
        shapes={"self": (nodes, longest + BLOCK)},
        model_itemsize=_memory.itemsize(bundle.dtype),
        logits_rows=rows,
    )


__all__ = [
    "BLOCK",
    "MAX_NODES",
    "PrefixTree",
    "TreeAttention",
    "plan_trees",
    "tree_logits",
    "tree_refusal",
]
