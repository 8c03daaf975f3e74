"""Which module computes each layer's attention: the hooks of one probing pass, and what it saw.

:func:`inspector.capture.run.bundle_sites` starts from the modules a class names itself
(``_can_record_outputs``, read by :func:`inspector.capture.hooks.attention_sites`). When they are
fewer than the layers, or the class names none, one forward pass on a short input settles it;
this module builds that pass's hooks and reads the result, so that the pass itself runs where
every pass runs (:func:`inspector.capture.run.forward`):

* :func:`call_order` - the named modules in the order they are called, one call a layer (ALBERT's
  layers share one module: it is kept once per layer, with its call position);
* :func:`by_structure` - for classes that name none (BLOOM, Falcon, DeBERTa, MPNet, LED, LongT5):
  with ``output_attentions=True``, the module of layer ``i`` is the innermost one whose output
  shares storage with the tensor the model returns as its ``i``-th attention; a module whose
  weights are not a ``(query, key)`` matrix gets an expander (:mod:`.local`) or is refused.

Nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..models.loading import ModelBundle
from .hooks import AttentionSite, Hook
from .local import expander

#: The model output field holding each stack's attentions.
OUTPUT_FIELDS = {
    "self": "attentions",
    "encoder": "encoder_attentions",
    "decoder": "decoder_attentions",
    "cross": "cross_attentions",
}


def stack_kinds(bundle: ModelBundle) -> tuple[str, ...]:
    """The attention stacks of ``bundle``'s model: ``("self",)`` or encoder, decoder, cross."""
    if bundle.architecture == "encoder-decoder":
        return ("encoder", "decoder", "cross")
    return ("self",)


def call_order(
    named: Mapping[str, Sequence[AttentionSite]],
) -> tuple[list[Hook], Callable[[], dict[str, list[AttentionSite]]]]:
    """Hooks noting each call of the ``named`` modules, and a function giving, after the pass,
    the sites in call order (one per call, shared modules with their call position).

    The pass needs no ``output_attentions=True``: these modules return their weights without it,
    and asking for it makes transformers install output-capturing hooks on the model for good.
    """
    calls: list[tuple[str, AttentionSite]] = []

    def note(kind: str, site: AttentionSite) -> Callable[..., None]:
        return lambda _module, _args, _output: calls.append((kind, site))

    unique = {id(s.module): (k, s) for k, ks in named.items() for s in ks}
    hooks = [Hook(s.module, note(k, s)) for k, s in unique.values()]

    def ordered() -> dict[str, list[AttentionSite]]:
        return {
            kind: _with_calls(
                [(s.name, s.module, s.index, None) for k, s in calls if k == kind],
                needs_output_attentions=False,
            )
            for kind in named
        }

    return hooks, ordered


def by_structure(
    model: Any,
) -> tuple[list[Hook], Callable[[Any, Sequence[str]], dict[str, list[AttentionSite]]]]:
    """Hooks keeping every module's tuple output, and a function that finds, in the model output
    of a pass with ``output_attentions=True``, the module that produced each layer's attention
    (``{}`` when some layer's is not found)."""
    seen: list[tuple[str, Any, tuple[Any, ...]]] = []

    def keep(name: str, module: Any) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            if isinstance(output, tuple | list):
                seen.append((name, module, tuple(output)))

        return hook

    hooks = [Hook(m, keep(n, m)) for n, m in model.named_modules() if n]

    def found(out: Any, kinds: Sequence[str]) -> dict[str, list[AttentionSite]]:
        import torch

        result: dict[str, list[AttentionSite]] = {}
        for kind in kinds:
            returned = getattr(out, OUTPUT_FIELDS[kind], None)
            if not returned or any(not isinstance(a, torch.Tensor) for a in returned):
                return {}
            layer_sites = [_producer(seen, a) for a in returned]
            if any(hit is None for hit in layer_sites):
                return {}
            result[kind] = _with_calls(layer_sites)
        return result

    return hooks, found


def _producer(seen: list[tuple[str, Any, tuple[Any, ...]]], a: Any) -> Any:
    """The innermost ``(name, module, index, tensor)`` whose output shares ``a``'s storage."""
    import torch

    ptr = a.untyped_storage().data_ptr()
    for name, module, output in seen:  # hooks fire innermost first
        for i, t in enumerate(output):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() == ptr:
                return name, module, i, t
    return None


def _with_calls(
    layer_sites: Sequence[tuple[str, Any, int, Any]], *, needs_output_attentions: bool = True
) -> list[AttentionSite]:
    users: dict[int, list[int]] = {}
    for li, (_, module, _, _) in enumerate(layer_sites):
        users.setdefault(id(module), []).append(li)
    out = []
    for li, (name, module, index, tensor) in enumerate(layer_sites):
        layers = users[id(module)]
        call = (layers.index(li), len(layers)) if len(layers) > 1 else None
        expand = expander(module, tensor, name) if tensor is not None else None
        out.append(AttentionSite(name, module, index, call, expand, needs_output_attentions))
    return out


__all__ = ["OUTPUT_FIELDS", "by_structure", "call_order", "stack_kinds"]
