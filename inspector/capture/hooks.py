"""The one place that registers hooks on a model, and the attention recorder built on it.

Every pass that runs a model (inspect, batches, generation, ablation, gradients, norms, the
neuron view) enters :func:`hooked`: it takes the model's lock (one pass at a time per model, so
threads get the results of sequential runs), registers the pass's :class:`Hook` objects, and
always removes them, also when the forward raises or is interrupted. No other module calls
``register_forward_hook``.

Attention is read with forward hooks on the model's own attention modules (the ones its
``_can_record_outputs`` names, exactly those transformers itself hooks for output_attentions=True,
or those found by structure: :func:`inspector.capture.run.bundle_sites`) instead of
output_attentions=True, which keeps every layer's full matrix alive until the end of the forward.
A module shared by several layers (ALBERT) gets one hook that counts its calls (``Hook.call``).
:class:`AttentionRecorder` copies only the kept heads of a kept layer into a
preallocated ``(batch, layer, head, query, key)`` buffer, so memory follows what is kept; the
same recorder serves cached generation: each call of a layer appends its query rows after the
ones it has already written. :func:`attention_hooks` hands each layer's weights to any other
consumer instead.

:func:`attention_function` is the other way in: it registers a function with transformers'
``AttentionInterface`` (and ``sdpa``'s mask builder under the same name), points the model's
configs at it for the block, and always restores them and unregisters it; the bounded scans use
it to see every layer's post-rotary queries and keys without eager's ``T x T`` weights.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import AttentionUnavailableError, CaptureError
from ..models.loading import ModelBundle

When = Literal["post", "pre", "pre_kw"]


@dataclass(frozen=True)
class Hook:
    """One hook for :func:`hooked`.

    Attributes:
        module: the ``torch.nn.Module`` to hook.
        fn: ``post``: ``fn(module, args, output)`` (may return a new output); ``pre``:
            ``fn(module, args)`` (may return new args); ``pre_kw``: ``fn(module, args, kwargs)``
            returning ``(args, kwargs)``.
        when: ``"post"`` (forward hook), ``"pre"`` or ``"pre_kw"`` (forward pre-hook).
    """

    module: Any
    fn: Callable[..., Any]
    when: When = "post"
    call: tuple[int, int] | None = None


def _chain(when: str, fns: Sequence[Callable[..., Any]]) -> Callable[..., Any]:
    """One hook running ``fns`` in order, each seeing what the previous one returned."""

    def post(module: Any, args: Any, output: Any) -> Any:
        for fn in fns:
            new = fn(module, args, output)
            output = output if new is None else new
        return output

    def pre(module: Any, args: Any) -> Any:
        for fn in fns:
            new = fn(module, args)
            args = args if new is None else new
        return args

    def pre_kw(module: Any, args: Any, kwargs: Any) -> Any:
        for fn in fns:
            new = fn(module, args, kwargs)
            if new is not None:
                args, kwargs = new
        return args, kwargs

    chained: dict[str, Callable[..., Any]] = {"post": post, "pre": pre, "pre_kw": pre_kw}
    return chained[when]


def _per_call(when: str, n: int, by_call: Mapping[int, list[Callable[..., Any]]]) -> Hook:
    """A hook that counts the calls of a shared module and runs the hooks of the ``i``-th call
    of every ``n`` (one forward pass of a model whose ``n`` layers share the module)."""
    chained = {i: _chain(when, fns) for i, fns in by_call.items()}
    count = [0]

    def hook(*args: Any) -> Any:
        i = count[0] % n
        count[0] += 1
        fn = chained.get(i)
        return fn(*args) if fn is not None else None

    return Hook(None, hook, when)  # type: ignore[arg-type]


def _grouped(hooks: Iterable[Hook]) -> list[Hook]:
    """``hooks`` with the per-call hooks of each shared module merged into one counting hook."""
    out: list[Hook] = []
    groups: dict[tuple[int, str, int], tuple[Any, dict[int, list[Callable[..., Any]]]]] = {}
    for hook in hooks:
        if hook.call is None or hook.call[1] <= 1:
            out.append(hook)
            continue
        i, n = hook.call
        key = (id(hook.module), hook.when, n)
        if key not in groups:
            groups[key] = (hook.module, {})
            out.append(Hook(hook.module, hook.fn, hook.when, (-1, n)))  # placeholder
        groups[key][1].setdefault(i, []).append(hook.fn)
    merged = []
    for hook in out:
        if hook.call is not None and hook.call[0] == -1:
            module, by_call = groups[(id(hook.module), hook.when, hook.call[1])]
            counting = _per_call(hook.when, hook.call[1], by_call)
            merged.append(Hook(module, counting.fn, hook.when))
        else:
            merged.append(hook)
    return merged


@contextlib.contextmanager
def hooked(bundle: ModelBundle, hooks: Iterable[Hook] = ()) -> Iterator[None]:
    """Hold ``bundle``'s lock and keep ``hooks`` registered inside the block.

    The hooks are removed on exit, in reverse order, whatever happens inside (an exception, a
    ``KeyboardInterrupt``); a module hooked twice (modules shared across layers) gets both
    hooks and loses both. The lock is re-entrant, so a pass may nest another ``hooked`` block.

    A hook with ``call=(i, n)`` runs only on the ``i``-th of every ``n`` calls of its module (a
    module shared by ``n`` layers, as in ALBERT): the hooks of one shared module are merged into
    one hook that counts its calls.

    Example:
        >>> with hooked(bundle, [Hook(module, fn)]):  # doctest: +SKIP
        ...     bundle.model(**inputs)
    """
    handles: list[Any] = []
    with bundle.lock:
        try:
            for hook in _grouped(hooks):
                if hook.when == "post":
                    handles.append(hook.module.register_forward_hook(hook.fn))
                elif hook.when == "pre":
                    handles.append(hook.module.register_forward_pre_hook(hook.fn))
                elif hook.when == "pre_kw":
                    handles.append(hook.module.register_forward_pre_hook(hook.fn, with_kwargs=True))
                else:
                    raise CaptureError(f"unknown hook kind {hook.when!r}")
            yield
        finally:
            for handle in reversed(handles):
                handle.remove()


_FUNCTION_IDS = itertools.count()


def dispatches_attention(model: Any) -> bool:
    """True when ``model`` runs its attention through transformers' ``AttentionInterface`` and
    can run ``sdpa`` (transformers' own test: its attention modules call ``get_interface``)."""
    cls = type(model)
    can_set = getattr(cls, "_can_set_attn_implementation", None)
    try:
        dispatches = bool(can_set()) if callable(can_set) else False
    except Exception:  # a heuristic over source code: never let it break a run
        dispatches = False
    return dispatches and bool(getattr(cls, "_supports_sdpa", False))


@contextlib.contextmanager
def attention_function(bundle: ModelBundle, fn: Callable[..., Any]) -> Iterator[None]:
    """Hold ``bundle``'s lock and run its attention through ``fn`` inside the block.

    ``fn`` is registered with transformers' ``AttentionInterface`` under a fresh name (with
    ``sdpa``'s mask builder, so masks are made as for ``sdpa``), and every config of the model
    (sub-models have their own) is pointed at that name. On exit, whatever happens inside, the
    configs get their own implementation back and the name is unregistered.

    Raises:
        UnsupportedModelError: the model does not dispatch attention through the interface.
    """
    from transformers import AttentionInterface, PreTrainedConfig
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    from ..errors import UnsupportedModelError

    model = bundle.model
    if not dispatches_attention(model):
        raise UnsupportedModelError(
            f"{bundle.name}: {type(model).__name__} does not dispatch attention through "
            f"transformers' AttentionInterface, so the blockwise path cannot see its queries and "
            f"keys; use method='eager'"
        )
    name = f"inspector_scan_{next(_FUNCTION_IDS)}"
    configs = {}
    for module in model.modules():
        cfg = getattr(module, "config", None)
        if isinstance(cfg, PreTrainedConfig):
            configs[id(cfg)] = cfg
    with bundle.lock:
        saved = [(cfg, cfg._attn_implementation_internal) for cfg in configs.values()]
        AttentionInterface.register(name, fn)
        AttentionMaskInterface.register(name, sdpa_mask)
        try:
            for cfg, _ in saved:
                cfg._attn_implementation_internal = name
            yield
        finally:
            for cfg, old in saved:
                cfg._attn_implementation_internal = old
            AttentionInterface._global_mapping.pop(name, None)
            AttentionMaskInterface._global_mapping.pop(name, None)


# --------------------------------------------------------------------------- attention modules


@dataclass(frozen=True)
class AttentionSite:
    """One attention module to hook.

    Attributes:
        name: its qualified name.
        module: the module.
        index: where its output tuple holds the weights.
        call: ``(i, n)`` when ``n`` layers share the module and this layer is its ``i``-th call.
        expand: turns the module's own weights (local or block attention) into the full
            ``(batch, head, query, key)`` matrix with the zeros it implies; ``None`` when they are
            that matrix already.
        needs_output_attentions: the module returns weights only when the forward pass is asked
            for ``output_attentions=True`` (modules found by structure).
    """

    name: str
    module: Any
    index: int
    call: tuple[int, int] | None = None
    expand: Callable[[Any], Any] | None = None
    needs_output_attentions: bool = False


def _record_specs(model: Any) -> list[tuple[str, Any, int, str | None, str | None]]:
    """``(key, class, index, layer_name, class_name)`` for a model's attention outputs."""
    specs = getattr(type(model), "_can_record_outputs", None) or {}
    out: list[tuple[str, Any, int, str | None, str | None]] = []
    for key in ("attentions", "cross_attentions"):
        entries = specs.get(key)
        if entries is None:
            continue
        for spec in entries if isinstance(entries, list | tuple) else [entries]:
            if isinstance(spec, type):
                out.append((key, spec, 1, None, None))
            elif isinstance(spec, str):
                out.append((key, None, 1, None, spec))
            else:
                out.append(
                    (
                        key,
                        getattr(spec, "target_class", None),
                        int(getattr(spec, "index", 1)),
                        getattr(spec, "layer_name", None),
                        getattr(spec, "class_name", None),
                    )
                )
    return out


def attention_sites(model: Any) -> dict[str, list[AttentionSite]]:
    """The attention modules of ``model`` by kind (``self`` or ``encoder``/``decoder``/``cross``).

    Follows transformers' own rule: a sub-model (a ``PreTrainedModel`` inside the model, e.g. an
    encoder stack) uses its own ``_can_record_outputs``. Modules come in layer order. Returns an
    empty dict for models that declare nothing (then :func:`capture` falls back to
    ``output_attentions=True``).
    """
    from transformers import PreTrainedModel

    found: dict[str, list[AttentionSite]] = {"attentions": [], "cross_attentions": []}

    def visit(module: Any, name: str, tasks: list[Any]) -> None:
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}"
            visit(
                child, full, _record_specs(child) if isinstance(child, PreTrainedModel) else tasks
            )
        for key, cls, index, layer_name, class_name in tasks:
            by_class = cls is not None and isinstance(module, cls)
            if not (by_class or (class_name is not None and name.endswith(class_name))):
                continue
            if layer_name is not None and f".{layer_name.strip('.')}." not in f"{name}.":
                continue
            found[key].append(AttentionSite(name.lstrip("."), module, index))

    visit(model, "", _record_specs(model))
    if not found["attentions"]:
        return {}
    if not getattr(model.config, "is_encoder_decoder", False):
        return {"self": found["attentions"]}
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else None
    in_encoder = {id(m) for m in encoder.modules()} if encoder is not None else set()
    return {
        "encoder": [s for s in found["attentions"] if id(s.module) in in_encoder],
        "decoder": [s for s in found["attentions"] if id(s.module) not in in_encoder],
        "cross": found["cross_attentions"],
    }


def attention_hooks(
    sites: Mapping[str, Sequence[AttentionSite]],
    layers: Sequence[int],
    on_weights: Callable[[str, int, Any], None],
    *,
    model_name: str = "model",
) -> list[Hook]:
    """Hooks that hand each kept layer's attention weights to ``on_weights``.

    ``on_weights(kind, layer_position, weights)`` gets the module's ``(batch, head, query, key)``
    tensor (``layer_position`` indexes ``layers``); the tensor is freed after the call unless
    kept, so a consumer that reduces it holds one layer at a time.
    """
    return [
        Hook(
            site.module,
            _weights_hook(kind, li, layer, site, on_weights, model_name),
            call=site.call,
        )
        for kind, li, layer, site in kept_sites(sites, layers, model_name)
    ]


def kept_sites(
    sites: Mapping[str, Sequence[AttentionSite]], layers: Sequence[int], model_name: str
) -> Iterator[tuple[str, int, int, AttentionSite]]:
    """``(kind, layer_position, layer, site)`` of each kept layer of each stack kind; a layer
    past a stack's last is refused (:class:`CaptureError`) before any of that stack's."""
    for kind, kind_sites in sites.items():
        if len(kind_sites) <= max(layers):
            raise CaptureError(
                f"{model_name}: found {len(kind_sites)} {kind} attention modules, but layer "
                f"{max(layers)} was asked for"
            )
        for li, layer in enumerate(layers):
            yield kind, li, layer, kind_sites[layer]


def _weights_hook(
    kind: str,
    li: int,
    layer: int,
    site: AttentionSite,
    on_weights: Callable[[str, int, Any], None],
    model_name: str,
) -> Callable[..., None]:
    def hook(module: Any, args: Any, output: Any) -> None:
        w = (
            output[site.index]
            if isinstance(output, tuple | list) and len(output) > site.index
            else None
        )
        if w is None:
            raise AttentionUnavailableError(
                f"{model_name}: the {kind} attention module of layer {layer} returned no "
                f"weights; load the model with attn_implementation='eager' — inspector.load does "
                f"this for you"
            )
        on_weights(kind, li, site.expand(w) if site.expand is not None else w)

    return hook


class AttentionRecorder:
    """Copies kept attention slices into ``(batch, layer, head, query, key)`` buffers.

    Args:
        sites: attention modules by kind, from :func:`attention_sites`.
        layers / heads: model indexes to keep (sorted, validated), the same for every kind or
            by kind (an encoder-decoder's encoder may have more layers or other heads than its
            decoder).
        shapes: ``kind -> (rows, cols)``: the most query rows and key columns to hold.
        batch: inputs per forward pass.
        dtype: ``"float32"`` or ``"float16"`` storage.
        causal_kinds: kinds whose key count must equal the rows written so far plus the new ones
            (a consistency check on cached generation).

    Each call of a kept layer writes its ``(batch, head, q, k)`` weights at rows
    ``filled .. filled+q`` and columns ``0 .. k``. Register :meth:`hooks` with :func:`hooked`.
    """

    def __init__(
        self,
        sites: Mapping[str, Sequence[AttentionSite]],
        layers: tuple[int, ...] | Mapping[str, tuple[int, ...]],
        heads: tuple[int, ...] | Mapping[str, tuple[int, ...]],
        shapes: Mapping[str, tuple[int, int]],
        *,
        batch: int = 1,
        dtype: str = "float32",
        causal_kinds: Sequence[str] = ("self", "decoder"),
        model_name: str = "model",
    ) -> None:
        import torch

        self.sites = {k: list(sites[k]) for k in shapes}
        self.layers = {k: layers[k] if isinstance(layers, Mapping) else layers for k in shapes}
        self.heads = {k: heads[k] if isinstance(heads, Mapping) else heads for k in shapes}
        self.batch = batch
        self.model_name = model_name
        self.causal_kinds = tuple(causal_kinds)
        torch_dtype = getattr(torch, dtype)
        # empty, not zeros: every row a hook writes is written in full (its columns past the
        # keys it saw are zeroed there), and weights() cuts away rows no hook wrote; zeroing
        # the whole buffer first would cost a second pass over hundreds of MiB.
        self.buffers = {
            k: torch.empty(
                (batch, len(self.layers[k]), len(self.heads[k]), rows, cols), dtype=torch_dtype
            )
            for k, (rows, cols) in shapes.items()
        }
        self.filled = {k: [0] * len(self.layers[k]) for k in shapes}
        self.width = {k: 0 for k in shapes}
        self.calls = {k: 0 for k in shapes}
        #: kinds whose weights come from local attention, padded to a block or window multiple
        self.cut = {k for k in shapes if any(s.expand is not None for s in self.sites[k])}
        self._head_index = {k: torch.tensor(self.heads[k]) for k in shapes}

    def hooks(self) -> list[Hook]:
        """The hooks that fill the buffers (pass them to :func:`hooked`)."""
        hooks: list[Hook] = []
        for kind, kind_sites in self.sites.items():
            hooks += attention_hooks(
                {kind: kind_sites}, self.layers[kind], self._write, model_name=self.model_name
            )
        return hooks

    def _write(self, kind: str, li: int, w: Any) -> None:
        layer = self.layers[kind][li]
        heads = self.heads[kind]
        if w.dim() != 4 or w.shape[0] != self.batch:
            raise CaptureError(
                f"{self.model_name}: {kind} attention of layer {layer} has shape "
                f"{tuple(w.shape)}; expected ({self.batch}, head, query, key)"
            )
        buf = self.buffers[kind]
        start = self.filled[kind][li]
        if kind in self.cut:  # local attention runs over a padded sequence: cut the padding
            w = w[:, :, : buf.shape[3] - start, : buf.shape[4]]
        q, k = int(w.shape[2]), int(w.shape[3])
        if kind in self.causal_kinds and k != start + q:
            raise CaptureError(
                f"{self.model_name}: {kind} attention of layer {layer} sees {k} keys after "
                f"{start} earlier rows and {q} new ones; caches that drop or reorder tokens "
                f"(beam search, sliding windows) are not supported"
            )
        if start + q > buf.shape[3] or k > buf.shape[4]:
            raise CaptureError(
                f"{self.model_name}: {kind} attention grew to {start + q} x {k} positions, more "
                f"than the {buf.shape[3]} x {buf.shape[4]} expected"
            )
        if w.shape[1] <= max(heads):
            raise CaptureError(
                f"{self.model_name}: {kind} attention of layer {layer} has {w.shape[1]} heads, "
                f"head {max(heads)} was asked for"
            )
        part = (
            w
            if len(heads) == w.shape[1]
            else w.index_select(1, self._head_index[kind].to(w.device))
        )
        buf[:, li, :, start : start + q, :k].copy_(part)
        if k < buf.shape[4]:
            buf[:, li, :, start : start + q, k:].zero_()
        self.filled[kind][li] = start + q
        self.width[kind] = max(self.width[kind], k)
        self.calls[kind] += 1

    def write_block(self, kind: str, li: int, row_start: int, block: np.ndarray) -> None:
        """Write rows ``row_start ..`` of kept layer ``li`` from a ``(kept head, rows, key)``
        block (:class:`~inspector.capture.blockwise.BlockwiseAttention`'s consumer; a batch of
        one)."""
        import torch

        buf = self.buffers[kind]
        rows, keys = int(block.shape[1]), int(block.shape[2])
        if row_start + rows > buf.shape[3] or keys > buf.shape[4] or block.shape[0] != buf.shape[2]:
            raise CaptureError(
                f"{self.model_name}: a {kind} block of layer {self.layers[kind][li]} has shape "
                f"{tuple(block.shape)} at row {row_start}; the buffer holds {tuple(buf.shape[2:])}"
            )
        buf[0, li, :, row_start : row_start + rows, :keys].copy_(torch.from_numpy(block))
        buf[0, li, :, row_start : row_start + rows, keys:].zero_()
        self.filled[kind][li] = max(self.filled[kind][li], row_start + rows)
        self.width[kind] = max(self.width[kind], keys)
        self.calls[kind] += 1

    def rows(self, kind: str) -> int:
        """Query rows written so far (the same for every kept layer after a full forward)."""
        counts = set(self.filled[kind])
        if len(counts) != 1:
            raise CaptureError(
                f"{self.model_name}: the kept {kind} layers ran a different number of times "
                f"({sorted(counts)} rows); did the forward stop early?"
            )
        return counts.pop()

    def batch_weights(
        self, kind: str, rows: int | None = None, cols: int | None = None
    ) -> np.ndarray:
        """The recorded ``(batch, layer, head, query, key)`` array, cut to ``rows`` x ``cols``."""
        rows = self.rows(kind) if rows is None else rows
        cols = self.width[kind] if cols is None else cols
        if self.calls[kind] == 0:
            raise AttentionUnavailableError(
                f"{self.model_name}: no {kind} attention module ran during the forward pass"
            )
        written = self.rows(kind)
        if rows > written:
            raise CaptureError(
                f"{self.model_name}: the {kind} attention modules wrote {written} query rows, "
                f"{rows} were expected; the forward pass did not see the whole input"
            )
        buf = self.buffers[kind]
        if rows == buf.shape[3] and cols == buf.shape[4]:
            return buf.numpy()
        return buf[:, :, :, :rows, :cols].contiguous().numpy()

    def weights(self, kind: str, rows: int | None = None, cols: int | None = None) -> np.ndarray:
        """The ``(layer, head, query, key)`` array of a batch of one."""
        if self.batch != 1:
            raise CaptureError("weights() is for a batch of one; use batch_weights()")
        return self.batch_weights(kind, rows, cols)[0]


__all__ = [
    "AttentionRecorder",
    "AttentionSite",
    "Hook",
    "attention_function",
    "attention_hooks",
    "attention_sites",
    "dispatches_attention",
    "hooked",
    "kept_sites",
]
