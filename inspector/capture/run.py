"""Run a loaded model on one input and keep its verified attention weights.

With :mod:`.batch` (many inputs) and :mod:`.generate` (generation) this is where models run: every
pass goes through :func:`inspector.capture.hooks.hooked` and every input through
:func:`inspector.capture.tokenize.encode`. The output, a :class:`~.types.Capture`, is a frozen,
validated object: everything to its right is a pure function of it. :func:`forward` is the plain
pass other layers (``explain``) ask for, with their own hooks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import AttentionUnavailableError, CaptureError, ResourceError
from ..models.families import forward_accepts
from ..models.loading import ModelBundle
from ..models.structure import Structure, find_structure
from . import memory as _memory
from .blockwise import BlockwiseAttention, records_by_blocks, rows_per_block
from .hooks import (
    AttentionRecorder,
    AttentionSite,
    Hook,
    attention_function,
    attention_sites,
    hooked,
)
from .inputs import bundle_metadata, prepare_input
from .memory import MemoryLimit
from .options import ALL, PLAIN, InputOptions, Selection
from .sites import by_structure, call_order, stack_kinds
from .tokenize import decoder_tokens, model_inputs, probe_inputs
from .types import (
    ROW_SUM_TOLERANCE,
    AttentionStack,
    Capture,
    Tokens,
    storage_dtype,
)

T = TypeVar("T")


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


# ------------------------------------------------------------------------ attention modules


def bundle_sites(bundle: ModelBundle) -> dict[str, list[AttentionSite]]:
    """The attention module of every layer of every stack, found once and kept with the bundle.

    The modules the model's own ``_can_record_outputs`` names (exactly those transformers hooks
    for ``output_attentions=True``); when they are fewer than the layers (ALBERT's layers share
    one module) their order comes from one plain forward pass, each call a layer. Classes that
    name none are searched by structure (:mod:`.sites`). Empty when neither finds them.
    """
    sites = bundle.extra.get("attention_sites")
    if sites is None:
        sites = attention_sites(bundle.model)
        if any(len(sites.get(k, ())) != bundle.n_layers for k in stack_kinds(bundle)):
            sites = _probe_sites(bundle, sites) or sites
        bundle.extra["attention_sites"] = sites
    return dict(sites)


def _probe_sites(
    bundle: ModelBundle, named: Mapping[str, Sequence[AttentionSite]]
) -> dict[str, list[AttentionSite]]:
    """One forward pass on a short input that finds (or orders) the attention modules."""
    if named:  # no output_attentions: transformers would leave its capturing hooks installed
        hooks, ordered = call_order(named)
        forward(bundle, probe_inputs(bundle), hooks=hooks)
        return ordered()
    hooks, found = by_structure(bundle.model)
    try:
        out = forward(bundle, probe_inputs(bundle), hooks=hooks, output_attentions=True)
    except Exception:  # a model that cannot return attention this way: nothing found
        return {}
    return found(out, stack_kinds(bundle))


def stack_structure(bundle: ModelBundle, kind: str, feature: str) -> Structure:
    """The projections of every layer of one attention stack (found once, kept with the bundle).

    Raises:
        UnsupportedModelError: no attention modules, or no output projection, were found.
    """
    from ..errors import UnsupportedModelError

    cache = bundle.extra.setdefault("structures", {})
    if kind not in cache:
        sites = bundle_sites(bundle).get(kind)
        if not sites or len(sites) != bundle.n_layers:
            raise UnsupportedModelError(
                f"{feature} does not support {type(bundle.model).__name__} ({bundle.model_type}): "
                f"its {kind} attention modules were not found (neither named by the class's "
                f"_can_record_outputs nor returning the model's attention weights)"
            )
        cache[kind] = find_structure(
            bundle.model,
            model_type=bundle.model_type,
            sites=[(s.name, s.module) for s in sites],
            n_heads=bundle.n_heads,
            n_kv_heads=bundle.n_kv_heads,
            feature=feature,
            kind=kind,
        )
    found: Structure = cache[kind]
    return found


def _needs_output_attentions(sites: Mapping[str, Sequence[AttentionSite]], kinds: Any) -> bool:
    return any(s.needs_output_attentions for k in kinds for s in sites.get(k, ()))


# ------------------------------------------------------------------------ memory pre-flight


def capture_estimate(
    bundle: ModelBundle,
    n_tokens: int,
    *,
    select: Selection = ALL,
    dtype: str = "float32",
    new_tokens: int = 0,
    n_decoder: int = 1,
    frame: bool = False,
    max_memory: MemoryLimit | None = None,
) -> _memory.MemoryEstimate:
    """What capturing ``n_tokens`` (plus ``new_tokens`` generated) allocates, against the budget.

    Kept attention (kept layers x heads x rows x keys x itemsize, every kind), the eager
    forward's transient (one layer's scores and softmax, activations, logits), the checks on the
    kept array, and with ``frame`` the long frame built from it.
    """
    layer_idx, head_idx = stack_indexes(bundle, stack_kinds(bundle), select)
    n_l = max(len(v) for v in layer_idx.values())  # the most of any stack's
    n_h = max(len(v) for v in head_idx.values())
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
    by_blocks = records_by_blocks(bundle, bundle_sites(bundle), prefill, 1)
    has_head = bundle.architecture != "decoder" and _has_output_head(bundle)
    logits_rows = sum(r for r, _ in prefill.values()) if has_head else 1
    transient = _memory.forward_bytes(
        _memory.model_dims(bundle.model),
        n_heads=n_h if by_blocks else bundle.n_heads,  # blocks: only the kept heads' scores
        shapes=prefill,
        model_itemsize=_memory.itemsize(bundle.dtype),
        eager=not by_blocks,
        logits_rows=logits_rows,
        block_rows=rows_per_block(n_h, n_tokens),
        position_bias=bundle.model_type in ("t5", "mt5", "umt5", "longt5"),
    )
    checks = max(4 * r * k for r, k in shapes.values())
    parts = {
        "kept attention": kept,
        "forward pass": transient,
        "checks": checks,
        "runtime": _memory.RUNTIME_BYTES,
    }
    if new_tokens:
        dims = _memory.model_dims(bundle.model)
        parts["key/value cache"] = _memory.cache_bytes(
            bundle.n_layers,
            bundle.n_kv_heads,
            max(r for r, _ in shapes.values()),
            dims["hidden"] // max(1, bundle.n_heads),
            _memory.itemsize(bundle.dtype),
        )
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


def stack_indexes(
    bundle: ModelBundle, kinds: Sequence[str], select: Selection = ALL
) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """The validated layer and head indexes to keep, by attention stack.

    Every stack keeps the same ``select``ion, validated against its own depth and head count
    (an encoder-decoder's decoder may be shallower than its encoder, or have other heads: an
    index it lacks is an :class:`InputError` naming that stack).
    """
    shapes = {kind: bundle.stack_shape(kind) for kind in kinds}
    same = len(set(shapes.values())) == 1
    out_l: dict[str, tuple[int, ...]] = {}
    out_h: dict[str, tuple[int, ...]] = {}
    for kind, (n_layers, n_heads) in shapes.items():
        out_l[kind], out_h[kind] = select.resolve(n_layers, n_heads, "" if same else f"{kind} ")
    return out_l, out_h


def record(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, int]],
    layers: tuple[int, ...] | Mapping[str, tuple[int, ...]],
    heads: tuple[int, ...] | Mapping[str, tuple[int, ...]],
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
    if sites and all(len(sites.get(k, ())) == bundle.stack_shape(k)[0] for k in shapes):
        recorder = AttentionRecorder(
            sites, layers, heads, shapes, batch=batch, dtype=dtype, model_name=bundle.name
        )
        if records_by_blocks(bundle, sites, shapes, batch):  # sdpa, kept weights rebuilt
            lay, hd = recorder.layers["self"], recorder.heads["self"]
            rows = rows_per_block(len(hd), shapes["self"][1])
            fn = BlockwiseAttention(
                sites, lay, hd, recorder.write_block, block_rows=rows, model_name=bundle.name
            )
            with attention_function(bundle, fn):
                forward(bundle, inputs, **call_kw)
        else:
            if _needs_output_attentions(sites, shapes):
                call_kw["output_attentions"] = True
            forward(bundle, inputs, hooks=recorder.hooks(), **call_kw)
        return {kind: recorder.batch_weights(kind, *shape) for kind, shape in shapes.items()}
    with hooked(bundle), torch.inference_mode():
        out = bundle.model(**inputs, output_attentions=True, return_dict=True, **call_kw)
    names = {"self": "attentions", "encoder": "encoder_attentions"}
    names.update(decoder="decoder_attentions", cross="cross_attentions")
    return {
        kind: _stack_attentions(
            getattr(out, names[kind], None),
            bundle,
            kind,
            layers[kind] if isinstance(layers, Mapping) else layers,
            heads[kind] if isinstance(heads, Mapping) else heads,
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
    n_layers, n_heads = bundle.stack_shape(kind)
    if len(attentions) != n_layers:
        raise CaptureError(
            f"{bundle.name}: got {len(attentions)} {kind} attention layers, its config says "
            f"{n_layers}; the config does not describe this model (check config.json)"
        )
    if attentions[0].shape[1] != n_heads:
        raise CaptureError(
            f"{bundle.name}: {kind} attention has {attentions[0].shape[1]} heads, its config "
            f"says {n_heads}; the config does not describe this model (check config.json)"
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
    options: InputOptions = PLAIN,
    *,
    select: Selection = ALL,
    dtype: str | None = None,
    token_ids: Sequence[int] | None = None,
    max_memory: MemoryLimit | None = None,
) -> Capture:
    """Run ``bundle``'s model on one input and return its verified attention.

    Only the kept layers and heads are copied out of the model while it runs (forward hooks on
    its attention modules), so memory follows what is kept: 3 of SmolLM2's 30 layers hold a
    tenth of the full capture.

    Args:
        bundle: a loaded model.
        text: the input text.
        options: how the input is built (pair text, decoder ``target``, truncation, or a chat
            as ``messages`` rendered with the tokenizer's chat template); see
            :class:`~.options.InputOptions` and :func:`~.inputs.prepare_input`.
        select: keep only these layer / head indexes (:class:`~.options.Selection`).
        dtype: storage of the weights: ``"float32"`` (default) or ``"float16"`` (half the memory;
            rows then sum to 1 within 1e-3).
        token_ids: instead of ``text``, exactly these token ids, between the special tokens the
            tokenizer adds (:func:`~inspector.capture.tokenize.encode_ids`).
        max_memory: the memory budget (default: what is available now, cgroup limits
            included). The capture is refused with :class:`ResourceError` before the model
            runs when its estimate (:func:`capture_estimate`) does not fit.

    Returns:
        A :class:`Capture` with ``weights`` of shape ``(layer, head, query, key)``.
    """
    prepared = prepare_input(bundle, text, options, token_ids)
    layer_idx, head_idx = stack_indexes(bundle, stack_kinds(bundle), select)
    store = storage_dtype(dtype)
    tokens, target, meta = prepared.tokens, prepared.target, prepared.metadata
    meta["storage_dtype"] = store
    with _memory.preflight(
        bundle.lock,
        lambda: capture_estimate(
            bundle,
            len(tokens),
            select=select,
            dtype=store,
            n_decoder=len(decoder_tokens(bundle, target)) if target is not None else 1,
            max_memory=max_memory,
        ),
        _memory.ADVICE["inspect"],
    ):
        return _record_capture(bundle, tokens, target, layer_idx, head_idx, store, meta)


def _record_capture(
    bundle: ModelBundle,
    tokens: Tokens,
    target: str | None,
    layer_idx: Mapping[str, tuple[int, ...]],
    head_idx: Mapping[str, tuple[int, ...]],
    store: str,
    meta: dict[str, Any],
) -> Capture:
    """The forward pass of :func:`capture` and its verified stacks (the pre-flight passed)."""
    inputs = model_inputs(bundle, [tokens])
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
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
                arrays[kind][0], q, k, kind, causal, layer_idx[kind], head_idx[kind], tolerance
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
        layer_idx["self"],
        head_idx["self"],
        tolerance,
    )
    return Capture({"self": stack}, meta)


__all__ = [
    "OOM_ADVICE",
    "bundle_metadata",
    "bundle_sites",
    "capture",
    "capture_estimate",
    "check_layer_attentions",
    "forward",
    "is_out_of_memory",
    "out_of_memory_advice",
    "out_of_memory_hint",
    "record",
    "stack_indexes",
    "stack_kinds",
    "stack_structure",
]
