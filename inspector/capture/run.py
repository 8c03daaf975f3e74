"""Run a loaded model on one input and keep its verified attention weights.

With :mod:`.batch` (many inputs) and :mod:`.generate` (generation) this is where models run: every
pass goes through :func:`inspector.capture.hooks.hooked` and every input through
:func:`inspector.capture.tokenize.encode`. The output, a :class:`~.types.Capture`, is a frozen,
validated object: everything to its right is a pure function of it. :func:`forward` is the plain
pass other layers (``explain``) ask for, with their own hooks.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import AttentionUnavailableError, CaptureError, InputError, ResourceError
from ..models.families import find_structure, forward_accepts
from ..models.loading import ModelBundle, tokenizer_fingerprint
from . import memory as _memory
from .hooks import AttentionRecorder, Hook, bundle_sites, hooked
from .tokenize import chat_text, check_text, decoder_tokens, encode, model_inputs
from .types import (
    ROW_SUM_TOLERANCE,
    AttentionStack,
    Capture,
    kv_head_map,
    select_indexes,
    storage_dtype,
)

T = TypeVar("T")


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: parsing package metadata costs ~10 ms, more than a short forward."""
    return tuple(_package_versions().items())


def _package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("attention-inspector", "transformers", "torch", "tokenizers"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def bundle_metadata(bundle: ModelBundle) -> dict[str, Any]:
    """The model facts recorded with every capture."""
    return {
        "model_name": bundle.name,
        "model_source": bundle.source,
        "model_type": bundle.model_type,
        "model_class": type(bundle.model).__name__,
        "architecture": bundle.architecture,
        "n_layers": bundle.n_layers,
        "n_heads": bundle.n_heads,
        "n_kv_heads": bundle.n_kv_heads,
        "kv_heads": list(kv_head_map(bundle.n_heads, bundle.n_kv_heads)),
        "n_parameters": bundle.n_parameters,
        "max_positions": bundle.max_positions,
        "attn_implementation": bundle.attn_implementation,
        "tokenizer_fingerprint": tokenizer_fingerprint(bundle),
        "dtype": bundle.dtype,
        "device": bundle.device,
        "versions": dict(_installed_versions()),
    }


def is_out_of_memory(exc: BaseException) -> bool:
    """True for numpy's and torch's ways of saying an allocation failed."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text
    )


def out_of_memory_hint(func: Callable[..., T]) -> Callable[..., T]:
    """Turn an allocation failure inside ``func`` into a :class:`ResourceError` with a fix."""
    return out_of_memory_advice(OOM_ADVICE)(func)


def out_of_memory_advice(advice: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """:func:`out_of_memory_hint` with the ``advice`` that fits the command (generation and
    batches have other options than a single capture)."""

    def decorate(func: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
                raise ResourceError(_oom_message(exc, advice)) from exc

        return wrapper

    return decorate


def _oom_message(exc: BaseException, advice: str) -> str:
    detail = str(exc).splitlines()[0][:200] if str(exc) else "no details"
    return f"ran out of memory while capturing attention; {advice} [{type(exc).__name__}: {detail}]"


#: What to keep less of, by default (commands with other options pass their own advice).
OOM_ADVICE = (
    "keep less with layers=[...] / heads=[...] (CLI --layers/--heads), store dtype='float16', "
    "or use a shorter input (truncation=True, max_length=...)"
)


# ------------------------------------------------------------------------ memory pre-flight


def capture_estimate(
    bundle: ModelBundle,
    n_tokens: int,
    *,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    dtype: str = "float32",
    new_tokens: int = 0,
    n_decoder: int = 1,
    frame: bool = False,
    max_memory: Any = None,
) -> _memory.MemoryEstimate:
    """What capturing ``n_tokens`` (plus ``new_tokens`` generated) allocates, against the budget.

    Kept attention (kept layers x heads x rows x keys x itemsize, every kind), the eager
    forward's transient (one layer's scores and softmax, activations, logits), the checks on the
    kept array, and with ``frame`` the long frame built from it.
    """
    n_l = len(select_indexes(layers, bundle.n_layers, "layer"))
    n_h = len(select_indexes(heads, bundle.n_heads, "head"))
    size = _memory.itemsize(dtype)
    if bundle.architecture == "encoder-decoder":
        d = n_decoder + new_tokens
        shapes = {"encoder": (n_tokens, n_tokens), "decoder": (d, d), "cross": (d, n_tokens)}
        prefill = {"encoder": (n_tokens, n_tokens), "decoder": (d, d), "cross": (d, n_tokens)}
    else:
        total = n_tokens + new_tokens
        shapes = {"self": (total, total)}
        prefill = {"self": (n_tokens, n_tokens)}
    kept = sum(_memory.attention_bytes(n_l, n_h, r, k, size) for r, k in shapes.values())
    has_head = bundle.architecture != "decoder" and _has_output_head(bundle)
    logits_rows = sum(r for r, _ in prefill.values()) if has_head else 1
    transient = _memory.forward_bytes(
        _memory.model_dims(bundle.model),
        n_heads=bundle.n_heads,
        shapes=prefill,
        model_itemsize=_memory.itemsize(bundle.dtype),
        eager=True,
        logits_rows=logits_rows,
        position_bias=bundle.model_type in ("t5", "mt5", "umt5", "longt5"),
    )
    checks = max(4 * r * k for r, k in shapes.values())
    parts = {"kept attention": kept, "forward pass": transient, "checks": checks}
    if frame:
        rows = kept // size
        parts["frame"] = rows * _memory.FRAME_BYTES_PER_ROW
    n = n_tokens + new_tokens
    what = f"{'frame() of ' if frame else ''}{n:,} tokens x {n_l} layers x {n_h} heads"
    return _memory.estimate(what, parts, max_memory)


def _has_output_head(bundle: ModelBundle) -> bool:
    getter = getattr(bundle.model, "get_output_embeddings", None)
    try:
        return callable(getter) and getter() is not None
    except Exception:  # a model without the method's backing module
        return False


# --------------------------------------------------------------------------------- running


def forward(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    *,
    hooks: Iterable[Hook] = (),
    grad: bool = False,
    **call_kw: Any,
) -> Any:
    """One forward pass of ``bundle``'s model with ``hooks`` registered (see :func:`hooked`).

    Decoders run without a key/value cache. ``grad=True`` records the autograd graph (for
    gradients of a target); otherwise the pass runs under ``torch.inference_mode()``.
    """
    import torch

    kw: dict[str, Any] = {"return_dict": True, **call_kw}
    if bundle.architecture == "decoder" and forward_accepts(bundle.model, "use_cache"):
        kw.setdefault("use_cache", False)
    mode = torch.enable_grad() if grad else torch.inference_mode()
    with hooked(bundle, hooks), mode:
        return bundle.model(**inputs, **kw)


def record(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, int]],
    layers: tuple[int, ...],
    heads: tuple[int, ...],
    *,
    batch: int = 1,
    dtype: str = "float32",
    call_kw: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """One forward pass; the kept ``(batch, layer, head, query, key)`` arrays by kind.

    Hooks on the attention modules copy each kept layer out while the forward runs (only one
    layer's full weights are alive at a time). Models with no hookable attention modules (remote
    code, say) fall back to ``output_attentions=True``.
    """
    import torch

    call_kw = dict(call_kw or {})
    if bundle.architecture == "decoder" and forward_accepts(bundle.model, "logits_to_keep"):
        call_kw.setdefault("logits_to_keep", 1)
    sites = bundle_sites(bundle)
    if sites and all(len(sites.get(kind, ())) == bundle.n_layers for kind in shapes):
        recorder = AttentionRecorder(
            sites, layers, heads, shapes, batch=batch, dtype=dtype, model_name=bundle.name
        )
        forward(bundle, inputs, hooks=recorder.hooks(), **call_kw)
        return {kind: recorder.batch_weights(kind, *shape) for kind, shape in shapes.items()}
    with hooked(bundle), torch.inference_mode():
        out = bundle.model(**inputs, output_attentions=True, return_dict=True, **call_kw)
    names = {"self": "attentions", "encoder": "encoder_attentions"}
    names.update(decoder="decoder_attentions", cross="cross_attentions")
    return {
        kind: _stack_attentions(
            getattr(out, names[kind], None), bundle, kind, layers, heads
        ).astype(dtype, copy=False)
        for kind in shapes
    }


def check_layer_attentions(attentions: Any, bundle: ModelBundle, kind: str) -> None:
    """Raise unless ``attentions`` holds one weight tensor per layer of the model."""
    if attentions is None or len(attentions) == 0 or any(a is None for a in attentions):
        raise AttentionUnavailableError(
            f"{bundle.name}: the model returned no {kind} attention weights (attention "
            f"implementation {bundle.attn_implementation!r}); load it with "
            f"attn_implementation='eager' — inspector.load does this for you"
        )
    if len(attentions) != bundle.n_layers:
        raise CaptureError(
            f"{bundle.name}: got {len(attentions)} {kind} attention layers, the config says "
            f"{bundle.n_layers}; encoder and decoder stacks of different depth are not supported"
        )


def _stack_attentions(
    attentions: Any, bundle: ModelBundle, kind: str, layers: tuple[int, ...], heads: tuple[int, ...]
) -> np.ndarray:
    """``(batch, layer, head, query, key)`` of the kept layers and heads."""
    import torch

    check_layer_attentions(attentions, bundle, kind)
    stacked = torch.stack([attentions[i] for i in layers], dim=1)
    if len(heads) != stacked.shape[2]:
        stacked = stacked[:, :, list(heads)]
    return stacked.float().cpu().numpy()


@out_of_memory_hint
def capture(
    bundle: ModelBundle,
    text: str | None = None,
    text_pair: str | None = None,
    *,
    target: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    add_generation_prompt: bool = False,
    dtype: Any = None,
    max_memory: Any = None,
) -> Capture:
    """Run ``bundle``'s model on one input and return its verified attention.

    Only the kept layers and heads are copied out of the model while it runs (forward hooks on
    its attention modules), so memory follows what is kept: 3 of SmolLM2's 30 layers hold a
    tenth of the full capture.

    Args:
        bundle: a loaded model.
        text: the input text.
        text_pair: an optional second text (sentence pair, e.g. for NLI or QA).
        target: decoder text for encoder-decoder models (default: the decoder start token only).
        truncation: cut inputs longer than the model's limit instead of raising.
        max_length: a lower limit than the model's own.
        layers, heads: keep only these layer / head indexes.
        messages: instead of ``text``, a chat (``[{"role": "user", "content": ...}]``) rendered
            with the tokenizer's chat template (its special tokens come from the template).
        add_generation_prompt: with ``messages``, end with the assistant's turn header.
        dtype: storage of the weights: ``"float32"`` (default) or ``"float16"`` (half the memory;
            rows then sum to 1 within 1e-3).
        max_memory: the memory budget (``"4GB"``, bytes; default: what is available now, cgroup
            limits included). The capture is refused with :class:`ResourceError` before the
            model runs when its estimate (:func:`capture_estimate`) does not fit.

    Returns:
        A :class:`Capture` with ``weights`` of shape ``(layer, head, query, key)``.
    """
    add_special = True
    if messages is not None:
        if text is not None or text_pair is not None:
            raise InputError("give either text (and text_pair) or messages=, not both")
        text = chat_text(bundle, messages, add_generation_prompt=add_generation_prompt)
        add_special = False
    elif text is None:
        raise InputError("give the text to inspect, or a chat as messages=[...]")
    text = check_text(text, "text")
    if target is not None:
        target = check_text(target, "target")
        if bundle.architecture != "encoder-decoder":
            raise InputError(
                "target= is for encoder-decoder models (T5, BART); use text_pair= for a second text"
            )
    layer_idx = select_indexes(layers, bundle.n_layers, "layer")
    head_idx = select_indexes(heads, bundle.n_heads, "head")
    store = storage_dtype(dtype)
    encoded = encode(
        bundle,
        text,
        text_pair,
        truncation=truncation,
        max_length=max_length,
        add_special_tokens=add_special,
    )
    tokens = encoded.tokens
    capture_estimate(
        bundle,
        len(tokens),
        layers=layer_idx,
        heads=head_idx,
        dtype=store,
        n_decoder=len(decoder_tokens(bundle, target)) if target is not None else 1,
        max_memory=max_memory,
    ).check(_memory.ADVICE["inspect"])
    inputs = model_inputs(bundle, [tokens])
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
    meta = bundle_metadata(bundle)
    meta.update(
        text=text,
        text_pair=text_pair,
        target=target,
        truncated=encoded.truncated,
        storage_dtype=store,
    )
    if messages is not None:
        meta["messages"] = [dict(m) for m in messages]

    n = len(tokens)
    if bundle.architecture == "encoder-decoder":
        dec_tokens = decoder_tokens(bundle, target)
        inputs["decoder_input_ids"] = model_inputs(bundle, [dec_tokens])["input_ids"]
        d = len(dec_tokens)
        shapes = {"encoder": (n, n), "decoder": (d, d), "cross": (d, n)}
        arrays = record(bundle, inputs, shapes, layer_idx, head_idx, dtype=store)
        spec = {
            "encoder": (tokens, tokens, False),
            "decoder": (dec_tokens, dec_tokens, True),
            "cross": (dec_tokens, tokens, False),
        }
        stacks = {
            kind: AttentionStack(
                arrays[kind][0], q, k, kind, causal, layer_idx, head_idx, tolerance
            )
            for kind, (q, k, causal) in spec.items()
        }
        return Capture(stacks, meta)

    arrays = record(bundle, inputs, {"self": (n, n)}, layer_idx, head_idx, dtype=store)
    stack = AttentionStack(
        arrays["self"][0],
        tokens,
        tokens,
        "self",
        bundle.architecture == "decoder",
        layer_idx,
        head_idx,
        tolerance,
    )
    return Capture({"self": stack}, meta)


# ------------------------------------------------------------------ query and key vectors


#: Largest |softmax(q k / sqrt(d)) - captured weight| accepted as "the same attention".
RECOMPUTE_TOLERANCE = 2e-3


def query_key_vectors(bundle: ModelBundle, capture: Capture) -> tuple[np.ndarray, np.ndarray]:
    """Query and key vectors behind a self-attention capture (for bertviz's neuron view).

    The model runs once more on the capture's own tokens with hooks on each layer's query and
    key projections (found through :mod:`inspector.models.families`); the vectors must
    reproduce the captured weights (``softmax(q·k/√d)`` within :data:`RECOMPUTE_TOLERANCE`),
    which rules out models that transform them afterwards (rotary position embeddings).

    Returns:
        ``(queries, keys)``, float32 ``(layer, head, position, head_dim)`` of the kept layers
        and heads.
    """
    import torch

    from ..errors import UnsupportedModelError

    if "self" not in capture.stacks:
        raise UnsupportedModelError(
            f"{bundle.name} ({bundle.model_type}) is an encoder-decoder model; the neuron view "
            f"needs a self-attention model (use head_view() for encoder-decoder attention)"
        )
    stack = capture.stacks["self"]
    structure = find_structure(
        bundle.model,
        model_type=bundle.model_type,
        n_layers=bundle.n_layers,
        n_heads=bundle.n_heads,
        n_kv_heads=bundle.n_kv_heads,
        feature="the neuron view",
    )
    if any(layer.query is None or layer.key is None for layer in structure.layers):
        raise UnsupportedModelError(
            f"{bundle.name}: the neuron view needs the query and key projections, which the "
            f"{structure.family} family table entry does not name; use head_view() instead"
        )
    found: dict[tuple[int, str], Any] = {}

    def keep(li: int, part: str, piece: slice | None) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            found[(li, part)] = (output[..., piece] if piece is not None else output).detach()

        return hook

    hooks = []
    for li in stack.layers:
        layer = structure.layers[li]
        hooks.append(Hook(layer.query, keep(li, "q", layer.query_slice)))
        if layer.key is layer.query and layer.key_slice == layer.query_slice:
            continue
        hooks.append(Hook(layer.key, keep(li, "k", layer.key_slice)))
    forward(bundle, model_inputs(bundle, [stack.query]), hooks=hooks)
    kv = torch.tensor(kv_head_map(bundle.n_heads, bundle.n_kv_heads))

    def split(t: Any, heads: int) -> Any:  # (1, seq, heads*dim) -> (heads, seq, dim)
        return t[0].reshape(t.shape[1], heads, -1).transpose(0, 1).float().cpu()

    queries, keys = [], []
    for li in stack.layers:
        q = split(found[(li, "q")], bundle.n_heads)
        k = split(found.get((li, "k"), found[(li, "q")]), bundle.n_kv_heads)[kv]
        queries.append(q[list(stack.heads)].numpy())
        keys.append(k[list(stack.heads)].numpy())
    q_arr, k_arr = np.stack(queries), np.stack(keys)
    _check_vectors(q_arr, k_arr, stack.weights, causal=stack.causal, name=bundle.name)
    return q_arr.astype(np.float32), k_arr.astype(np.float32)


def _check_vectors(
    queries: np.ndarray, keys: np.ndarray, weights: np.ndarray, *, causal: bool, name: str
) -> None:
    scores = queries @ keys.swapaxes(-1, -2) / np.sqrt(queries.shape[-1])
    if causal:
        n = scores.shape[-1]
        scores = np.where(np.triu(np.ones((n, n), dtype=bool), 1), -np.inf, scores)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    err = float(np.abs(probs - weights).max())
    if err > RECOMPUTE_TOLERANCE:
        from ..errors import UnsupportedModelError

        raise UnsupportedModelError(
            f"{name}: the query/key vectors do not reproduce the captured attention (max "
            f"difference {err:.3g}; rotary position embeddings or scaled scores change them "
            f"after the projection), so the neuron view cannot show this model faithfully; use "
            f"head_view() instead"
        )


__all__ = [
    "OOM_ADVICE",
    "bundle_metadata",
    "capture",
    "capture_estimate",
    "check_layer_attentions",
    "forward",
    "is_out_of_memory",
    "out_of_memory_advice",
    "out_of_memory_hint",
    "query_key_vectors",
    "record",
]
