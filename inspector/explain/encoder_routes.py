"""Information flow routes on post-LN encoders (BERT and its family, our default MiniLM): our
extension of Ferrando & Voita 2024, whose definitions (:mod:`.routes`) are for pre-LN decoders.

A post-LN block normalises the residual itself, ``x₁ = LN₁(x + attn(x))``,
``x₂ = LN₂(x₁ + mlp(x₁))``, so its output is not a sum of parts. As in Kobayashi et al. 2021
(the "attention-residual-norm" analysis of gorokoba560/norm-analysis-of-transformer), each
LayerNorm is decomposed linearly with its scale frozen at the whole's value:
``LN(Σ p) = Σ γ·(p − mean(p))/σ + β``, ``σ = sqrt(var(Σ p) + ε)`` of the full input at that
position. Then, with the same contribution as the decoders' routes (``max(‖y‖₁ − ‖y − p‖₁,
1e-5)`` normalised over the parts, cut below the threshold, renormalised, walked back):

* attention step of layer ``l`` at position ``q``: the whole is ``x₁`` (LN₁'s output); the
  parts are every ``(key, head)`` term ``a[h, q, k] · (v_k W_O^h)``, the attention output bias
  ``b_O`` (one more part: it comes from no token; its share is kept in ``Routes.biases``) and
  the residual ``x``, each through the frozen LN₁ (``γ₁·centre(p)/σ₁``, without ``β₁``, which
  is in the whole and in no part);
* MLP step: the whole is ``x₂`` (LN₂'s output); the parts are the MLP's output (its bias
  included) and ``x₁``, each through the frozen LN₂;
* targets: one position's final representation (the walk starts at its last block output), or
  the mean-pooled embedding of a sentence model (the pooling MiniLM's ``embedding`` target
  uses: the mean over the positions): a node ``E`` whose parts are every position's final
  vector ``/ T``, the walk going on from every position above the threshold.

Every step is checked on the numbers of the pass (two norms per block, LN₁ reading the block
input plus the attention output, LN₂ giving the block output, both LayerNorms of their own
parameters); anything else (pre-LN encoders such as ModernBERT, shared layers) is refused.
Memory stays bounded as for decoders: each block's input, LN₁'s output and both norms' scales
are kept at every position (``O(layers x n x hidden)``), ``v_k W_O^h`` a block of keys at a
time. Encoders without an LM head have no logit lens: the nodes carry none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..capture.hooks import Hook
from ..capture.memory import MemoryLimit
from ..capture.trace import hook_bytes, run_kept
from ..capture.types import Capture
from ..errors import InputError, UnsupportedModelError
from ..models.families import logit_transform, residual_multiplier
from ..models.loading import ModelBundle
from . import residual as _res
from .attribution import _check_rows, stack_tokens, trace_logit
from .model import inputs_for, structure
from .norms import value_hooks
from .route_result import EMBEDDING_NODE, Routes, build_routes, node_name
from .routes import EPS, RouteQuery, _Lens, _State, _walk, l1_gain, renormalise_parts


def encoder_wiring(bundle: ModelBundle, feature: str) -> _res.Wiring:
    """The blocks of an encoder and the norms inside each (outside its attention module)."""
    found = structure(bundle, feature, "self")
    blocks = tuple(layer.block for layer in found.layers)
    if len({id(b) for b in blocks}) != len(blocks) or blocks[0] is bundle.model:
        raise UnsupportedModelError(
            f"{feature}: the blocks of {bundle.name} were not found (or its layers share "
            f"weights); routes follow encoders with one block per layer"
        )
    names = {id(m): n for n, m in bundle.model.named_modules()}
    attn = {id(m) for layer in found.layers for m in layer.attention.modules()}
    norms = tuple(
        tuple(
            (names.get(id(m), "norm"), m)
            for m in block.modules()
            if _res._is_norm(m) and id(m) not in attn
        )
        for block in blocks
    )
    return _res.Wiring(
        "self", found, None, blocks, None, (), (), norms, None,
        residual_multiplier(bundle.model.config),
    )  # fmt: skip


class _Norms:
    """One layer's two LayerNorms: parameters, and each position's frozen scale."""

    def __init__(self, module: Any, x_in: Any, x_out: Any, what: str, name: str) -> None:
        import torch

        def param(p: str) -> Any:
            t = getattr(module, p, None)
            return None if not isinstance(t, torch.Tensor) else t.detach().double().cpu()

        self.gamma, self.beta = param("weight"), param("bias")
        eps = getattr(module, "eps", None) or getattr(module, "variance_epsilon", None)
        if self.gamma is None or not isinstance(eps, float):
            raise UnsupportedModelError(f"{name}: {what} is not a LayerNorm with a weight")
        if self.beta is None:
            self.beta = torch.zeros_like(self.gamma)
        x = x_in.double()
        centred = x - x.mean(-1, keepdim=True)
        self.sigma = (centred.pow(2).mean(-1) + eps).sqrt()  # (n,)
        got = centred / self.sigma[:, None] * self.gamma + self.beta
        _res._close(got.numpy(), x_out.double().numpy(), f"{what} is not a LayerNorm", name)

    def frozen(self, x: Any, positions: Sequence[int]) -> Any:
        """``γ·centre(x)/σ`` at ``positions`` (rows of ``x``; no ``β``)."""
        sigma = self.sigma[list(positions)][:, None]
        return (x - x.mean(-1, keepdim=True)) / sigma * self.gamma


def record_encoder(
    bundle: ModelBundle,
    wiring: _res.Wiring,
    capture: Capture,
    rows: Sequence[int],
    method: str,
    max_memory: MemoryLimit | None = None,
) -> tuple[_res.Record, list[tuple[_Norms, _Norms]], dict[int, Any]]:
    """One pass keeping the block inputs, LN₁'s outputs and both norms' scales at every
    position (checked: see the module), after a memory pre-flight against ``max_memory``;
    returns the record, the norms, LN₁'s outputs."""
    rec = _res.Record(list(rows), full=True)
    full: dict[tuple[str, int], Any] = {}
    order: dict[tuple[str, int], int] = {}

    def keep(key: tuple[str, int], pre: bool) -> Any:
        def hook(_m: Any, args: Any, *rest: Any) -> None:
            t = (args[0] if args else rest[0].get("hidden_states")) if pre else rest[0]
            t = t[0] if isinstance(t, tuple | list) else t
            full[key] = t.detach().reshape(-1, t.shape[-1]).float().clone()
            order[key] = len(order)

        return hook

    hooks: list[Hook] = []
    for li, block in enumerate(wiring.blocks):
        hooks.append(Hook(block, keep(("in", li), True), "pre_kw"))
        hooks.append(Hook(block, keep(("out", li), False)))
        layer = wiring.found.layers[li]
        hooks.append(Hook(layer.out, keep(("y", li), False), call=layer.call))
        for j, (_name, norm) in enumerate(wiring.block_norms[li]):
            hooks.append(Hook(norm, keep((f"n{j}:in", li), True), "pre_kw"))
            hooks.append(Hook(norm, keep((f"n{j}:out", li), False)))
    hooks += value_hooks(wiring.found, list(range(wiring.n_layers)), rec.values, rows=rows)
    inputs = inputs_for(bundle, capture)
    n = int(inputs["input_ids"].shape[-1])
    sources = [s.module for layer in wiring.found.layers for s in layer.values]
    per_layer = 3 + 2 * max((len(norms) for norms in wiring.block_norms), default=2)
    recorded = hook_bytes(bundle, n, blocks=per_layer * wiring.n_layers, outputs=sources)
    _out, rec.attention = run_kept(
        bundle, inputs, kinds=["self"], hooks=hooks, method=method, recorded=recorded,
        max_memory=max_memory,
    )  # fmt: skip
    rec.n = n
    norms, ln1_out = [], {}
    for li in range(wiring.n_layers):
        called = sorted(
            (order[(f"n{j}:out", li)], j)
            for j in range(len(wiring.block_norms[li]))
            if (f"n{j}:out", li) in order
        )
        if len(called) != 2:
            raise UnsupportedModelError(
                f"information flow: block {li} of {bundle.name} calls {len(called)} norms; "
                f"encoder routes follow post-LN blocks (x1 = LN1(x + attn), x2 = LN2(x1 + mlp)), "
                f"such as BERT's"
            )
        (_, a), (_, b) = called
        x, y, out = full[("in", li)], full[("y", li)], full[("out", li)]
        what = f"block {li}'s first norm does not read its input plus the attention output"
        _res._close(full[(f"n{a}:in", li)].numpy(), (x + y).numpy(), what, bundle.name)
        what = f"block {li}'s output is not its second norm's output (not post-LN)"
        _res._close(full[(f"n{b}:out", li)].numpy(), out.numpy(), what, bundle.name)
        pair = tuple(
            _Norms(wiring.block_norms[li][j][1], full[(f"n{j}:in", li)],
                   full[(f"n{j}:out", li)], f"block {li}'s norm {j}", bundle.name)
            for j in (a, b)
        )  # fmt: skip
        norms.append(pair)
        rec.resid[li] = x
        ln1_out[li] = full[(f"n{a}:out", li)]
        last = li == wiring.n_layers - 1
        for key in [k for k in full if k[1] == li and not (last and k[0] == "out")]:
            del full[key]
    rec.resid[wiring.n_layers] = full[("out", wiring.n_layers - 1)]
    return rec, norms, ln1_out  # type: ignore[return-value]


class _EncoderState(_State):
    """The walk's reads on a post-LN encoder: every part through the frozen norms."""

    def __init__(
        self, bundle: ModelBundle, wiring: _res.Wiring, rec: _res.Record,
        norms: list[tuple[_Norms, _Norms]], ln1_out: dict[int, Any],
    ) -> None:  # fmt: skip
        super().__init__(bundle, wiring, rec, False)
        self.norms = norms
        self.ln1_out = ln1_out
        self._li = -1

    def attention_whole(
        self, li: int, positions: Sequence[int], alpha: Any
    ) -> tuple[Any, Any, Any | None]:
        ln1 = self.norms[li][0]
        self._li = li
        x = ln1.frozen(self.resid(li, positions), positions)
        bias = self.layer(li).bias
        part = ln1.frozen(self.mult * bias[None].expand(len(positions), -1), positions)
        return self.after_attention(li, positions), x, part if bool(bias.any()) else None

    def head_vectors(self, f: Any) -> Any:
        gamma = self.norms[self._li][0].gamma.float()
        return (f - f.mean(-1, keepdim=True)) * (gamma * self.mult)

    def row_scale(self, li: int, positions: Sequence[int]) -> Any:
        return 1.0 / self.norms[li][0].sigma[list(positions)]

    def after_attention(self, li: int, positions: Sequence[int]) -> Any:
        import torch

        return self.ln1_out[li][torch.as_tensor(list(positions))].double()

    def _mlp_parts(self, li: int, positions: Sequence[int], after: Any) -> tuple[Any, Any, Any]:
        ln2 = self.norms[li][1]
        out = self.resid(li + 1, positions)
        res = ln2.frozen(after, positions)
        return out, out - ln2.beta - res, res

    def mlp_step(self, li: int, positions: Sequence[int], after_attn: Any) -> Any:
        import torch

        out, mlp, res = self._mlp_parts(li, positions, after_attn)
        c_mlp = torch.clamp(l1_gain(out, mlp), min=EPS)
        c_res = torch.clamp(l1_gain(out, res), min=EPS)
        total = c_mlp + c_res
        return torch.stack([c_mlp / total, c_res / total], dim=-1).numpy()

    def mlp_vector(self, li: int, positions: Sequence[int], after: Any) -> Any:
        return self._mlp_parts(li, positions, after)[1]

    def pooled(self) -> tuple[Any, np.ndarray]:
        """The mean-pooled embedding and each position's raw contribution to it ``(n,)``."""
        import torch

        last = self.rec.resid[self.wiring.n_layers].double()
        whole = last.mean(0)
        n = int(last.shape[0])
        c = torch.clamp(l1_gain(whole[None].expand(n, -1), last / n), min=EPS)
        return whole, (c / c.sum()).numpy()


#: The route to the mean-pooled embedding (an encoder's default query).
POOLED = RouteQuery(position=None)


def encoder_information_flow(
    bundle: ModelBundle, capture: Capture, query: RouteQuery = POOLED
) -> Routes:
    """The route graph of a post-LN encoder (see the module and :class:`.routes.RouteQuery`):
    to the final representation of ``query.position``, or (``None``) to the mean-pooled
    embedding. On a masked LM, a position's route also carries the direct logit attribution of
    the token predicted there (``token``, minus ``against``) and each node's logit lens.

    Raises:
        UnsupportedModelError: not a post-LN encoder whose norms are LayerNorms.
    """
    threshold, position, method = query.threshold, query.position, query.method
    if bundle.architecture != "encoder":
        raise UnsupportedModelError(f"{bundle.name} is not an encoder")
    wiring = encoder_wiring(bundle, "information flow")
    tokens = stack_tokens(capture, "self")
    n = len(tokens)
    pos = None if position is None else _res.check_position(position, n)
    rows = _check_rows(pos or 0, n)
    rec, norms, ln1_out = record_encoder(bundle, wiring, capture, rows, method, query.max_memory)
    state = _EncoderState(bundle, wiring, rec, norms, ln1_out)
    top: list[tuple[Any, ...]] = []
    if pos is None:
        whole, c = state.pooled()
        blocks, _r, _b = renormalise_parts(c, 0.0, None, threshold)
        last = wiring.n_layers - 1
        start = {int(k) for k in np.flatnonzero(blocks > 0)}
        top = [
            (wiring.n_layers, "pool", node_name("I", last, k), EMBEDDING_NODE, k, -1,
             float(blocks[k]))
            for k in sorted(start)
        ]  # fmt: skip
    else:
        start = {pos}
    walk = _walk(state, start, threshold, top)
    if pos is None:
        walk["vectors"][EMBEDDING_NODE] = whole.numpy()
    explained, lens = None, None
    if pos is not None and _res.has_unembedding(bundle):
        # a masked LM: the token predicted at the position, attributed, and each node's lens
        explained = trace_logit(
            bundle, capture, token=query.token, against=query.against, position=pos,
            per_token=True, method=method, max_memory=query.max_memory,
        )  # fmt: skip
        assert explained.decomposition is not None
        scale, _cap = logit_transform(bundle.model.config)
        lens = _Lens(
            _res.find_wiring(bundle, "logit attribution"), explained.decomposition, scale, bundle
        )
    return build_routes(
        walk, tokens, "" if explained is None else explained.frame.attrs["token"],
        -1 if explained is None else explained.frame.attrs["token_id"], threshold=threshold,
        position=-1 if pos is None else pos, lens=lens, state=state, model_name=bundle.name,
        target="embedding" if pos is None else "position", attribution=explained,
    )  # fmt: skip


def check_encoder_options(bundle: ModelBundle, **given: Any) -> None:
    """Refuse the options for predicted tokens (``token=``, ``against=``; ``step=`` always)
    on an encoder without a language-model head."""
    lm = _res.has_unembedding(bundle)
    named = [k for k, v in given.items() if v is not None and not (lm and k != "step")]
    if named:
        what = (
            "a masked LM predicts no generated steps"
            if lm
            else ("information flow on an encoder traces a representation, not a predicted token")
        )
        raise InputError(
            f"{what}: leave out {', '.join(f'{k}=' for k in named)} (use position= or "
            f"target='embedding')"
        )


__all__ = [
    "EMBEDDING_NODE",
    "check_encoder_options",
    "encoder_information_flow",
    "encoder_wiring",
    "record_encoder",
]
