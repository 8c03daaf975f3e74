"""Debugging decisions: which tokens and which heads actually matter for a model's output.

Raw attention weights mislead: a head can put most of its weight on a "sink" token such as
``[CLS]`` while passing on almost nothing from it. This module offers four corrections:

Token level (``(query, key)`` or ``(layer, head, query, key)`` arrays):

* :func:`rollout` - attention rollout (Abnar & Zuidema 2020): per layer
  ``Â = normalise(0.5·mean_heads(A) + 0.5·I)``, multiplied through the layers. Pure.
* :func:`attention_flow` - attention flow (same paper): max-flow through the layered attention
  graph with ``Â`` as capacities (networkx). Pure, but slow: limited to :data:`FLOW_MAX_TOKENS`.
* :func:`attention_norms` - norm-based attention (Kobayashi et al. 2020):
  ``‖α_ij · f_h(x_j)‖`` with ``f_h(x) = (x W_V + b_V) W_O`` restricted to head ``h``, read
  with forward hooks on the value projection. Runs the model.

Head level (``(layer, head)`` frames):

* :func:`head_importance` - the change of a :class:`Target` when one head's output is zeroed
  (or mean-replaced), all ``layer × head`` ablations batched into a few forward passes, or the
  gate gradient ``|∂target/∂ξ_h|`` at ``ξ = 1`` (Michel et al. 2019), normalised per layer.

Everything that runs the model does so through forward hooks that are always removed afterwards
(also when the forward raises); the model is left exactly as loaded: eval mode, ``requires_grad``
flags, attention implementation and ``.grad`` untouched. This module must not import ``render``,
``api`` or ``cli``.

Supported for head ablation and norms: BERT-family encoders (BERT, RoBERTa, ELECTRA, DistilBERT,
MiniLM, ...), GPT-2 and LLaMA-style decoders (LLaMA, Mistral, Qwen2, SmolLM, with grouped-query
attention). Other models raise :class:`~inspector.errors.UnsupportedModelError`.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from .capture import AttentionStack, Capture, Tokens
from .errors import InputError, UnsupportedModelError
from .loading import ModelBundle

HeadReduce = Literal["mean", "max", "min"]
Method = Literal["ablation", "gradient"]
AblationMode = Literal["zero", "mean"]
Score = Literal["prob", "logprob", "logit", "loss"]

#: Longest input :func:`attention_flow` accepts (one max-flow problem per query/key pair).
FLOW_MAX_TOKENS = 32
#: Measured wall time of :func:`attention_flow` at :data:`FLOW_MAX_TOKENS` tokens and 6 layers:
#: 29 s on an idle 2-core CPU, 66 s on a loaded one (bench/bench_explain.py re-measures it).
FLOW_SECONDS_AT_LIMIT = 60.0

# ============================================================================ pure: token level


def _as_weights(attention: AttentionStack | np.ndarray) -> np.ndarray:
    w = attention.weights if isinstance(attention, AttentionStack) else np.asarray(attention)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise InputError(
            f"expected self-attention weights (layer, head, query, key) with query == key, got "
            f"shape {w.shape}; cross attention has no rollout, use the encoder or decoder stack"
        )
    return w


def _reduce_heads(w: np.ndarray, head_reduce: str) -> np.ndarray:
    if head_reduce == "mean":
        return np.asarray(w.mean(axis=1))
    if head_reduce == "max":
        return np.asarray(w.max(axis=1))
    if head_reduce == "min":
        return np.asarray(w.min(axis=1))
    raise InputError(f"head_reduce must be 'mean', 'max' or 'min', not {head_reduce!r}")


def _start(start_layer: int, n_layers: int) -> int:
    s = start_layer + n_layers if start_layer < 0 else start_layer
    if not 0 <= s < n_layers:
        raise InputError(f"start_layer {start_layer} is out of range for {n_layers} layers")
    return s


def residual_attention(
    attention: AttentionStack | np.ndarray,
    *,
    head_reduce: HeadReduce = "mean",
    residual: float = 0.5,
) -> np.ndarray:
    """Per-layer ``Â = normalise((1 - residual)·reduce_heads(A) + residual·I)``.

    Args:
        attention: weights ``(layer, head, query, key)`` or an :class:`AttentionStack`.
        head_reduce: how heads are combined: ``mean`` (the paper), ``max`` or ``min``.
        residual: weight of the identity standing for the residual connection (0.5 in the paper).

    Returns:
        float64 ``(layer, query, key)`` with rows summing to 1.
    """
    w = _as_weights(attention).astype(np.float64)
    if not 0.0 <= residual <= 1.0:
        raise InputError(f"residual must lie in [0, 1], got {residual}")
    a = (1.0 - residual) * _reduce_heads(w, head_reduce) + residual * np.eye(w.shape[-1])
    return np.asarray(a / a.sum(axis=-1, keepdims=True))


def rollout(
    attention: AttentionStack | np.ndarray,
    *,
    start_layer: int = 0,
    head_reduce: HeadReduce = "mean",
    residual: float = 0.5,
    special: np.ndarray | None = None,
    exclude_special: bool = False,
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): ``Â_{L-1} ··· Â_{start}``.

    Args:
        attention: weights ``(layer, head, query, key)`` or an :class:`AttentionStack` (whose
            axis 0 must be consecutive layers).
        start_layer: first layer multiplied in (negative counts from the end).
        head_reduce, residual: see :func:`residual_attention`.
        special: boolean ``(n,)`` mask of special tokens (taken from the stack when omitted).
        exclude_special: drop special tokens' rows and columns from the result and renormalise
            the rows (the rollout itself runs over all tokens).

    Returns:
        float64 ``(query, key)``: how much of each output position's representation flows from
        each input position. Rows sum to 1.

    Example:
        >>> import numpy as np
        >>> w = np.full((2, 1, 3, 3), 1 / 3)
        >>> rollout(w).round(3)[0].tolist()
        [0.5, 0.25, 0.25]
    """
    a = residual_attention(attention, head_reduce=head_reduce, residual=residual)
    s = _start(start_layer, a.shape[0])
    out = np.eye(a.shape[-1])
    for layer in range(s, a.shape[0]):
        out = a[layer] @ out
    return _finish(out, attention, special, exclude_special)


def _special_of(attention: Any, special: np.ndarray | None, n: int) -> np.ndarray:
    if special is not None:
        mask = np.asarray(special, dtype=bool)
    elif isinstance(attention, AttentionStack):
        mask = np.asarray(attention.query.special, dtype=bool)
    else:
        raise InputError("exclude_special=True needs special= (a boolean mask of special tokens)")
    if mask.shape != (n,):
        raise InputError(f"special has shape {mask.shape}, expected ({n},)")
    if mask.all():
        raise InputError("every token is special; nothing is left after exclude_special=True")
    return mask


def _finish(
    matrix: np.ndarray, attention: Any, special: np.ndarray | None, exclude_special: bool
) -> np.ndarray:
    if not exclude_special:
        return matrix
    keep = ~_special_of(attention, special, matrix.shape[-1])
    return renormalise(matrix[..., keep, :][..., keep])


def renormalise(matrix: np.ndarray) -> np.ndarray:
    """Divide each row (last axis) by its sum; all-zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float64)
    sums = m.sum(axis=-1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def exclude_special_tokens(
    values: np.ndarray, special: np.ndarray, *, normalise: bool = True
) -> np.ndarray:
    """Drop special tokens from the last two axes ``(..., query, key)`` and renormalise rows."""
    keep = ~np.asarray(special, dtype=bool)
    if keep.shape != values.shape[-1:] or not keep.any():
        raise InputError(
            f"special mask of shape {keep.shape} does not fit values {values.shape} or "
            f"leaves no token"
        )
    out = values[..., keep, :][..., keep]
    return renormalise(out) if normalise else out


def attention_flow(
    attention: AttentionStack | np.ndarray,
    *,
    start_layer: int = 0,
    head_reduce: HeadReduce = "mean",
    residual: float = 0.5,
    special: np.ndarray | None = None,
    exclude_special: bool = False,
    max_tokens: int = FLOW_MAX_TOKENS,
) -> np.ndarray:
    """Attention flow (Abnar & Zuidema 2020): max-flow through the layered attention graph.

    Nodes are ``(level, position)`` for levels ``start_layer .. L``; an edge from position ``i``
    at level ``l + 1`` to position ``j`` at level ``l`` has capacity ``Â_l[i, j]``
    (:func:`residual_attention`). Entry ``[i, j]`` is the maximum flow from output ``i`` to input
    ``j``; each row is then normalised to sum to 1.

    It solves ``n²`` max-flow problems on a graph of ``layers·n²`` edges, so it refuses inputs
    longer than ``max_tokens`` (default :data:`FLOW_MAX_TOKENS` = 32; 30 to 60 s at that
    limit with 6 layers on a 2-core CPU, see :data:`FLOW_SECONDS_AT_LIMIT`). Use :func:`rollout` for
    long inputs: it is the fast approximation.

    Returns:
        float64 ``(query, key)``, rows summing to 1.
    """
    import networkx as nx
    from networkx.algorithms.flow import build_residual_network, preflow_push

    a = residual_attention(attention, head_reduce=head_reduce, residual=residual)
    n = a.shape[-1]
    if n > max_tokens:
        raise InputError(
            f"attention flow on {n} tokens is too slow: it solves {n}² max-flow problems; the "
            f"limit is {max_tokens} tokens (up to about {FLOW_SECONDS_AT_LIMIT:.0f} s at "
            f"{FLOW_MAX_TOKENS} tokens and 6 layers). Shorten the input, or use rollout(), the "
            f"fast approximation"
        )
    s = _start(start_layer, a.shape[0])
    layers = a.shape[0] - s
    graph = nx.DiGraph()
    for depth in range(layers):
        mat = a[s + depth]
        for i in range(n):
            for j in range(n):
                if mat[i, j] > 0:
                    graph.add_edge((depth + 1, i), (depth, j), capacity=float(mat[i, j]))
    flow = np.eye(n)
    if layers > 0:
        # One residual network reused by every problem: ~6x faster than maximum_flow_value.
        residual_net = build_residual_network(graph, "capacity")
        for i in range(n):
            for j in range(n):
                solved = preflow_push(graph, (layers, i), (0, j), residual=residual_net)
                flow[i, j] = solved.graph["flow_value"]
    return _finish(renormalise(flow), attention, special, exclude_special)


def matrix_frame(matrix: np.ndarray, tokens: Tokens, *, value: str = "weight") -> pd.DataFrame:
    """Long frame of a ``(query, key)`` matrix: ``query_pos, key_pos, query_token, key_token``."""
    n_q, n_k = matrix.shape
    names = list(tokens.tokens)
    if n_q != len(names) or n_k != len(names):
        keep = np.flatnonzero(~tokens.special)
        if n_q != keep.size:
            raise InputError(f"matrix {matrix.shape} does not match {len(names)} tokens")
        positions = keep
    else:
        positions = np.arange(n_q)
    q = np.repeat(positions, n_k)
    k = np.tile(positions, n_q)
    return pd.DataFrame(
        {
            "query_pos": q.astype(np.int32),
            "key_pos": k.astype(np.int32),
            "query_token": pd.Categorical([names[i] for i in q]),
            "key_token": pd.Categorical([names[i] for i in k]),
            value: matrix.reshape(-1).astype(np.float32),
        }
    )


def sink_heads(
    weights: np.ndarray,
    norms: np.ndarray,
    tokens: Tokens,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    raw_min: float = 0.3,
    norm_max: float = 0.15,
) -> pd.DataFrame:
    """Heads whose attention is dominated by a special "sink" token that passes on little.

    For each head and special token: ``raw_share`` is the mean over queries of the raw weight on
    the token, ``norm_share`` the same for the norm-based weights (:func:`attention_norms`, rows
    renormalised). A head is flagged when ``raw_share >= raw_min`` and ``norm_share <= norm_max``.

    Returns:
        Frame ``layer, head, key_pos, key_token, raw_share, norm_share``, largest raw share first.
    """
    if weights.shape != norms.shape:
        raise InputError(f"weights {weights.shape} and norms {norms.shape} differ in shape")
    n_l, n_h = weights.shape[:2]
    layers = list(layers) if layers is not None else list(range(n_l))
    heads = list(heads) if heads is not None else list(range(n_h))
    share = renormalise(norms)
    rows = []
    for pos in np.flatnonzero(tokens.special):
        raw = weights[..., pos].mean(axis=-1)
        nrm = share[..., pos].mean(axis=-1)
        for li, hi in np.argwhere((raw >= raw_min) & (nrm <= norm_max)):
            rows.append(
                (layers[li], heads[hi], int(pos), tokens.tokens[pos], raw[li, hi], nrm[li, hi])
            )
    frame = pd.DataFrame(
        rows, columns=["layer", "head", "key_pos", "key_token", "raw_share", "norm_share"]
    )
    return frame.sort_values("raw_share", ascending=False, ignore_index=True)


# ============================================================================ model structure


@dataclass(frozen=True)
class _AttentionLayer:
    """Where one layer's attention, value and output projections live and how to read them."""

    block: Any  # the transformer block (BertLayer, GPT2Block, LlamaDecoderLayer, ...)
    attention: Any  # the module computing the attention: parent of ``value``, input hidden states
    value: Any  # module whose output holds the values
    value_slice: slice | None  # part of that output that is the values (GPT-2's fused c_attn)
    out: Any  # output projection, input (batch, seq, heads * head_dim)
    out_weight: Any  # tensor (heads, head_dim, hidden): W_O split by head


@dataclass(frozen=True)
class _Structure:
    family: str
    layers: tuple[_AttentionLayer, ...]
    n_heads: int
    n_kv_heads: int
    head_dim: int


def _get(module: Any, path: str) -> Any:
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


#: family, value module, output projection (paths inside one transformer block).
_PATTERNS = (
    ("bert", "attention.self.value", "attention.output.dense"),
    ("distilbert", "attention.v_lin", "attention.out_lin"),
    ("gpt2", "attn.c_attn", "attn.c_proj"),
    ("llama", "self_attn.v_proj", "self_attn.o_proj"),
)

SUPPORTED_FAMILIES = (
    "BERT-family encoders (BERT, RoBERTa, ELECTRA, DistilBERT, MiniLM), GPT-2, LLaMA-style "
    "decoders (LLaMA, Mistral, Qwen2, SmolLM)"
)


def _structure(bundle: ModelBundle, feature: str) -> _Structure:
    import torch

    model = bundle.model
    if bundle.architecture == "encoder-decoder":
        raise UnsupportedModelError(
            f"{feature} does not support encoder-decoder models ({bundle.model_type}); it "
            f"supports {SUPPORTED_FAMILIES}. Rollout and attention flow work on any stack"
        )
    for module in model.modules():
        if not isinstance(module, torch.nn.ModuleList) or len(module) != bundle.n_layers:
            continue
        for family, value_path, out_path in _PATTERNS:
            if _get(module[0], value_path) is None or _get(module[0], out_path) is None:
                continue
            layers = []
            for block in module:
                value, out = _get(block, value_path), _get(block, out_path)
                w = out.weight.detach()
                # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
                w_in_out = w if family == "gpt2" else w.T
                in_features = w_in_out.shape[0]
                head_dim = in_features // bundle.n_heads
                if head_dim * bundle.n_heads != in_features:
                    break
                split = None
                if family == "gpt2":
                    split = slice(2 * in_features, 3 * in_features)
                layers.append(
                    _AttentionLayer(
                        block,
                        _get(block, value_path.rpartition(".")[0]),
                        value,
                        split,
                        out,
                        w_in_out.reshape(bundle.n_heads, head_dim, -1),
                    )
                )
            if len(layers) == bundle.n_layers:
                return _Structure(
                    family,
                    tuple(layers),
                    bundle.n_heads,
                    bundle.n_kv_heads,
                    layers[0].out_weight.shape[1],
                )
    raise UnsupportedModelError(
        f"{feature} does not support model type {bundle.model_type!r} "
        f"({type(model).__name__}): no value / output projections of a known layout were found. "
        f"Supported: {SUPPORTED_FAMILIES}"
    )


# ============================================================================ inputs


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def inputs_from_tokens(bundle: ModelBundle, tokens: Tokens) -> dict[str, Any]:
    """Model inputs (batch of 1) for exactly the tokens of a capture."""
    import torch

    device = next(bundle.model.parameters()).device
    ids = torch.tensor(tokens.ids.tolist(), device=device)[None]
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    b_start = tokens.sentence_b_start
    if b_start is not None and _accepts(bundle.model, "token_type_ids"):
        types = torch.zeros_like(ids)
        types[0, b_start:] = 1
        inputs["token_type_ids"] = types
    return inputs


def inputs_from_text(
    bundle: ModelBundle, text: str, text_pair: str | None = None, *, truncation: bool = True
) -> dict[str, Any]:
    """Tokenise one text (or pair) into model inputs with a batch of 1."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"texts must be non-empty strings, got {text!r}")
    kw: dict[str, Any] = {"return_tensors": "pt"}
    if truncation and bundle.max_positions:
        kw.update(truncation=True, max_length=bundle.max_positions)
    enc = bundle.tokenizer(text, text_pair, **kw) if text_pair else bundle.tokenizer(text, **kw)
    device = next(bundle.model.parameters()).device
    inputs = {"input_ids": enc["input_ids"].to(device)}
    inputs["attention_mask"] = enc.get("attention_mask", inputs["input_ids"] * 0 + 1).to(device)
    if "token_type_ids" in enc and _accepts(bundle.model, "token_type_ids"):
        inputs["token_type_ids"] = enc["token_type_ids"].to(device)
    return inputs


# ============================================================================ hooks


@contextlib.contextmanager
def _hooks(
    registrations: Iterable[tuple[Any, str, Callable[..., Any]]], lock: Any
) -> Iterator[None]:
    """Register ``(module, "pre" | "pre_kw" | "post", fn)`` hooks; always remove them on exit.

    ``pre_kw`` is a forward pre-hook called as ``fn(module, args, kwargs)`` that returns
    ``(args, kwargs)`` (``with_kwargs=True``).

    ``lock`` (the model's :attr:`~inspector.loading.ModelBundle.lock`) is held from registration
    to removal, so another thread's forward pass never runs through these hooks.
    """
    handles = []
    with lock:
        try:
            for module, when, fn in registrations:
                if when == "pre":
                    handles.append(module.register_forward_pre_hook(fn))
                elif when == "pre_kw":
                    handles.append(module.register_forward_pre_hook(fn, with_kwargs=True))
                else:
                    handles.append(module.register_forward_hook(fn))
            yield
        finally:
            for handle in handles:
                handle.remove()


def _gate_hook(gate: Any, n_heads: int, mode: str, *, grow: int = 0) -> Callable[..., Any]:
    """Pre-hook on an output projection: head slice ``h`` becomes ``g·x_h (+ (1-g)·mean x_h)``.

    ``gate`` has shape ``(batch or 1, heads)``; a gate of 1 passes the head unchanged, 0 ablates
    it (zero, or its mean over positions when ``mode == "mean"``). ``grow`` first appends that
    many copies of row 0 of the input (see :func:`_shared_prefix_pass`).
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
) -> Iterator[None]:
    """Within the block, every forward pass of ``bundle.model`` runs with ``heads`` ablated.

    Args:
        bundle: a loaded BERT-family, GPT-2 or LLaMA-style model.
        heads: ``(layer, head)`` pairs to ablate; empty leaves the output bitwise unchanged.
        mode: ``zero`` the head's output, or replace it by its ``mean`` over positions.

    Example:
        >>> with ablated_heads(bundle, [(0, 3)]):  # doctest: +SKIP
        ...     out = bundle.model(**inputs)
    """
    import torch

    structure = _structure(bundle, "head ablation")
    _check_mode(mode)
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        _check_head(bundle, layer, head)
        by_layer.setdefault(layer, []).append(head)
    regs = []
    device = next(bundle.model.parameters()).device
    for layer, hs in by_layer.items():
        gate = torch.ones(1, structure.n_heads, device=device)
        gate[0, hs] = 0.0
        regs.append((structure.layers[layer].out, "pre", _gate_hook(gate, structure.n_heads, mode)))
    with _hooks(regs, bundle.lock):
        yield


def _check_head(bundle: ModelBundle, layer: int, head: int) -> None:
    if not (0 <= layer < bundle.n_layers and 0 <= head < bundle.n_heads):
        raise InputError(
            f"head ({layer}, {head}) is out of range: the model has {bundle.n_layers} layers x "
            f"{bundle.n_heads} heads"
        )


def _check_mode(mode: str) -> None:
    if mode not in ("zero", "mean"):
        raise InputError(f"ablation mode must be 'zero' or 'mean', not {mode!r}")


# ============================================================================ norm-based attention


@dataclass(frozen=True, eq=False)
class NormAttention:
    """Norm-based attention of one input (Kobayashi et al. 2020).

    Attributes:
        norms: float32 ``(layer, head, query, key)``: ``‖α_ij · f_h(x_j)‖``.
        weights: float32 ``(layer, head, query, key)``: the raw ``α`` of the same forward pass.
        value_norms: float32 ``(layer, head, key)``: ``‖f_h(x_j)‖``.
        tokens: the tokens on both axes.
        layers / heads: model indexes of axes 0 and 1.
    """

    norms: np.ndarray
    weights: np.ndarray
    value_norms: np.ndarray
    tokens: Tokens
    layers: tuple[int, ...]
    heads: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.norms.shape != self.weights.shape:
            raise InputError(f"norms {self.norms.shape} and weights {self.weights.shape} differ")

    def shares(self, *, exclude_special: bool = False) -> np.ndarray:
        """Norms renormalised so each row sums to 1 (comparable with the weights)."""
        if exclude_special:
            return exclude_special_tokens(self.norms, self.tokens.special)
        return renormalise(self.norms)

    def frame(self, *, exclude_special: bool = False, normalise: bool = False) -> pd.DataFrame:
        """Frame like :func:`inspector.frames.stack_frame` (``weight`` = raw α) plus ``norm``.

        ``exclude_special`` drops special tokens and renormalises ``weight`` (and ``norm`` when
        ``normalise``); ``normalise`` turns ``norm`` into a per-row share summing to 1.
        """
        w, nrm = self.weights, self.norms
        keep = np.ones(len(self.tokens), dtype=bool)
        if exclude_special:
            keep = ~self.tokens.special
            w = exclude_special_tokens(w, self.tokens.special)
            nrm = exclude_special_tokens(nrm, self.tokens.special, normalise=normalise)
        elif normalise:
            nrm = renormalise(nrm)
        positions = np.flatnonzero(keep)
        names = np.asarray(self.tokens.tokens, dtype=object)[positions]
        n_l, n_h, n, _ = w.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(np.asarray(self.layers, dtype=np.int32), n_h * n * n),
                "head": np.tile(np.repeat(np.asarray(self.heads, dtype=np.int32), n * n), n_l),
                "query_pos": np.tile(np.repeat(positions, n), n_l * n_h).astype(np.int32),
                "key_pos": np.tile(positions, n_l * n_h * n).astype(np.int32),
                "query_token": pd.Categorical(np.tile(np.repeat(names, n), n_l * n_h)),
                "key_token": pd.Categorical(np.tile(names, n_l * n_h * n)),
                "weight": w.reshape(-1).astype(np.float32),
                "norm": nrm.reshape(-1).astype(np.float32),
            }
        )


def attention_norms(
    bundle: ModelBundle,
    stack: AttentionStack,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
) -> NormAttention:
    """Norm-based attention ``‖α_ij · f_h(x_j)‖`` for one captured self-attention stack.

    ``f_h(x) = (x W_V + b_V) W_O^h`` is the vector head ``h`` adds to the residual stream per unit
    of attention (the output bias is shared by all tokens and left out, as in the paper). The
    model runs once more on exactly the stack's token ids, with a forward hook on each layer's
    value projection; ``α`` is the stack's own weights. Under grouped-query attention query head
    ``h`` reads value head ``h // (n_heads / n_kv_heads)``.

    Args:
        bundle: a loaded BERT-family, GPT-2 or LLaMA-style model.
        stack: its self-attention capture (``Inspection.stack``).
        layers, heads: keep only these model indexes (default: all the stack holds).

    Returns:
        A :class:`NormAttention`; ``norms`` has the shape of the (selected) weights.
    """
    import torch

    from .frames import select_stack

    structure = _structure(bundle, "norm-based attention")
    if stack.kind != "self" or stack.key is not stack.query:
        raise UnsupportedModelError(
            f"norm-based attention needs a self-attention stack, got {stack.kind!r}; it supports "
            f"{SUPPORTED_FAMILIES}"
        )
    stack = select_stack(stack, layers, heads)
    values: dict[int, Any] = {}

    def keep_values(index: int, piece: slice | None) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            values[index] = (output[..., piece] if piece is not None else output).detach()

        return hook

    regs = [
        (structure.layers[li].value, "post", keep_values(li, structure.layers[li].value_slice))
        for li in stack.layers
    ]
    inputs = inputs_from_tokens(bundle, stack.query)
    with _hooks(regs, bundle.lock), torch.inference_mode():
        _forward(bundle, inputs)
    group = structure.n_heads // structure.n_kv_heads
    kv_of_head = torch.arange(structure.n_heads) // group
    head_idx = list(stack.heads)
    vnorms = []
    with torch.inference_mode():
        for li in stack.layers:
            v = values[li][0].float()  # (seq, kv_heads * head_dim)
            v = v.view(v.shape[0], structure.n_kv_heads, structure.head_dim)[:, kv_of_head]
            w_o = structure.layers[li].out_weight.float().to(v.device)  # (heads, d, hidden)
            f = torch.einsum("shd,hde->hse", v, w_o)  # (heads, seq, hidden)
            vnorms.append(f.norm(dim=-1)[head_idx])  # (heads, seq)
    value_norms = torch.stack(vnorms).cpu().numpy()
    weights = stack.weights
    return NormAttention(
        (weights * value_norms[:, :, None, :]).astype(np.float32),
        weights,
        value_norms,
        stack.query,
        stack.layers,
        stack.heads,
    )


# ============================================================================ targets


@dataclass(frozen=True)
class Target:
    """What head importance measures: one number per input, computed from the model output.

    Build one with a class method or parse a string (CLI ``--target``):

    ========================  ===================================================================
    ``"auto"`` (default)      classifier: ``predicted``; masked LM: ``predicted`` at the first
                              ``[MASK]``; causal LM: ``predicted`` next token (log-prob);
                              bare encoder: ``embedding``
    ``"predicted"``           score of the class / token the unablated model predicts
    ``"token:Paris"``         :meth:`token` - score of a given token (masked or next position)
    ``"label:POSITIVE"``      :meth:`label` - score of a given class (name or index)
    ``"loss:1"``              :meth:`loss` - cross-entropy loss for a given label or token
    ``"embedding"``           bare encoders: mean-pooled last hidden state projected on the
                              unit vector of the unablated embedding (``"embedding:cosine"``:
                              cosine similarity to it, ablation only; ``"embedding:norm"``)
    a callable                :meth:`custom` - ``fn(output) -> Tensor`` of shape ``(batch,)``
    ========================  ===================================================================

    ``score`` is ``prob`` (classifier and masked-LM default), ``logprob`` (causal-LM default),
    ``logit`` or ``loss`` (negative log-probability). ``position`` picks the sequence position of
    a token-level head (default: first ``[MASK]`` for masked LMs, the last token for causal LMs).
    """

    kind: Literal["auto", "predicted", "token", "label", "embedding", "custom"] = "auto"
    value: str | int | None = None
    score: Score | None = None
    position: int | None = None
    embedding: Literal["projection", "cosine", "norm"] = "projection"
    fn: Callable[[Any], Any] | None = field(default=None, compare=False)

    @classmethod
    def auto(cls) -> Target:
        return cls("auto")

    @classmethod
    def predicted(cls, score: Score | None = None, *, position: int | None = None) -> Target:
        return cls("predicted", score=score, position=position)

    @classmethod
    def token(
        cls, token: str | int, score: Score | None = None, *, position: int | None = None
    ) -> Target:
        """A given token (string of one token, or an id) at the masked / next position."""
        return cls("token", token, score, position)

    @classmethod
    def label(cls, label: str | int, score: Score | None = None) -> Target:
        """A given class of a sequence classifier (a name from ``id2label`` or an index)."""
        return cls("label", label, score)

    @classmethod
    def loss(cls, label: str | int, *, position: int | None = None) -> Target:
        """Cross-entropy loss for ``label`` (a class for classifiers, a token for LMs)."""
        kind: Any = "token" if isinstance(label, str) and not label.isdigit() else "label"
        return cls(kind, label, "loss", position)

    @classmethod
    def sentence_embedding(
        cls, how: Literal["projection", "cosine", "norm"] = "projection"
    ) -> Target:
        return cls("embedding", embedding=how)

    @classmethod
    def custom(cls, fn: Callable[[Any], Any]) -> Target:
        """Any function of the model output returning one value per batch row, e.g.
        ``lambda out: out.logits[:, -1, 42]``."""
        if not callable(fn):
            raise InputError("Target.custom needs a callable fn(output) -> Tensor (batch,)")
        return cls("custom", fn=fn)

    @classmethod
    def parse(cls, spec: Target | str | Callable[[Any], Any] | None) -> Target:
        """Accept a :class:`Target`, ``None``, a callable or a string such as ``token:Paris``."""
        if spec is None:
            return cls()
        if isinstance(spec, Target):
            return spec
        if callable(spec):
            return cls.custom(spec)
        if not isinstance(spec, str):
            raise InputError(f"target must be a string, a Target or a callable, not {spec!r}")
        name, _, arg = spec.partition(":")
        name = name.strip().lower()
        if name in ("auto", "predicted") and not arg:
            return cls(name)  # type: ignore[arg-type]
        if name == "embedding":
            how = arg or "projection"
            if how not in ("projection", "cosine", "norm"):
                raise InputError(f"embedding:{how}: use projection, cosine or norm")
            return cls("embedding", embedding=how)  # type: ignore[arg-type]
        if name in ("token", "label", "loss") and arg:
            value: str | int = int(arg) if arg.lstrip("-").isdigit() else arg
            if name == "loss":
                return cls.loss(value)
            return cls(name, value)  # type: ignore[arg-type]
        raise InputError(
            f"unknown target {spec!r}; use auto, predicted, token:TOKEN, label:LABEL, "
            f"loss:LABEL, embedding[:cosine|:norm], or pass a callable"
        )


@dataclass(frozen=True)
class _Resolved:
    """A target bound to one model and input: ``fn(output) -> (batch,)`` plus a description."""

    fn: Callable[[Any], Any]
    description: str


def _token_id(bundle: ModelBundle, token: str | int) -> int:
    if isinstance(token, int):
        return token
    tok = bundle.tokenizer
    for candidate in (token, " " + token):
        ids = tok.encode(candidate, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    pieces = tok.convert_ids_to_tokens(tok.encode(token, add_special_tokens=False))
    raise InputError(
        f"target token {token!r} is not one token for this tokenizer (it splits into {pieces}); "
        f"give a single token or its id"
    )


def _scored(logits: Any, index: Any, score: str) -> Any:
    import torch

    if score == "logit":
        return logits.gather(-1, index[..., None])[..., 0]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, index[..., None])[..., 0]
    if score == "logprob":
        return logp
    if score == "loss":
        return -logp
    if score == "prob":
        return logp.exp()
    raise InputError(f"score must be prob, logprob, logit or loss, not {score!r}")


def _resolve(
    target: Target, bundle: ModelBundle, inputs: Mapping[str, Any], clean: Any
) -> _Resolved:
    """Bind ``target`` to this model and input, using the unablated output ``clean``."""
    import torch

    if target.kind == "custom":
        assert target.fn is not None
        return _Resolved(target.fn, getattr(target.fn, "__name__", "custom function"))
    logits = getattr(clean, "logits", None)
    if target.kind == "embedding" or (target.kind == "auto" and logits is None):
        return _embedding_target(target, bundle, inputs, clean)
    if logits is None:
        raise InputError(
            f"target {target.kind!r} needs logits, but {type(bundle.model).__name__} has no head "
            f"(it returns hidden states): use target='embedding' or a callable"
        )
    kind = "predicted" if target.kind == "auto" else target.kind
    if logits.ndim == 2:  # sequence classifier: (batch, classes)
        score = target.score or "prob"
        if kind == "token":
            raise InputError("this model is a sequence classifier: use label:LABEL, not token:")
        cls_id = _label_id(bundle, target.value) if kind == "label" else int(logits[0].argmax())
        names = getattr(bundle.model.config, "id2label", {}) or {}
        idx = torch.tensor([cls_id], device=logits.device)
        return _Resolved(
            lambda out: _scored(out.logits, idx.expand(out.logits.shape[0]), score),
            f"{score} of class {names.get(cls_id, cls_id)!r}",
        )
    # token-level head: (batch, seq, vocab)
    causal = bundle.architecture == "decoder"
    pos = target.position
    if pos is None:
        if causal:
            pos = -1
        else:
            mask_id = getattr(bundle.tokenizer, "mask_token_id", None)
            hits = (inputs["input_ids"][0] == (-1 if mask_id is None else mask_id)).nonzero()
            if hits.shape[0] == 0:
                raise InputError(
                    "a masked-LM target needs a [MASK] token in the text (or Target.token(..., "
                    "position=N)); add the tokenizer's mask token where the prediction is made"
                )
            pos = int(hits[0, 0])
    score = target.score or ("logprob" if causal else "prob")
    if kind == "label":
        kind = "token"
    if kind == "token":
        assert target.value is not None
        tok_id = _token_id(bundle, target.value)
    else:
        tok_id = int(logits[0, pos].argmax())
    name = bundle.tokenizer.convert_ids_to_tokens([tok_id])[0]
    idx = torch.tensor([tok_id], device=logits.device)
    where = "next token" if causal and pos == -1 else f"position {pos}"
    p = pos
    return _Resolved(
        lambda out: _scored(out.logits[:, p], idx.expand(out.logits.shape[0]), score),
        f"{score} of token {name!r} ({where})",
    )


def _label_id(bundle: ModelBundle, value: str | int | None) -> int:
    cfg = bundle.model.config
    n = int(getattr(cfg, "num_labels", 0) or 0)
    if isinstance(value, int):
        if not 0 <= value < n:
            raise InputError(f"label {value} is out of range: the classifier has {n} classes")
        return value
    label2id = dict(getattr(cfg, "label2id", {}) or {})
    label2id.update({v: k for k, v in (getattr(cfg, "id2label", {}) or {}).items()})
    if value in label2id:
        return int(label2id[value])
    raise InputError(f"unknown label {value!r}; the classifier's labels: {list(label2id)}")


def _embedding_target(
    target: Target, bundle: ModelBundle, inputs: Mapping[str, Any], clean: Any
) -> _Resolved:
    import torch

    def pooled(out: Any) -> Any:
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) else None
        if hidden is None:
            raise InputError(
                "target 'embedding' needs the last hidden state; this model output has none"
            )
        mask = inputs["attention_mask"][:1].to(hidden.dtype)[..., None]
        return (hidden * mask).sum(1) / mask.sum(1)

    ref = pooled(clean)[0].float().detach()
    unit = ref / ref.norm()
    how = target.embedding
    if how == "norm":
        return _Resolved(
            lambda out: pooled(out).float().norm(dim=-1), "norm of mean-pooled embedding"
        )
    if how == "cosine":
        return _Resolved(
            lambda out: torch.nn.functional.cosine_similarity(pooled(out).float(), ref[None]),
            "cosine similarity of the mean-pooled embedding to the unablated one",
        )
    return _Resolved(
        lambda out: pooled(out).float() @ unit,
        "mean-pooled embedding projected on the unablated embedding's direction",
    )


# ============================================================================ head importance


def _forward(bundle: ModelBundle, inputs: Mapping[str, Any]) -> Any:
    kw: dict[str, Any] = {"return_dict": True}
    if bundle.architecture == "decoder" and _accepts(bundle.model, "use_cache"):
        kw["use_cache"] = False
    with bundle.lock:
        return bundle.model(**inputs, **kw)


def _values(resolved: _Resolved, out: Any, rows: int) -> Any:
    import torch

    value = resolved.fn(out)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    value = value.reshape(-1) if value.ndim > 1 and value.shape[-1] == 1 else value
    if value.shape != (rows,):
        raise InputError(
            f"the target ({resolved.description}) returned shape {tuple(value.shape)} for a batch "
            f"of {rows}; it must return one value per batch row, e.g. out.logits[:, -1, 42]"
        )
    return value


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


def _shared_prefix_pass(
    bundle: ModelBundle,
    structure: _Structure,
    inputs: Mapping[str, Any],
    chunk: Sequence[tuple[int, int]],
    mode: str,
) -> Any:
    """One forward pass whose row ``r >= 1`` ablates head ``chunk[r - 1]``; row 0 stays clean.

    ``chunk`` is sorted by layer. The pass starts with a batch of 1 (the clean row). In each layer
    ``l`` of ``chunk``, the rows ablating a head of ``l`` are added as copies of the clean row:

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

    n_h = structure.n_heads
    device = inputs["input_ids"].device
    per_layer: dict[int, list[int]] = {}
    for li, hi in chunk:
        per_layer.setdefault(li, []).append(hi)
    regs: list[tuple[Any, str, Callable[..., Any]]] = []
    rows = 1
    for li in sorted(per_layer):
        heads, layer = per_layer[li], structure.layers[li]
        new = len(heads)
        gate = torch.ones(rows + new, n_h, device=device)
        gate[torch.arange(rows, rows + new), heads] = 0.0
        regs += [
            (layer.block, "pre_kw", _on_hidden(functools.partial(_append_row0, extra=new))),
            (layer.attention, "pre_kw", _on_hidden(operator.itemgetter(slice(None, rows)))),
            (layer.out, "pre", _gate_hook(gate, n_h, mode, grow=new)),
        ]
        rows += new
    with _hooks(regs, bundle.lock):
        return _forward(bundle, inputs)


def _ablation_deltas(
    bundle: ModelBundle,
    structure: _Structure,
    inputs: Mapping[str, Any],
    target: Target,
    mode: str,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``delta[l, h] = target(head l,h ablated) - target(clean)``, batched.

    Each forward pass holds a clean row and up to ``batch_size - 1`` ablated rows, which share the
    computation of the layers below their ablated layer (:func:`_shared_prefix_pass`). The target
    is resolved on the clean row of the first pass.
    """
    import torch

    n_l, n_h = len(structure.layers), structure.n_heads
    plan = [(li, hi) for li in range(n_l) for hi in range(n_h)]
    deltas = np.zeros((n_l, n_h))
    clean_value = 0.0
    resolved: _Resolved | None = None
    per_chunk = max(1, batch_size - 1)
    with torch.inference_mode():
        for start in range(0, len(plan), per_chunk):
            chunk = plan[start : start + per_chunk]
            out = _shared_prefix_pass(bundle, structure, inputs, chunk, mode)
            if resolved is None:  # row 0 is the unablated model
                resolved = _resolve(target, bundle, inputs, out)
            vals = _values(resolved, out, len(chunk) + 1).double().cpu().numpy()
            clean_value = float(vals[0])
            for r, (li, hi) in enumerate(chunk, start=1):
                deltas[li, hi] = vals[r] - vals[0]
    assert resolved is not None
    return deltas, np.full((n_l, n_h), clean_value), resolved.description


def _gate_gradients(
    bundle: ModelBundle,
    structure: _Structure,
    inputs: Mapping[str, Any],
    target: Target,
    mode: str,
) -> tuple[np.ndarray, np.ndarray, str]:
    """``∂target/∂ξ[l, h]`` at ξ = 1 (``torch.autograd.grad``: no ``.grad`` is written)."""
    import torch

    if target.kind == "embedding" and target.embedding == "cosine":
        raise InputError(
            "target embedding:cosine has zero gradient at the unablated model (cosine is at its "
            "maximum 1 there); use method='ablation' or target='embedding' (the projection)"
        )
    n_h = structure.n_heads
    device = inputs["input_ids"].device
    gates = [torch.ones(1, n_h, device=device, requires_grad=True) for _ in structure.layers]
    regs = [
        (layer.out, "pre", _gate_hook(gates[li], n_h, mode))
        for li, layer in enumerate(structure.layers)
    ]
    with _hooks(regs, bundle.lock), torch.enable_grad():
        out = _forward(bundle, inputs)  # at ξ = 1 this is the clean output: resolve on it
        resolved = _resolve(target, bundle, inputs, out)
        value = _values(resolved, out, 1)
        grads = torch.autograd.grad(value.sum(), gates, allow_unused=True)
    g = np.stack(
        [np.zeros(n_h) if gr is None else gr[0].detach().double().cpu().numpy() for gr in grads]
    )
    return g, np.full(g.shape, float(value.detach()[0])), resolved.description


def _normalise_layers(values: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return np.divide(values, norms, out=np.zeros_like(values), where=norms > 0)


def _importance_frame(
    delta: np.ndarray, importance: np.ndarray, clean: np.ndarray, attrs: dict[str, Any]
) -> pd.DataFrame:
    n_l, n_h = delta.shape
    frame = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(n_l, dtype=np.int32), n_h),
            "head": np.tile(np.arange(n_h, dtype=np.int32), n_l),
            "importance": importance.reshape(-1),
            "delta": delta.reshape(-1),
            "target_clean": clean.reshape(-1),
        }
    )
    frame.attrs["inspector"] = attrs
    return frame


def _raw_importance(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    target: Target | str | Callable[[Any], Any] | None,
    method: str,
    mode: str,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Signed first-order / exact deltas ``(layer, head)``, the clean target value, description."""
    structure = _structure(bundle, "head importance")
    _check_mode(mode)
    spec = Target.parse(target)
    if method == "ablation":
        if not isinstance(batch_size, int) or batch_size < 2:
            raise InputError(f"batch_size must be an integer >= 2, got {batch_size!r}")
        return _ablation_deltas(bundle, structure, inputs, spec, mode, batch_size)
    if method == "gradient":
        grads, clean, desc = _gate_gradients(bundle, structure, inputs, spec, mode)
        # ξ: 1 -> 0 changes the target by about -∂t/∂ξ: the first-order ablation delta.
        return -grads, clean, desc
    raise InputError(f"method must be 'ablation' or 'gradient', not {method!r}")


def head_importance(
    bundle: ModelBundle,
    inputs: Mapping[str, Any] | Tokens | str,
    *,
    target: Target | str | Callable[[Any], Any] | None = None,
    method: Method = "ablation",
    mode: AblationMode = "zero",
    batch_size: int = 73,
) -> pd.DataFrame:
    """How much each head matters for ``target`` on one input.

    Args:
        bundle: a loaded BERT-family, GPT-2 or LLaMA-style model.
        inputs: a text, the :class:`Tokens` of a capture, or ready model inputs (batch of 1).
        target: see :class:`Target` (default ``"auto"``).
        method: ``ablation`` - ablate one head at a time and record ``delta = target(ablated) -
            target(clean)``; all ``layer × head`` ablations run as rows of a few batches (plus one
            clean row per batch). ``gradient`` - ``∂target/∂ξ_h`` for a gate ``ξ`` on each
            head's output at ``ξ = 1`` (one forward and one backward pass); ``delta`` is then the
            first-order estimate ``-∂target/∂ξ_h``.
        mode: ablate by ``zero``-ing the head's output or replacing it by its ``mean`` over
            positions.
        batch_size: rows per forward pass for ``ablation``.

    Returns:
        Frame ``layer, head, importance, delta, target_clean`` with one row per head.
        ``importance`` is ``|delta|`` for ablation and ``|∂target/∂ξ|`` divided by its L2 norm
        over the layer's heads for gradient (Michel et al. 2019). ``attrs['inspector']`` names the
        target.
    """
    if isinstance(inputs, str):
        inputs = inputs_from_text(bundle, inputs)
    elif isinstance(inputs, Tokens):
        inputs = inputs_from_tokens(bundle, inputs)
    delta, clean, desc = _raw_importance(bundle, inputs, target, method, mode, batch_size)
    importance = np.abs(delta) if method == "ablation" else _normalise_layers(np.abs(delta))
    return _importance_frame(
        delta, importance, clean, {"target": desc, "method": method, "mode": mode, "n_texts": 1}
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
    progress: bool = False,
) -> pd.DataFrame:
    """Head importance averaged over many texts (one input at a time, no padding).

    Returns:
        Frame ``layer, head, importance, delta, std`` (mean over texts; ``std`` of the per-text
        importance; for ``gradient`` the mean ``|∂t/∂ξ|`` is normalised per layer after
        averaging), or with ``per_text=True`` one row per text and head with a ``text`` column.
    """
    if isinstance(texts, str) or not texts:
        raise InputError("texts must be a non-empty list of strings")
    items: Iterable[str] = texts
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(texts, desc="head importance", unit="text")
    deltas = []
    desc = ""
    for text in items:
        d, _, desc = _raw_importance(
            bundle, inputs_from_text(bundle, text), target, method, mode, batch_size
        )
        deltas.append(d)
    stack = np.stack(deltas)  # (text, layer, head)
    attrs = {"target": desc, "method": method, "mode": mode, "n_texts": len(texts)}
    n_t, n_l, n_h = stack.shape
    if per_text:
        imp = np.abs(stack)
        if method == "gradient":
            imp = np.stack([_normalise_layers(x) for x in imp])
        frame = pd.DataFrame(
            {
                "text": np.repeat(np.arange(n_t, dtype=np.int32), n_l * n_h),
                "layer": np.tile(np.repeat(np.arange(n_l, dtype=np.int32), n_h), n_t),
                "head": np.tile(np.arange(n_h, dtype=np.int32), n_t * n_l),
                "importance": imp.reshape(-1),
                "delta": stack.reshape(-1),
            }
        )
        frame.attrs["inspector"] = attrs
        return frame
    mean_abs = np.abs(stack).mean(axis=0)
    importance = _normalise_layers(mean_abs) if method == "gradient" else mean_abs
    frame = pd.DataFrame(
        {
            "layer": np.repeat(np.arange(n_l, dtype=np.int32), n_h),
            "head": np.tile(np.arange(n_h, dtype=np.int32), n_l),
            "importance": importance.reshape(-1),
            "delta": stack.mean(axis=0).reshape(-1),
            "std": np.abs(stack).std(axis=0).reshape(-1),
        }
    )
    frame.attrs["inspector"] = attrs
    return frame


def importance_matrix(frame: pd.DataFrame, value: str = "importance") -> pd.DataFrame:
    """Pivot a head-importance frame into a ``layer × head`` table (for heatmaps)."""
    return frame.pivot(index="layer", columns="head", values=value)


# ============================================================================ summary


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything the report's "what mattered" section shows for one input.

    Attributes:
        tokens: the input tokens.
        layer: the layer shown for raw / norm-based maps.
        raw: float ``(query, key)`` raw attention of ``layer``, mean over heads.
        norm: the same, norm-based (rows renormalised).
        rollout: ``(query, key)`` attention rollout over all layers.
        importance: head-importance frame (:func:`head_importance`).
        top_heads: ``[(layer, head), ...]`` most important first.
        top_maps: raw attention ``(query, key)`` of each top head.
        sinks: :func:`sink_heads` frame: sink-dominated heads passing on little.
        target: description of the target.
    """

    tokens: Tokens
    layer: int
    raw: np.ndarray
    norm: np.ndarray
    rollout: np.ndarray
    importance: pd.DataFrame
    top_heads: list[tuple[int, int]]
    top_maps: list[np.ndarray]
    sinks: pd.DataFrame
    target: str
    timings: dict[str, float] = field(default_factory=dict)


def explain(
    bundle: ModelBundle,
    capture: Capture,
    *,
    target: Target | str | Callable[[Any], Any] | None = None,
    method: Method = "ablation",
    layer: int | None = None,
    top: int = 4,
) -> Explanation:
    """Compute the "what mattered" summary of one self-attention capture."""
    if capture.is_encoder_decoder:
        raise UnsupportedModelError(
            f"explain does not support encoder-decoder models "
            f"({capture.metadata.get('model_type')}); it supports {SUPPORTED_FAMILIES}"
        )
    stack = capture.stacks["self"]
    if stack.layers != tuple(range(bundle.n_layers)) or stack.heads != tuple(range(bundle.n_heads)):
        raise InputError("explain needs a capture of every layer and head (no layers=/heads=)")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    norms = attention_norms(bundle, stack)
    timings["norms"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    roll = rollout(stack)
    timings["rollout"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    imp = head_importance(bundle, stack.query, target=target, method=method)
    timings["importance"] = time.perf_counter() - t0
    n_l = bundle.n_layers
    chosen = n_l // 2 if layer is None else (layer + n_l if layer < 0 else layer)
    if not 0 <= chosen < n_l:
        raise InputError(f"layer {layer} is out of range for {n_l} layers")
    ranked = imp.sort_values("importance", ascending=False).head(top)
    top_heads = [(int(li), int(hi)) for li, hi in zip(ranked["layer"], ranked["head"], strict=True)]
    return Explanation(
        tokens=stack.query,
        layer=chosen,
        raw=stack.weights[chosen].mean(axis=0),
        norm=renormalise(norms.norms[chosen]).mean(axis=0),
        rollout=roll,
        importance=imp,
        top_heads=top_heads,
        top_maps=[stack.weights[li, hi] for li, hi in top_heads],
        sinks=sink_heads(stack.weights, norms.norms, stack.query),
        target=str(imp.attrs["inspector"]["target"]),
        timings=timings,
    )


__all__ = [
    "FLOW_MAX_TOKENS",
    "Explanation",
    "NormAttention",
    "Target",
    "ablated_heads",
    "attention_flow",
    "attention_norms",
    "exclude_special_tokens",
    "explain",
    "head_importance",
    "head_importance_many",
    "importance_matrix",
    "inputs_from_text",
    "inputs_from_tokens",
    "matrix_frame",
    "renormalise",
    "residual_attention",
    "rollout",
    "sink_heads",
]
