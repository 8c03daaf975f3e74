"""Information flow routes (Ferrando & Voita 2024): the contribution graph of one prediction,
built top-down from the output node, expanding only the nodes the walk reaches.

Definitions (llm-transparency-tool's ``routes/contributions.py`` and ``graph.py``):

* the contribution of a part ``p`` to a whole ``y`` is ``max(‖y‖₁ − ‖y − p‖₁, 1e-5)``,
  normalised over the parts (the reference's ``pairwise_distance`` adds 1e-6 to each
  difference; the formula here has no such term);
* attention step of layer ``l`` at position ``q``: the parts are every ``(key, head)`` term
  ``a[h, q, k] · (v_k W_O^h)`` (all ``n`` keys: a key a causal row cannot see is a zero part,
  worth ``1e-5``) and the residual before the block; the whole is the residual after
  attention, ``x_q + Σ_h z_h W_O^h + b_O``;
* MLP step: the parts are the MLP's output (the rest of the block's update) and the residual
  after attention; the whole is the block's output;
* each step's contributions below ``threshold`` are zeroed and the rest renormalised to sum
  to 1; the walk goes back from the output node (the block output of the last layer at
  ``position``) along edges above ``threshold`` (an attention edge sums its heads; an edge
  from a token to itself adds the residual edge, as the reference's graph does).

Post-LN encoders (BERT, MiniLM) are walked by the same code with every part passed through the
frozen LayerNorms (our extension: :mod:`.encoder_routes`, which overrides the steps of
:class:`_State`).

Nodes are named as the reference names them: ``X0_k`` (embedding of token ``k``),
``A{l}_{q}`` (residual after attention), ``M{l}_{q}`` (the MLP), ``I{l}_{q}`` (block output).

Memory stays bounded: the model runs once with sdpa while :mod:`inspector.capture.trace` keeps
each layer's queries and keys; every block's input is kept at every position (``(layers + 1)
x n x hidden`` float32); ``v_k W_O^h`` is computed a block of keys at a time, once per layer for
all the nodes the walk reached there, and never as a ``pos x key x head x hidden`` tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture.memory import TRIM_FROM_TOKENS, MemoryLimit, release_freed_memory
from ..capture.types import Capture
from ..errors import InputError, UnsupportedModelError
from ..models.families import logit_transform
from ..models.loading import ModelBundle
from . import residual as _res
from .attribution import (
    Attribution,
    _check_rows,
    attribute,
    per_token_frame,
    split_terms,
    stack_tokens,
    targets,
)
from .norms import head_values
from .route_result import Routes, build_routes, node_name

#: The clip of a contribution (the reference's ``EPS``).
EPS = 1e-5
#: Keys per block when ``v_k W_O^h`` is computed.
KEY_BLOCK = 256
#: Nodes per block of the ``(node, head, key, hidden)`` scratch.
NODE_BLOCK = 4
#: Keys kept of the attention row of every head on a walked attention edge (for the page).
ROW_KEYS = 64


@dataclass(frozen=True)
class RouteQuery:
    """What a route graph is asked for, built once by the ``information_flow`` explainer and
    read by the decoder's and the encoder's walk alike.

    Attributes:
        position: the position traced (negative: from the end); an encoder's ``None``: its
            mean-pooled embedding.
        threshold: contributions below it are cut and the rest renormalised; the walk keeps
            edges above it (llm-transparency-tool's default 0.04).
        token: the token the nodes' logit lens and the attribution report (default: the
            predicted one); ``against``: attribute the logit difference to it.
        method: how attention rows are read (``auto``: ``sdpa`` plus rows recomputed from the
            kept queries and keys; ``eager``).
        max_memory: the budget of the forward pass and what it keeps (default: what is free);
            over it, :class:`~inspector.errors.ResourceError` before the model runs.
    """

    position: int | None = -1
    threshold: float = 0.04
    token: str | int | None = None
    against: str | int | None = None
    method: str = "auto"
    max_memory: MemoryLimit | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "threshold", check_threshold(self.threshold))


def check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    if not 0.0 <= float(threshold) < 1.0:
        raise InputError(f"threshold must be between 0 and 1 (default 0.04), got {threshold}")
    return float(threshold)


def threshold_renormalise(
    blocks: np.ndarray, resid: float, threshold: float
) -> tuple[np.ndarray, float]:
    """The reference's ``apply_threshold_and_renormalize`` for one representation."""
    blocks, resid, _bias = renormalise_parts(blocks, resid, None, threshold)
    return blocks, resid


def renormalise_parts(
    blocks: np.ndarray, resid: float, bias: float | None, threshold: float
) -> tuple[np.ndarray, float, float]:
    """:func:`threshold_renormalise` with one more scalar part (a bias part, or ``None``)."""
    blocks = np.where(blocks > threshold, blocks, 0.0)
    resid = resid if resid > threshold else 0.0
    bias = bias if bias is not None and bias > threshold else 0.0
    denom = resid + bias + float(blocks.sum())
    if denom <= 0.0:
        return np.zeros_like(blocks), 0.0, 0.0
    return blocks / denom, resid / denom, bias / denom


class LayerData:
    """One layer's verified values and output projection, and the attention rows on demand."""

    def __init__(self, state: _State, li: int) -> None:
        import torch

        self.state = state
        self.li = li
        rec, wiring = state.rec, state.wiring
        assert rec.attention is not None
        alpha = rec.attention.rows(state.att_kind, li, rec.rows)
        values, w_o = head_values(
            wiring.found, wiring.found.layers[li], li, alpha, rec.values[(li, -1)], rec.values,
            kind=state.att_kind, name=state.name,
        )  # fmt: skip
        self.values = values  # (h, k, d) float64
        self.w_o = w_o  # (h, d, hidden)
        self.values32, self.w_o32 = values.float(), w_o.float()
        bias = getattr(wiring.found.layers[li].out, "bias", None)
        hidden = int(w_o.shape[-1])
        self.bias = (
            torch.zeros(hidden, dtype=torch.float64)
            if bias is None
            else bias.detach().double().cpu()
        )

    def rows(self, positions: Sequence[int]) -> Any:
        assert self.state.rec.attention is not None
        return self.state.rec.attention.rows(self.state.att_kind, self.li, positions)

    def attention_out(self, alpha: Any) -> Any:
        """``Σ_h z_h W_O^h + b_O`` for rows ``alpha`` ``(h, r, k)``: ``(r, hidden)``."""
        import torch

        z = torch.einsum("hrk,hkd->hrd", alpha, self.values)
        return torch.einsum("hrd,hdm->rm", z, self.w_o) + self.bias * 1.0


class _State:
    """What the walk reads: the record, the wiring, and how attention writes the residual."""

    def __init__(
        self, bundle: ModelBundle, wiring: _res.Wiring, rec: _res.Record, causal: bool
    ) -> None:
        self.wiring = wiring
        self.rec = rec
        self.name = bundle.name
        self.att_kind = wiring.kind
        self.causal = causal
        self.mult = wiring.multiplier
        self._layers: dict[int, LayerData] = {}
        #: called with each layer's data when it is loaded (the per-token attribution)
        self.on_load: Any = None

    def layer(self, li: int) -> LayerData:
        if li not in self._layers:
            self._layers = {}
            if self.rec.n >= TRIM_FROM_TOKENS:
                release_freed_memory()  # the last layer's values and scratch
            self._layers = {li: LayerData(self, li)}  # one layer's values at a time
            if self.on_load is not None:
                self.on_load(li, self._layers[li])
        return self._layers[li]

    def resid(self, li: int, positions: Sequence[int]) -> Any:
        """Block ``li``'s input at ``positions`` (``li = n_layers``: the last output)."""
        import torch

        return self.rec.resid[li][torch.as_tensor(list(positions))].double()

    # how the parts enter the whole (a post-LN encoder overrides these: :mod:`.encoder_routes`)

    def attention_whole(
        self, li: int, positions: Sequence[int], alpha: Any
    ) -> tuple[Any, Any, Any | None]:
        """``(whole, residual part, bias part or None)`` of the attention step, ``(r, hidden)``
        each: here the residual after attention, the block's input, no bias part."""
        x = self.resid(li, positions)
        return x + self.mult * self.layer(li).attention_out(alpha), x, None

    def head_vectors(self, f: Any) -> Any:
        """``v_k W_O^h`` ``(head, key, hidden)`` as it enters the whole (in place)."""
        f *= self.mult
        return f

    def row_scale(self, li: int, positions: Sequence[int]) -> Any | None:
        """A factor per node ``(r,)`` on its attention parts (``None``: 1)."""
        return None

    def after_attention(self, li: int, positions: Sequence[int]) -> Any:
        """The ``A`` nodes' vectors (the MLP step's residual part), ``(r, hidden)``."""
        data = self.layer(li)
        return self.resid(li, positions) + self.mult * data.attention_out(data.rows(positions))

    def mlp_vector(self, li: int, positions: Sequence[int], after: Any) -> Any:
        """The ``M`` nodes' vectors: the MLP's part of the block output."""
        return self.resid(li + 1, positions) - after

    def attention_step(
        self, li: int, positions: Sequence[int]
    ) -> tuple[list[Any], Any, Any, Any, Any | None]:
        """Raw attention-step contributions of ``positions`` at layer ``li``: per node a
        ``(key, head)`` array, the residual's, the wholes, the attention rows ``(head, node,
        key)`` and the bias part's (``None`` without one)."""
        import torch

        data = self.layer(li)
        alpha = data.rows(positions)  # (h, r, n)
        whole, x, bias_part = self.attention_whole(li, positions, alpha)  # (r, hidden)
        n = int(alpha.shape[-1])
        n_h = int(alpha.shape[0])
        hidden = int(whole.shape[-1])
        gain = torch.zeros((len(positions), n, n_h), dtype=torch.float64)
        limit = [q + 1 if self.causal else n for q in positions]
        kmax = max(limit)
        # ‖y‖₁ - ‖y - p‖₁ summed element by element as min(s·p, 2|y| - s·p) with s = sign(y):
        # no cancellation against ‖y‖₁, so a float32 scratch (one (head, nodes, keys, hidden)
        # block at a time) keeps each part's error relative to the part itself
        alpha32 = alpha.float()
        scale = self.row_scale(li, positions)
        if scale is not None:
            alpha32 = alpha32 * scale.float()[None, :, None]
        sign = torch.where(whole >= 0, 1.0, -1.0).float()
        twice = 2 * whole.abs().float()
        buf = torch.empty((n_h, NODE_BLOCK, KEY_BLOCK, hidden), dtype=torch.float32)
        tmp = torch.empty_like(buf)
        for k0 in range(0, kmax, KEY_BLOCK):
            k1 = min(kmax, k0 + KEY_BLOCK)
            f = torch.einsum("hkd,hdm->hkm", data.values32[:, k0:k1], data.w_o32)
            f = self.head_vectors(f)
            for r0 in range(0, len(positions), NODE_BLOCK):
                r1 = min(len(positions), r0 + NODE_BLOCK)
                part, other = buf[:, : r1 - r0, : k1 - k0], tmp[:, : r1 - r0, : k1 - k0]
                torch.mul(alpha32[:, r0:r1, k0:k1, None], f[:, None], out=part)
                part.mul_(sign[None, r0:r1, None, :])
                torch.sub(twice[None, r0:r1, None, :], part, out=other)
                torch.minimum(part, other, out=part)
                gain[r0:r1, k0:k1] = part.sum(-1).permute(1, 2, 0)
        res = torch.clamp(l1_gain(whole, x), min=EPS)
        bias = None if bias_part is None else torch.clamp(l1_gain(whole, bias_part), min=EPS)
        out = []
        for i in range(len(positions)):
            c = torch.full((n, n_h), EPS, dtype=torch.float64)
            c[: limit[i]] = torch.clamp(gain[i, : limit[i]], min=EPS)
            total = c.sum() + res[i] + (0.0 if bias is None else bias[i])
            out.append((c / total).numpy())
            res[i] = res[i] / total
            if bias is not None:
                bias[i] = bias[i] / total
        return out, res.numpy(), whole, alpha, None if bias is None else bias.numpy()

    def mlp_step(self, li: int, positions: Sequence[int], after_attn: Any) -> Any:
        """Raw (mlp, residual) contributions ``(r, 2)`` of the MLP step."""
        import torch

        out = self.resid(li + 1, positions)
        c_mlp = torch.clamp(l1_gain(out, out - after_attn), min=EPS)
        c_res = torch.clamp(l1_gain(out, after_attn), min=EPS)
        total = c_mlp + c_res
        return torch.stack([c_mlp / total, c_res / total], dim=-1).numpy()


def l1_gain(whole: Any, part: Any) -> Any:
    """``‖whole‖₁ - ‖whole - part‖₁`` over the last axis, computed element by element as
    ``min(s·p, 2|w| - s·p)`` (``s = sign(w)``), which never subtracts two large norms."""
    import torch

    signed = torch.where(whole >= 0, part, -part)
    return torch.minimum(signed, 2 * whole.abs() - signed).sum(-1)


def information_flow(
    bundle: ModelBundle, capture: Capture, query: RouteQuery = RouteQuery()
) -> Routes:
    """The route graph of the prediction at ``query.position`` (see the module and
    :class:`RouteQuery`), with the direct logit attribution of the same prediction from the
    same forward pass.

    Raises:
        UnsupportedModelError: an encoder, or blocks that normalise their sublayers' outputs or
            the residual itself (post-LN): their residual stream is not a sum of parts.
    """
    threshold = query.threshold
    wiring = _res.find_wiring(bundle, "information flow")
    tokens = stack_tokens(capture, wiring.kind)
    n = len(tokens)
    pos = _res.check_position(-1 if query.position is None else query.position, n)
    rec = _res.record(
        bundle, wiring, capture, _check_rows(pos, n), full=True, values=True,
        method=query.method, max_memory=query.max_memory,
    )  # fmt: skip
    tid, aid = targets(bundle, rec, query.token, query.against)
    state = _State(bundle, wiring, rec, bool(capture.stacks[wiring.kind].causal))
    explained = attribute(bundle, wiring, rec, capture, tid, aid)
    dec = explained.decomposition
    assert dec is not None
    odd = sorted(set(dec.layouts.values()) - {"pre"})
    if odd or wiring.cross is not None:
        raise UnsupportedModelError(
            f"information flow: the blocks of {bundle.name} are "
            f"{', '.join(odd) or 'encoder-decoder blocks'}; routes are defined for decoder "
            f"blocks that add their sublayers' outputs to the residual stream as they are "
            f"(logit_attribution follows these norms)"
        )
    splits: dict[int, np.ndarray] = {}

    def split(li: int, data: LayerData) -> None:
        """The per-token attribution of layer ``li``'s heads, while its values are loaded."""
        gh = dec.head_dirs[("head", li)]
        splits[li] = split_terms(data.rows([pos])[:, 0], data.values, data.w_o, gh)

    state.on_load = split
    walk = _walk(state, {pos}, threshold)
    for li in range(wiring.n_layers):
        if li not in splits:
            state.layer(li)
    per_token = per_token_frame(dec, capture, wiring, lambda _kind, li, _gh: splits[li])
    scale, _cap = logit_transform(bundle.model.config)
    return build_routes(
        walk, tokens, explained.frame.attrs["token"], tid, threshold=threshold, position=pos,
        lens=_Lens(wiring, dec, scale, bundle), state=state, model_name=bundle.name,
        attribution=Attribution(explained.frame, per_token, explained.lens, dec),
    )  # fmt: skip


class _Lens:
    """The logit lens of node vectors: final norms (own scale), unembedding."""

    def __init__(self, wiring: _res.Wiring, dec: _res.Decomposition, scale: float, bundle: Any):
        self.wiring, self.dec, self.scale, self.bundle = wiring, dec, scale, bundle

    def __call__(self, vectors: np.ndarray, tid: int, top: int = 3) -> dict[str, Any]:
        import torch

        from .attribution import _name

        h = np.asarray(vectors, dtype=np.float64)
        for norm in self.dec.final:
            h = norm.apply(h)
        h = h * self.dec.head_scale
        w = self.wiring.lm_head.weight.detach().float()
        bias = self.wiring.lm_head.bias
        ranks, logits_t, top_ids = [], [], []
        for r0 in range(0, len(h), 64):
            logits = torch.from_numpy(h[r0 : r0 + 64].astype(np.float32)) @ w.T
            if bias is not None:
                logits += bias.detach().float()
            logits *= self.scale
            ranks += (logits > logits[:, tid : tid + 1]).sum(-1).tolist()
            logits_t += logits[:, tid].double().tolist()
            top_ids += logits.topk(top).indices.tolist()
        names = {i: _name(self.bundle, i) for i in {i for row in top_ids for i in row}}
        return {"rank": ranks, "logit": logits_t, "top": [[names[i] for i in r] for r in top_ids]}


def _walk(
    state: _State, start: set[int], threshold: float, top: Sequence[tuple[Any, ...]] = ()
) -> dict[str, Any]:
    """Top-down: expand the reached nodes of each layer, keep the edges above ``threshold``
    (after thresholding and renormalising, every surviving weight is above it). ``start``: the
    positions whose last block output the walk starts from; ``top``: edges above them (an
    encoder's pooled embedding)."""
    n_layers = state.wiring.n_layers
    edges: list[tuple[int, str, str, str, int, int, float]] = list(top)
    head_edges: list[tuple[int, int, int, int, float]] = []
    vectors: dict[str, np.ndarray] = {}
    rows: dict[tuple[int, int, int], list[tuple[int, float]]] = {}
    biases: dict[str, float] = {}
    reached = set(start)
    for li in reversed(range(n_layers)):
        qs = sorted(reached)
        after = state.after_attention(li, qs)
        c = state.mlp_step(li, qs, after)
        mids = state.mlp_vector(li, qs, after).numpy()
        outs = state.resid(li + 1, qs).numpy()
        attn_nodes = []
        for i, q in enumerate(qs):
            top_, mid, a = node_name("I", li, q), node_name("M", li, q), node_name("A", li, q)
            vectors[top_] = outs[i]
            c_mlp, c_res = threshold_renormalise(c[i, :1], float(c[i, 1]), threshold)
            if c_mlp[0] > 0:
                vectors[mid] = mids[i]
                edges.append((li, "mlp", mid, top_, q, q, float(c_mlp[0])))
                edges.append((li, "mlp", a, mid, q, q, float(c_mlp[0])))
            if c_res > 0:
                edges.append((li, "residual", a, top_, q, q, c_res))
            if c_mlp[0] > 0 or c_res > 0:
                attn_nodes.append(q)
        reached = set()
        if not attn_nodes:
            break
        parts, res, wholes, alpha, bias = state.attention_step(li, attn_nodes)
        for i, q in enumerate(attn_nodes):
            a = node_name("A", li, q)
            vectors[a] = wholes[i].numpy()
            blocks, r, b = renormalise_parts(
                parts[i], float(res[i]), None if bias is None else float(bias[i]), threshold
            )
            if b > 0:
                biases[a] = b
            per_key = blocks.sum(-1)
            for key in np.flatnonzero(per_key > 0).tolist():
                k = int(key)
                edges.append(
                    (li, "attention", node_name("I", li - 1, k), a, k, q, float(per_key[k]))
                )
                reached.add(k)
                for h in np.flatnonzero(blocks[k] > 0).tolist():
                    head_edges.append((li, k, q, int(h), float(blocks[k, h])))
                    if (li, q, h) not in rows:
                        row = alpha[h, i].numpy()
                        heavy = np.argsort(-row, kind="stable")[:ROW_KEYS]
                        rows[(li, q, h)] = [(int(t), float(row[t])) for t in heavy if row[t] > 0]
            if r > 0:
                edges.append((li, "residual", node_name("I", li - 1, q), a, q, q, r))
                reached.add(q)
    first = sorted(reached)
    if first:
        x0 = state.resid(0, first).numpy()
        for i, first_k in enumerate(first):
            vectors[node_name("X", 0, first_k)] = x0[i]
    return {
        "edges": edges,
        "head_edges": head_edges,
        "vectors": vectors,
        "rows": rows,
        "n_layers": n_layers,
        "biases": biases,
    }


__all__ = [
    "EPS",
    "check_threshold",
    "information_flow",
    "renormalise_parts",
    "threshold_renormalise",
]
