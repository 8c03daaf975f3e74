"""Bounded-memory runs: hand every kept layer's attention to a consumer, a block of rows at a time.

Two ways to see the weights, one consumer protocol (:class:`~.types.BlockConsumer`):

* ``method="eager"``: forward hooks on the eager attention modules
  (:func:`~.hooks.attention_hooks`) cut each layer's ``(head, T, T)`` weights into row blocks
  while the forward runs; the layer is freed when its hook returns.
* ``method="blockwise"``: the model runs ``sdpa`` and
  :class:`~.blockwise.BlockwiseAttention` (registered with :func:`~.hooks.attention_function`)
  recomputes the weights block by block from the post-rotary queries and keys, so no ``T x T``
  tensor ever exists.

``"auto"`` takes the blockwise path where the model dispatches attention through transformers'
``AttentionInterface``. Before anything runs, the memory pre-flight (:mod:`.memory`) checks the
forward's transient memory plus what the consumer keeps against the budget. :func:`scan_text`
runs one input; :func:`generate_last_rows` generates and hands over the last query row of every
step (retrieval heads). This module never computes statistics: consumers (in
:mod:`inspector.analysis`) do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from .._progress import bar as _bar
from ..errors import CaptureError, InputError, UnsupportedModelError
from ..models.families import forward_accepts
from ..models.loading import ModelBundle
from . import memory as _memory
from .blockwise import BlockwiseAttention, rows_per_block, to_numpy, weight_blocks
from .hooks import (
    Hook,
    attention_function,
    attention_hooks,
    dispatches_attention,
    hooked,
)
from .inputs import prepare_input
from .memory import MemoryLimit
from .options import ALL, PLAIN, InputOptions, Selection, positive_int
from .run import bundle_sites, forward
from .tokenize import decoder_tokens, model_inputs
from .types import BlockConsumer, ScanLayout, ScanPart, Tokens

Method = Literal["auto", "eager", "blockwise"]
METHODS = ("auto", "eager", "blockwise")


def resolve_method(bundle: ModelBundle, method: str) -> str:
    """``eager`` or ``blockwise`` for ``method`` (``auto``: blockwise where the model allows)."""
    if method not in METHODS:
        raise InputError(f"method must be one of {list(METHODS)}, got {method!r}")
    supported = dispatches_attention(bundle.model)
    if method == "auto":
        return "blockwise" if supported else "eager"
    if method == "blockwise" and not supported:
        raise UnsupportedModelError(
            f"{bundle.name}: {type(bundle.model).__name__} does not dispatch attention through "
            f"transformers' AttentionInterface, so the blockwise path cannot see its queries and "
            f"keys; use method='eager'"
        )
    return method


def _sites(bundle: ModelBundle, kinds: Sequence[str]) -> dict[str, Any]:
    sites = bundle_sites(bundle)
    if not sites or any(len(sites.get(k, ())) != bundle.n_layers for k in kinds):
        raise UnsupportedModelError(
            f"{bundle.name}: found no hookable attention modules (its class declares no "
            f"_can_record_outputs), so it cannot be scanned; use inspect() on shorter inputs"
        )
    return {k: sites[k] for k in kinds}


class _Feed:
    """Passes blocks on to the consumer, counting rows per layer and ticking a progress bar."""

    def __init__(self, consumer: BlockConsumer, layout: ScanLayout, bar: Any) -> None:
        self.consumer = consumer
        self.rows = {p.kind: p.shape[0] for p in layout.parts}
        self.seen: dict[tuple[str, int], int] = {}
        self.bar = bar

    def block(self, kind: str, li: int, r0: int, block: np.ndarray) -> None:
        self.consumer.block(kind, li, r0, block)
        seen = self.seen.get((kind, li), 0) + block.shape[1]
        self.seen[(kind, li)] = seen
        if seen == self.rows[kind] and self.bar is not None:
            self.bar.update(1)

    def check(self, layout: ScanLayout, name: str, last_row_only: bool = False) -> None:
        for part in layout.parts:
            for li, layer in enumerate(layout.layers):
                seen = self.seen.get((part.kind, li), 0)
                want = 1 if last_row_only else part.shape[0]
                if seen < want:
                    raise CaptureError(
                        f"{name}: the {part.kind} attention of layer {layer} handed over {seen} "
                        f"query rows, {want} were expected; the forward pass did not see the "
                        f"whole input"
                    )


def _eager_hooks(
    sites: dict[str, Any],
    layout: ScanLayout,
    consumer: BlockConsumer,
    feed: _Feed,
    block_rows: int,
    *,
    last_row_only: bool,
    name: str,
) -> list[Hook]:
    filled: dict[tuple[str, int], int] = {}

    def on_weights(kind: str, li: int, w: Any) -> None:
        start = filled.get((kind, li), 0)
        if consumer.wants_full_layers and not last_row_only:
            heads = list(layout.heads)
            full = w[0] if len(heads) == w.shape[1] else w[0, heads]
            consumer.layer(kind, li, to_numpy(full))
        for r0, block in weight_blocks(w, layout.heads, block_rows, last_row_only=last_row_only):
            feed.block(kind, li, start + r0, block)
        filled[(kind, li)] = start + int(w.shape[2])

    return attention_hooks(sites, list(layout.layers), on_weights, model_name=name)


def scan_layout(
    bundle: ModelBundle,
    text: str,
    options: InputOptions = PLAIN,
    *,
    select: Selection = ALL,
) -> ScanLayout:
    """Prepare one input exactly as :func:`~.run.capture` does
    (:func:`~.inputs.prepare_input`) and lay out its scan."""
    prepared = prepare_input(bundle, text, options)
    layer_idx, head_idx = select.resolve(bundle.n_layers, bundle.n_heads)
    tokens = prepared.tokens
    parts: tuple[ScanPart, ...]
    if bundle.architecture == "encoder-decoder":
        dec = decoder_tokens(bundle, prepared.target)
        parts = (
            ScanPart("encoder", tokens, tokens, False),
            ScanPart("decoder", dec, dec, True),
            ScanPart("cross", dec, tokens, False),
        )
    else:
        parts = (ScanPart("self", tokens, tokens, bundle.architecture == "decoder"),)
    return ScanLayout(parts, layer_idx, head_idx, prepared.metadata)


def scan_estimate(
    bundle: ModelBundle,
    layout: ScanLayout,
    consumer: BlockConsumer,
    *,
    method: str,
    block_rows: int,
    max_memory: MemoryLimit | None = None,
) -> _memory.MemoryEstimate:
    """The memory pre-flight of a scan: forward transient + what the consumer keeps."""
    dims = _memory.model_dims(bundle.model)
    shapes = {p.kind: p.shape for p in layout.parts}
    transient = _memory.forward_bytes(
        dims,
        n_heads=bundle.n_heads,
        shapes=shapes,
        model_itemsize=_memory.itemsize(bundle.dtype),
        eager=method == "eager",
        block_rows=block_rows,
        position_bias=bundle.model_type in ("t5", "mt5", "umt5", "longt5"),
    )
    n = max(p.shape[0] for p in layout.parts)
    return _memory.estimate(
        f"scan() of {n:,} tokens ({method})",
        {
            "forward pass": transient,
            "statistics": consumer.bytes_needed(layout, block_rows),
            "runtime": _memory.RUNTIME_BYTES,
        },
        max_memory,
    )


def _block_rows(bundle: ModelBundle, layout: ScanLayout, block_rows: int | None) -> int:
    if block_rows is not None:
        return positive_int(block_rows, "block_rows")
    keys = max(p.shape[1] for p in layout.parts)
    return rows_per_block(len(layout.heads), keys)


def run_scan(
    bundle: ModelBundle,
    layout: ScanLayout,
    consumer: BlockConsumer,
    *,
    method: str = "auto",
    block_rows: int | None = None,
    max_memory: MemoryLimit | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """One forward pass over ``layout``'s input, every kept layer's rows fed to ``consumer``.

    Raises:
        ResourceError: the pre-flight estimate does not fit the budget (nothing ran).

    Returns:
        Run facts for the metadata: ``method``, ``block_rows``, the memory estimate and budget.
    """
    method = resolve_method(bundle, method)
    kinds = [p.kind for p in layout.parts]
    sites = _sites(bundle, kinds)
    rows = _block_rows(bundle, layout, block_rows)
    with _memory.preflight(
        bundle.lock,
        lambda: scan_estimate(
            bundle, layout, consumer, method=method, block_rows=rows, max_memory=max_memory
        ),
        _memory.ADVICE["scan"],
    ) as est:
        _run_scan(bundle, layout, consumer, method, sites, rows, kinds, progress)
    return {
        "method": method,
        "block_rows": rows,
        "memory_estimate": est.total,
        "memory_budget": est.budget.bytes if est.budget else None,
    }


def _run_scan(
    bundle: ModelBundle,
    layout: ScanLayout,
    consumer: BlockConsumer,
    method: str,
    sites: dict[str, Any],
    rows: int,
    kinds: Sequence[str],
    progress: bool | None,
) -> None:
    """The forward pass of :func:`run_scan` (its pre-flight passed)."""
    consumer.start(layout)
    part = layout.parts[0]
    inputs = model_inputs(bundle, [part.query])
    if bundle.architecture == "encoder-decoder":
        dec = layout.part("decoder").query
        inputs["decoder_input_ids"] = model_inputs(bundle, [dec])["input_ids"]
    call_kw: dict[str, Any] = {}
    if bundle.architecture == "decoder" and forward_accepts(bundle.model, "logits_to_keep"):
        call_kw["logits_to_keep"] = 1
    bar = _bar(total=len(kinds) * len(layout.layers), desc=f"scan {bundle.name}", unit=" layers",
               progress=progress)  # fmt: skip
    feed = _Feed(consumer, layout, bar)
    try:
        if method == "eager":
            hooks = _eager_hooks(
                sites, layout, consumer, feed, rows, last_row_only=False, name=bundle.name
            )
            forward(bundle, inputs, hooks=hooks, **call_kw)
        else:
            fn = BlockwiseAttention(
                sites,
                layout.layers,
                layout.heads,
                feed.block,
                block_rows=rows,
                model_name=bundle.name,
            )
            with attention_function(bundle, fn):
                forward(bundle, inputs, **call_kw)
    finally:
        if bar is not None:
            bar.close()
    feed.check(layout, bundle.name)


def generate_last_rows(
    bundle: ModelBundle,
    tokens: Tokens,
    consumer: BlockConsumer,
    *,
    max_new_tokens: int,
    select: Selection = ALL,
    method: str = "auto",
    max_memory: MemoryLimit | None = None,
    stop_after: Callable[[int], bool] | None = None,
    stop_at_eos: bool = True,
) -> list[int]:
    """Generate greedily from ``tokens`` and hand each step's last query row to ``consumer``.

    Step ``s`` (``s = 0`` is the prompt's prefill) hands over the row of query position
    ``len(tokens) - 1 + s``: the attention that produced generated token ``s``. Only that row is
    ever computed on the blockwise path (one ``(head, 1, key)`` block per layer and step).
    Generation stops after ``max_new_tokens``, after a token for which ``stop_after(id)`` is
    true, and (``stop_at_eos``) after the model's end-of-sequence token.

    Returns:
        The generated token ids.
    """

    if bundle.architecture != "decoder":
        raise UnsupportedModelError(
            f"{bundle.name} is not a decoder; retrieval heads are measured while a decoder "
            f"generates (load e.g. smollm2)"
        )
    positive_int(max_new_tokens, "max_new_tokens")
    method = resolve_method(bundle, method)
    layer_idx, head_idx = select.resolve(bundle.n_layers, bundle.n_heads)
    sites = _sites(bundle, ["self"])
    n = len(tokens)
    total = n + max_new_tokens
    if bundle.max_positions is not None and total > bundle.max_positions:
        raise InputError(
            f"the prompt is {n} tokens; with {max_new_tokens} new tokens it would pass the "
            f"model's limit of {bundle.max_positions}: use shorter lengths"
        )
    layout = ScanLayout((ScanPart("self", tokens, tokens, True),), layer_idx, head_idx, {})
    dims = _memory.model_dims(bundle.model)
    transient = _memory.forward_bytes(
        dims,
        n_heads=bundle.n_heads,
        shapes={"self": (n, n)},
        model_itemsize=_memory.itemsize(bundle.dtype),
        eager=method == "eager",
        block_rows=1,
    )
    head_dim = dims["hidden"] // max(1, bundle.n_heads)
    cache = _memory.cache_bytes(
        bundle.n_layers, bundle.n_kv_heads, total, head_dim, _memory.itemsize(bundle.dtype)
    )
    parts = {
        "forward pass": transient,
        "key/value cache": cache,
        "statistics": consumer.bytes_needed(layout, 1),
        "runtime": _memory.RUNTIME_BYTES,
    }
    with _memory.preflight(
        bundle.lock,
        lambda: _memory.estimate(
            f"generating {max_new_tokens} tokens after {n:,} ({method})", parts, max_memory
        ),
        "Use shorter lengths, fewer layers=[...] / heads=[...], or raise max_memory= if you know "
        "more is free",
    ):
        return _generate_rows(
            bundle, tokens, consumer, layout, sites, method, max_new_tokens, stop_after, stop_at_eos
        )


def _generate_rows(
    bundle: ModelBundle,
    tokens: Tokens,
    consumer: BlockConsumer,
    layout: ScanLayout,
    sites: dict[str, Any],
    method: str,
    max_new_tokens: int,
    stop_after: Callable[[int], bool] | None,
    stop_at_eos: bool,
) -> list[int]:
    """The generation of :func:`generate_last_rows` (its pre-flight passed)."""
    import torch

    n = len(tokens)
    layer_idx, head_idx = layout.layers, layout.heads
    consumer.start(layout)
    inputs = model_inputs(bundle, [tokens])
    feed = _Feed(consumer, layout, None)
    tok = bundle.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    gen_kw: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False}
    if getattr(bundle.model.generation_config, "pad_token_id", None) is None and pad is not None:
        gen_kw["pad_token_id"] = pad
    for key in ("temperature", "top_p", "top_k"):
        gen_kw[key] = None
    if not stop_at_eos:
        gen_kw["eos_token_id"] = None
    if stop_after is not None:
        gen_kw["stopping_criteria"] = _stopping(stop_after)
    model = bundle.model
    if method == "eager":
        hooks = _eager_hooks(sites, layout, consumer, feed, 1, last_row_only=True, name=bundle.name)
        with hooked(bundle, hooks), torch.inference_mode():
            out = model.generate(**inputs, **gen_kw)
    else:
        fn = BlockwiseAttention(
            sites,
            layer_idx,
            head_idx,
            feed.block,
            block_rows=1,
            last_row_only=True,
            model_name=bundle.name,
        )
        with attention_function(bundle, fn), torch.inference_mode():
            out = model.generate(**inputs, **gen_kw)
    ids = [int(i) for i in out[0, n:].tolist()]
    feed.check(layout, bundle.name, last_row_only=True)
    return ids


def _stopping(stop_after: Callable[[int], bool]) -> Any:
    """A transformers stopping criterion: stop once the last generated token satisfies
    ``stop_after`` (one sequence: greedy generation here is never batched)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _After(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [bool(stop_after(int(row[-1]))) for row in input_ids]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_After()])


__all__ = [
    "METHODS",
    "Method",
    "generate_last_rows",
    "resolve_method",
    "run_scan",
    "scan_estimate",
    "scan_layout",
]
