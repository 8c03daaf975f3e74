"""The residual stream of one prediction, read on the model and split into what wrote it.

:func:`find_wiring` finds, on a loaded language model, where its residual stream can be read:
the transformer blocks (from the attention structure), the token and position embeddings and the
norms outside the blocks (in the module holding the blocks), the norms inside each block
(outside its attention module), and the unembedding (``get_output_embeddings``). Nothing is
named per family: how each norm is wired is settled on the numbers of one forward pass
(:func:`decompose`): a norm whose input is the attention's output is a post-sublayer norm
(Gemma 2, OLMo 2); a block whose output is its last norm's output is post-LN (BART, Marian);
other norms only read the residual. Every step is checked (the parts must reproduce the next
input the model computed) before anything is attributed.

:func:`record` runs the model once (through :func:`inspector.capture.trace.run_kept`) with hooks
that keep those vectors at the traced positions (and, for the route graph, every block's input
at every position). :func:`decompose` then pulls a direction ``g`` of the final hidden state
back through the (frozen) norms, layer by layer, and returns every additive term ``c · g``:
embeddings, each head's ``z_h W_O^h``, the attention output bias, the MLP (the rest of the
block's update), norm biases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture.hooks import Hook
from ..capture.memory import MemoryLimit
from ..capture.trace import KeptAttention, hook_bytes, run_kept
from ..errors import InputError, UnsupportedModelError
from ..models.families import forward_accepts, residual_multiplier
from ..models.loading import ModelBundle
from ..models.structure import AttentionLayer, Structure
from .frozen import FrozenNorm, fit_norm
from .model import inputs_for, structure
from .value_sources import value_sources

#: Largest mismatch accepted between a sum of parts and what the model computed, relative to
#: the largest entry of the latter (float32 forward passes).
MATCH_TOLERANCE = 2e-4


@dataclass(frozen=True, eq=False)
class Wiring:
    """Where one stack's residual stream is read (found by :func:`find_wiring`).

    Attributes:
        kind: ``self``, or ``decoder`` for an encoder-decoder (its cross attention too).
        found: the self-attention structure; ``cross`` the cross attention's, or ``None``.
        blocks: the transformer blocks in the order they run.
        token_embedding / position_embeddings: embedding modules outside the blocks.
        outer_norms / block_norms: ``(name, module)`` norms outside the blocks, and inside
            each block outside its attention module.
        lm_head: the unembedding (a linear map to the vocabulary).
        head_linears: linear maps outside the encoder that a masked LM's head may run
            between the last block and the unembedding (BERT's ``transform.dense``).
    """

    kind: str
    found: Structure
    cross: Structure | None
    blocks: tuple[Any, ...]
    token_embedding: Any
    position_embeddings: tuple[Any, ...]
    outer_norms: tuple[tuple[str, Any], ...]
    block_norms: tuple[tuple[tuple[str, Any], ...], ...]
    lm_head: Any
    multiplier: float = 1.0
    head_linears: tuple[tuple[str, Any], ...] = ()

    @property
    def n_layers(self) -> int:
        return len(self.blocks)


def _is_norm(module: Any) -> bool:
    return "norm" in type(module).__name__.lower() and not any(
        "norm" in type(c).__name__.lower() for c in module.children()
    )


def has_unembedding(bundle: ModelBundle) -> bool:
    """True when the model ends in a linear map to the vocabulary (a language-model head)."""
    import torch

    get = getattr(bundle.model, "get_output_embeddings", None)
    return isinstance(get() if callable(get) else None, torch.nn.Linear)


def find_wiring(bundle: ModelBundle, feature: str) -> Wiring:
    """The residual-stream wiring of ``bundle``'s language model (its decoder's, for an
    encoder-decoder).

    Raises:
        UnsupportedModelError: not a language model with an unembedding, or no blocks found.
    """
    import torch

    model = bundle.model
    lm_head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if bundle.architecture == "encoder" and not isinstance(lm_head, torch.nn.Linear):
        raise UnsupportedModelError(
            f"{feature} explains a predicted token: {bundle.name} is an encoder without a "
            f"language-model head (a sentence or classification model); load its masked-LM "
            f"class to explain the token at a [MASK], or a decoder (e.g. smollm2); "
            f"information_flow traces an encoder's representation"
        )
    cache = bundle.extra.setdefault("wiring", {})
    if feature in cache:
        wiring: Wiring = cache[feature]
        return wiring
    kind = "decoder" if bundle.architecture == "encoder-decoder" else "self"
    found = structure(bundle, feature, kind)
    cross = structure(bundle, feature, "cross") if kind == "decoder" else None
    if not isinstance(lm_head, torch.nn.Linear):
        raise UnsupportedModelError(
            f"{feature}: {type(model).__name__} has no linear unembedding "
            f"(get_output_embeddings); load the model with its language-model head"
        )
    names = {id(m): n for n, m in model.named_modules()}
    blocks = tuple(layer.block for layer in found.layers)
    if len({id(b) for b in blocks}) != len(blocks) or blocks[0] is model:
        raise UnsupportedModelError(
            f"{feature}: the blocks of {bundle.name} were not found, or its layers share one "
            f"block (ALBERT); the trace follows models with one block per layer"
        )
    first = names[id(blocks[0])]
    root_name = first.rsplit(".", 2)[0] if first.count(".") >= 2 else ""
    embed = model.get_input_embeddings()
    while (
        bundle.architecture == "encoder"
        and root_name
        and not any(m is embed for m in model.get_submodule(root_name).modules())
    ):  # BERT's blocks are in bert.encoder, its embeddings in bert.embeddings
        root_name = root_name.rsplit(".", 1)[0] if "." in root_name else ""
    root = model.get_submodule(root_name) if root_name else model
    inside = {id(m) for b in blocks for m in b.modules()}
    attn = {
        id(m)
        for st in (found, cross)
        if st is not None
        for layer in st.layers
        for m in layer.attention.modules()
    }
    vocab = int(lm_head.out_features)
    outer, embeds = [], []
    for name, module in root.named_modules(prefix=root_name):
        if id(module) in inside:
            continue
        if _is_norm(module):
            outer.append((name, module))
        elif isinstance(module, torch.nn.Embedding):
            embeds.append(module)
    head_linears = []
    if bundle.architecture == "encoder":  # a masked LM's head: dense, activation, norm
        in_root = {id(m) for m in root.modules()}
        for name, module in model.named_modules():
            if id(module) in in_root or module is lm_head:
                continue
            if _is_norm(module):
                outer.append((name, module))
            elif isinstance(module, torch.nn.Linear):
                head_linears.append((name, module))
    token = next((e for e in embeds if int(e.num_embeddings) == vocab), None)
    token = token or next((e for e in embeds if e is model.get_input_embeddings()), None)
    block_norms = tuple(
        tuple(
            (names.get(id(m), "norm"), m)
            for m in block.modules()
            if _is_norm(m) and id(m) not in attn
        )
        for block in blocks
    )
    wiring = Wiring(
        kind, found, cross, blocks, token, tuple(e for e in embeds if e is not token),
        tuple(outer), block_norms, lm_head, residual_multiplier(model.config),
        tuple(head_linears),
    )  # fmt: skip
    cache[feature] = wiring
    return wiring


# --------------------------------------------------------------------------- recording


@dataclass(eq=False)
class Record:
    """What one traced forward pass kept.

    Attributes:
        rows: the traced query positions (``rows[current]`` is the explained one).
        at: ``key -> [(call order, (len(rows), width) float64)]`` for every tapped module.
        resid: ``layer -> (n, hidden)`` float32 input of every block at every position, plus
            ``n_layers`` -> the last block's output (only when recorded with ``full=True``).
        values: the value sources' outputs and output projections' inputs (``value_hooks``).
        attention: the kept attention (rows of any position, later).
        all_logits: the model's logits at every traced row (``(rows, vocab)`` float64).
        n: the stack's sequence length.
    """

    rows: list[int]
    full: bool = False
    at: dict[str, list[tuple[int, np.ndarray]]] = field(default_factory=dict)
    resid: dict[int, Any] = field(default_factory=dict)
    values: dict[tuple[int, int], Any] = field(default_factory=dict)
    cross_values: dict[tuple[int, int], Any] = field(default_factory=dict)
    attention: KeptAttention | None = None
    all_logits: np.ndarray | None = None
    n: int = 0
    order: int = 0
    #: the row :meth:`get` reads by default (``rows[current]`` is the explained position)
    current: int = 0

    @property
    def position(self) -> int:
        return self.rows[self.current]

    @property
    def logits(self) -> np.ndarray | None:
        """The model's logits at the explained row (``(vocab,)`` float64)."""
        return None if self.all_logits is None else self.all_logits[self.current]

    def put(self, key: str, t: Any, kept: bool = False) -> None:
        """Keep ``t``'s traced rows (``kept``: ``t`` holds exactly those rows, in order)."""
        x = t.detach().reshape(-1, t.shape[-1])
        self.order += 1
        x = x if kept else x[self.rows]
        self.at.setdefault(key, []).append((self.order, x.double().cpu().numpy()))

    def get(self, key: str, row: int | None = None) -> np.ndarray:
        """The vector of ``key`` at ``rows[row]`` (default: the explained row; its last call)."""
        return self.at[key][-1][1][self.current if row is None else row]

    def when(self, key: str) -> int:
        return self.at[key][-1][0] if key in self.at else -1


def _first(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("hidden_states")


def _out(output: Any) -> Any:
    return output[0] if isinstance(output, tuple | list) else output


def _hooks(rec: Record, wiring: Wiring, kept_head: bool) -> list[Hook]:
    hooks: list[Hook] = []

    def post(key: str, full: int | None = None) -> Any:
        def hook(_m: Any, _a: Any, output: Any) -> None:
            t = _out(output)
            rec.put(key, t)
            if full is not None:
                rec.resid[full] = t.detach().reshape(-1, t.shape[-1]).float().clone()

        return hook

    def pre(key: str, full: int | None = None, kept: bool = False) -> Any:
        def hook(_m: Any, args: Any, kwargs: Any) -> None:
            t = _first(args, kwargs)
            rec.put(key, t, kept)
            if full is not None:
                rec.resid[full] = t.detach().reshape(-1, t.shape[-1]).float().clone()

        return hook

    last = wiring.n_layers - 1
    for li, block in enumerate(wiring.blocks):
        hooks.append(Hook(block, pre(f"in{li}", li if rec.full else None), "pre_kw"))
        hooks.append(Hook(block, post(f"out{li}", li + 1 if rec.full and li == last else None)))
        for tag, st in (("", wiring.found), ("c", wiring.cross)):
            if st is None:
                continue
            layer = st.layers[li]
            hooks.append(Hook(layer.out, pre(f"z{tag}{li}"), "pre_kw", call=layer.call))
            hooks.append(Hook(layer.out, post(f"y{tag}{li}"), call=layer.call))
        for name, norm in wiring.block_norms[li]:
            hooks.append(Hook(norm, pre(f"{name}:in"), "pre_kw"))
            hooks.append(Hook(norm, post(f"{name}:out")))
    for name, module in wiring.outer_norms + wiring.head_linears:
        hooks.append(Hook(module, pre(f"{name}:in"), "pre_kw"))
        hooks.append(Hook(module, post(f"{name}:out")))
    if wiring.token_embedding is not None:
        hooks.append(Hook(wiring.token_embedding, post("tok")))
    for i, emb in enumerate(wiring.position_embeddings):
        hooks.append(Hook(emb, post(f"pos{i}")))
    # with logits_to_keep, the unembedding sees only the traced rows, in their order
    hooks.append(Hook(wiring.lm_head, pre("head_in", kept=kept_head), "pre_kw"))
    return hooks


def stack_length(bundle: ModelBundle, inputs: Any) -> int:
    key = "decoder_input_ids" if bundle.architecture == "encoder-decoder" else "input_ids"
    return int(inputs[key].shape[-1])


def record(
    bundle: ModelBundle,
    wiring: Wiring,
    source: Any,
    rows: Sequence[int],
    *,
    full: bool = False,
    values: bool = False,
    method: str = "auto",
    max_memory: MemoryLimit | None = None,
    choose: bool = True,
) -> Record:
    """Run the model once on ``source`` (a capture, tokens or text) keeping the residual
    stream's parts at ``rows`` (and every block input with ``full``; the value sources'
    outputs with ``values``: only the verified one of each layer with ``choose``, see
    :mod:`.value_sources`), after a memory pre-flight against ``max_memory``."""
    import torch

    from .norms import value_hooks

    inputs = inputs_for(bundle, source)
    n = stack_length(bundle, inputs)
    rows = [int(r) for r in rows]
    rec = Record(rows, full=full, n=n)
    call_kw: dict[str, Any] = {}
    if bundle.architecture == "decoder" and forward_accepts(bundle.model, "logits_to_keep"):
        call_kw["logits_to_keep"] = torch.tensor(rows)
    hooks = _hooks(rec, wiring, "logits_to_keep" in call_kw)
    only = None
    if values:
        layers = list(range(wiring.n_layers))
        probe = lambda x, r: record(bundle, wiring, x, r, values=True, choose=False)  # noqa: E731
        only = value_sources(bundle, wiring, inputs, probe) if choose else None
        hooks += value_hooks(wiring.found, layers, rec.values, rows=rows, only=only)
        if wiring.cross is not None:
            hooks += value_hooks(wiring.cross, layers, rec.cross_values, rows=rows)
    kinds = ["self"] if wiring.kind == "self" else ["decoder", "cross"]
    sources = [
        s.module
        for li, layer in enumerate(wiring.found.layers)
        for si, s in enumerate(layer.values)
        if values and (only is None or only.get(li) == si)
    ]
    recorded = hook_bytes(bundle, n, blocks=wiring.n_layers + 1 if full else 0, outputs=sources)
    out, kept = run_kept(
        bundle, inputs, kinds=kinds, hooks=hooks, method=method, recorded=recorded,
        max_memory=max_memory, **call_kw,
    )  # fmt: skip
    logits = out.logits[0]
    logits = logits if "logits_to_keep" in call_kw else logits[rows]
    rec.all_logits = logits.detach().double().cpu().numpy()
    rec.attention = kept
    return rec


def check_position(position: int, n: int) -> int:
    """``position`` (negative counts from the end) as an index into ``n`` positions."""
    if isinstance(position, bool) or not isinstance(position, int | np.integer):
        raise InputError(f"position must be an integer, got {position!r}")
    pos = int(position) + n if position < 0 else int(position)
    if not 0 <= pos < n:
        raise InputError(f"position {position} is outside the {n} tokens")
    return pos


# ------------------------------------------------------------------------ decomposition


@dataclass
class Term:
    """One additive term of the traced logit: ``value = vector · direction``."""

    kind: str
    layer: int
    head: int
    value: float


@dataclass
class Decomposition:
    """The terms of ``g · h`` (``h`` the final hidden state at the traced row), and the
    directions that read each layer's head outputs (for per-token splits)."""

    terms: list[Term]
    head_dirs: dict[tuple[str, int], np.ndarray]
    #: the frozen steps from the last block to the unembedding (norms; a masked LM's dense
    #: map and activation): each ``apply`` is the model's own function, for the logit lens
    final: list[Any]
    head_scale: float
    #: how each block writes the residual: ``pre`` (adds its sublayers' outputs as they are),
    #: ``sublayer-norm`` (normalises them first), ``post-ln`` (normalises the residual)
    layouts: dict[int, str] = field(default_factory=dict)


def _close(got: np.ndarray, want: np.ndarray, what: str, name: str) -> None:
    tol = MATCH_TOLERANCE * max(float(np.abs(want).max()), 1e-6)
    err = float(np.abs(got - want).max())
    if err > tol:
        raise UnsupportedModelError(
            f"{name}: {what} (off by {err:.3g}, tolerance {tol:.2g}); its residual stream is "
            f"wired in a way the trace does not follow"
        )


def _matches(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).max() <= MATCH_TOLERANCE * max(float(np.abs(b).max()), 1e-6))


def _scalar(got: np.ndarray, want: np.ndarray) -> float | None:
    """``c`` with ``c * got == want`` (checked), or ``None``."""
    denom = float(got @ got)
    if denom == 0.0:
        return None
    c = float(got @ want) / denom
    return c if _matches(c * got, want) else None


def _norms_between(rec: Record, norms: Sequence[tuple[str, Any]], lo: int, hi: int) -> list[Any]:
    """``(name, module)`` of ``norms`` called between call orders ``lo`` and ``hi``, in order."""
    called = [(rec.when(f"{n}:out"), n, m) for n, m in norms if lo < rec.when(f"{n}:out") < hi]
    return [(n, m) for _, n, m in sorted(called, key=lambda t: t[0])]


def _fit(rec: Record, name: str, module: Any) -> FrozenNorm:
    return fit_norm(module, rec.get(f"{name}:in"), rec.get(f"{name}:out"), name)


def decompose(
    rec: Record,
    wiring: Wiring,
    g: np.ndarray,
    bundle_name: str,
    final: tuple[list[Any], float],
) -> Decomposition:
    """Every additive term of ``g · lm_head_input`` at ``rec.position``, bottom-up.

    ``g`` is the unembedding direction (``W_U[token] - W_U[against]``, logit-scaled); ``final``
    the frozen steps from the last block's output to the unembedding's input and the constant
    between them (:func:`.readout.final_steps`). Norms are frozen at the model's own scales;
    each step is checked against the next input the model computed.
    """
    p = _Pass(rec, wiring, bundle_name)
    layouts: dict[int, str] = {}
    steps, c = final
    g = c * np.asarray(g, dtype=np.float64)
    for step in reversed(steps):
        if step.bias is not None:
            p.terms.append(Term(step.bias_kind, wiring.n_layers, -1, step.bias_term(g)))
        g = step.pullback(g)
    for li in reversed(range(wiring.n_layers)):
        g, layouts[li] = _layer(p, li, g)
    _embeddings(p, g)
    p.terms.reverse()
    return Decomposition(p.terms, p.head_dirs, steps, c, layouts)


@dataclass
class _Pass:
    """One decomposition under way: what it reads and the terms found so far (top-down)."""

    rec: Record
    wiring: Wiring
    name: str
    terms: list[Term] = field(default_factory=list)
    head_dirs: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def fit(self, name: str, module: Any) -> FrozenNorm:
        return _fit(self.rec, name, module)


def _head_terms(p: _Pass, st: Structure, li: int, tag: str, gh: np.ndarray, kind: str) -> None:
    layer: AttentionLayer = st.layers[li]
    p.head_dirs[(kind, li)] = gh
    z = p.rec.get(f"z{tag}{li}").reshape(st.n_heads, st.head_dim)
    w_o = layer.out_weight.double().cpu().numpy()  # (h, d, hidden)
    per_head = np.einsum("hd,hdk,k->h", z, w_o, gh)
    bias = getattr(layer.out, "bias", None)
    if bias is not None:
        value = float(bias.detach().double().cpu().numpy() @ gh)
        p.terms.append(Term(f"{kind}_bias", li, -1, value))
    for h in reversed(range(st.n_heads)):
        p.terms.append(Term(kind, li, h, float(per_head[h])))


def _layer(p: _Pass, li: int, g: np.ndarray) -> tuple[np.ndarray, str]:
    """Terms of block ``li`` (appended top-down); returns ``g`` pulled back to its input and
    the block's layout (:attr:`Decomposition.layouts`)."""
    rec, wiring = p.rec, p.wiring
    x_in, x_out = rec.get(f"in{li}"), rec.get(f"out{li}")
    outs = {"": rec.get(f"y{li}")}
    if wiring.cross is not None:
        outs["c"] = rec.get(f"yc{li}")
    norms = _norms_between(rec, wiring.block_norms[li], rec.when(f"in{li}"), rec.when(f"out{li}"))
    if norms and _matches(rec.get(f"{norms[-1][0]}:out"), x_out):
        return _post_ln_layer(p, li, g, norms), "post-ln"
    # a norm reading an attention output normalises it before the residual (Gemma 2, OLMo 2)
    sub: dict[str, FrozenNorm | None] = dict.fromkeys(outs)
    for n, module in norms:
        for tag, out in outs.items():
            if sub[tag] is None and _matches(rec.get(f"{n}:in"), out):
                sub[tag] = p.fit(n, module)
    update = x_out - x_in
    for tag, out in outs.items():
        norm = sub[tag]
        if norm is None:
            update = update - p.wiring.multiplier * out
        else:
            update = update - norm.linear(out) - (0.0 if norm.bias is None else norm.bias)
    p.terms.append(Term("mlp", li, -1, float(update @ g)))
    for tag, kind in (("c", "cross_head"), ("", "head")):
        if tag not in outs:
            continue
        norm = sub[tag]
        st = wiring.cross if tag == "c" else wiring.found
        assert st is not None
        _head_terms(p, st, li, tag, norm.pullback(g) if norm else wiring.multiplier * g, kind)
        if norm is not None and norm.bias is not None:
            p.terms.append(Term(f"{kind}_norm_bias", li, -1, norm.bias_term(g)))
    return g, "sublayer-norm" if any(sub.values()) else "pre"


def _post_ln_layer(p: _Pass, li: int, g: np.ndarray, norms: list[tuple[str, Any]]) -> np.ndarray:
    """A post-LN block (BART, Marian): ``x -> N1(x + attn) -> N2(. + cross) -> N3(. + mlp)``."""
    rec, wiring = p.rec, p.wiring
    subs = [("", "head")] + ([("c", "cross_head")] if wiring.cross is not None else [])
    if len(norms) != len(subs) + 1:
        raise UnsupportedModelError(
            f"{p.name}: block {li} normalises its residual {len(norms)} times for "
            f"{len(subs) + 1} sublayers; the trace does not follow this wiring"
        )
    fitted = [p.fit(n, m) for n, m in norms]
    before = rec.get(f"in{li}")
    for (tag, _), (n, _) in zip(subs, norms, strict=False):
        what = f"block {li}'s {n} does not read its input plus the attention output"
        _close(rec.get(f"{n}:in"), before + rec.get(f"y{tag}{li}"), what, p.name)
        before = rec.get(f"{n}:out")
    mlp = rec.get(f"{norms[-1][0]}:in") - before
    for i in reversed(range(len(fitted))):
        norm = fitted[i]
        if norm.bias is not None:
            p.terms.append(Term("norm_bias", li, -1, norm.bias_term(g)))
        g = norm.pullback(g)
        if i == len(subs):
            p.terms.append(Term("mlp", li, -1, float(mlp @ g)))
            continue
        tag, kind = subs[i]
        st = wiring.cross if tag == "c" else wiring.found
        assert st is not None
        _head_terms(p, st, li, tag, g, kind)
    return g


def _embeddings(p: _Pass, g: np.ndarray) -> None:
    """The embedding terms (top-down): token and position embeddings through any embedding
    norm, when they reproduce the first block's input; else one ``embeddings`` term."""
    rec = p.rec
    x0 = rec.get("in0")
    whole = Term("embeddings", -1, -1, float(x0 @ g))
    if "tok" not in rec.at:
        p.terms.append(whole)
        return
    parts = [("embed", rec.get("tok"))]
    for i in range(len(p.wiring.position_embeddings)):
        # an embedding the pass called, of the residual's width (MPNet's relative attention
        # bias and DeBERTa's unused absolute positions are not parts)
        if f"pos{i}" in rec.at and rec.get(f"pos{i}").shape == x0.shape:
            parts.append(("pos_embed", rec.get(f"pos{i}")))
    total = np.sum([v for _, v in parts], axis=0)
    norms = _norms_between(rec, p.wiring.outer_norms, rec.when("tok"), rec.when("in0"))
    target, norm = x0, None
    if len(norms) == 1 and _matches(rec.get(f"{norms[0][0]}:out"), x0):
        norm = p.fit(*norms[0])
        target = rec.get(f"{norms[0][0]}:in")
    c = _scalar(total, target) if len(norms) <= 1 else None
    if c is None:
        p.terms.append(whole)
        return
    if norm is not None:
        if norm.bias is not None:
            p.terms.append(Term("embed_norm_bias", -1, -1, norm.bias_term(g)))
        g = norm.pullback(g)
    for kind, v in reversed(parts):
        p.terms.append(Term(kind, -1, -1, float(c * v @ g)))


__all__ = [
    "MATCH_TOLERANCE",
    "Decomposition",
    "Record",
    "Term",
    "Wiring",
    "check_position",
    "decompose",
    "find_wiring",
    "has_unembedding",
    "record",
    "stack_length",
]
