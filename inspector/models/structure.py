"""The attention structure of a loaded model: its projections, found from its attention modules.

:func:`find_structure` starts from the attention modules themselves (one per layer, in the order
they run, found by :mod:`inspector.capture`), tries the family table's paths
(:mod:`inspector.models.families`) in each module's transformer block, and otherwise finds the
projections by structure: the output projection is the last linear map inside the attention
module that reads ``heads x head_dim`` features and writes the hidden size, the value projection
a linear map beside it (named like a value first). How values sit in a fused projection
(:data:`LAYOUTS`) is settled where they are used (:mod:`inspector.explain.norms`), by checking
that ``α·V`` reproduces the input of the output projection. Modules shared by several layers
(ALBERT) are recorded with their call position.

Nothing here runs a model or registers hooks (:mod:`inspector.capture.hooks` does).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError, UnsupportedModelError
from .families import FAMILIES, Family, families_of, hidden_size

#: How a projection's output holds the values (``plain``: the values alone, ``(seq, kv*d)``;
#: ``blocks``: ``[q | k | v]``; ``heads``: ``[q_h k_h v_h]`` per head (GPT-NeoX, BLOOM,
#: DeBERTa); ``groups``: per key/value group ``[q.. k v]`` (Falcon's new architecture)).
LAYOUTS = ("plain", "blocks", "heads", "groups")


def linear_in_out(module: Any) -> tuple[int, int] | None:
    """``(in_features, out_features)`` of a linear map (``nn.Linear`` or GPT-2's ``Conv1D``)."""
    import torch

    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        return None
    if isinstance(module, torch.nn.Linear):
        return int(module.in_features), int(module.out_features)
    if type(module).__name__ == "Conv1D":
        return int(weight.shape[0]), int(weight.shape[1])
    return None


def _weight_in_out(module: Any) -> Any:
    """The weight as ``(in, out)``."""
    w = module.weight.detach()
    return w if type(module).__name__ == "Conv1D" else w.T


@dataclass(frozen=True)
class ValueSource:
    """A module whose output may hold the values, and the layouts to try on it (:data:`LAYOUTS`)."""

    module: Any
    name: str
    layouts: tuple[str, ...]


@dataclass(frozen=True)
class AttentionLayer:
    """Where one layer's attention projections live and how to read them.

    Attributes:
        block: the transformer block (``BertLayer``, ``GPT2Block``, ``T5Block``, ...).
        attention: the attention module (the one returning the weights); its first input is the
            attention's input hidden states.
        out: the output projection; its input is ``(batch, seq, heads * head_dim)``, head by head.
        out_weight: ``W_O`` split by head, ``(heads, head_dim, hidden)``.
        values: candidate value sources, most likely first (checked where used).
        query, key: modules whose outputs hold the queries and keys (may be one fused module).
        query_slice, key_slice: their parts of a fused ``[q | k | v]`` output, or ``None``.
        call: ``(i, n)`` when the modules are shared by ``n`` layers (ALBERT): this layer is
            their ``i``-th call in every forward pass; ``None`` otherwise.
        names: ``{"out": ..., "attention": ...}`` qualified module names (for messages).
    """

    block: Any
    attention: Any
    out: Any
    out_weight: Any
    values: tuple[ValueSource, ...]
    query: Any = None
    key: Any = None
    query_slice: slice | None = None
    key_slice: slice | None = None
    call: tuple[int, int] | None = None
    names: tuple[tuple[str, str], ...] = ()

    @property
    def value(self) -> Any:
        """The most likely value module."""
        return self.values[0].module if self.values else None

    def name(self, what: str) -> str:
        return dict(self.names).get(what, what)


@dataclass(frozen=True)
class Structure:
    """The attention layers of one stack of a model, found by :func:`find_structure`.

    Attributes:
        family: the table entry whose paths fit, or ``"structure"`` when found by structure.
        kind: ``self``, ``encoder``, ``decoder`` or ``cross``.
        layers: one :class:`AttentionLayer` per layer, in the order they run.
        n_heads / n_kv_heads / head_dim: query heads, key/value heads, features per head.
        shared_prefix: head ablation may share the layers below each ablated layer.
    """

    family: str
    layers: tuple[AttentionLayer, ...]
    n_heads: int
    n_kv_heads: int
    head_dim: int
    kind: str = "self"
    shared_prefix: bool = True


def module_at(module: Any, path: str | None) -> Any:
    """The sub-module at dotted ``path`` (``None`` when any part is missing)."""
    if path is None:
        return None
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


_VALUE_NAME = re.compile(r"(^|_)(v|val|value|values)(_|$)", re.IGNORECASE)
_ATTENTION_NAME = re.compile(r"attention|attn", re.IGNORECASE)


def _named(model: Any) -> dict[str, Any]:
    return dict(model.named_modules())


def _block_name(site: str, modules: dict[str, Any]) -> str:
    """The outermost ancestor of ``site`` that is an element of a ``ModuleList`` (the block)."""
    import torch

    parts = site.split(".")
    for i in range(1, len(parts) + 1):
        parent, child = ".".join(parts[: i - 1]), parts[i - 1]
        if child.isdigit() and isinstance(modules.get(parent), torch.nn.ModuleList):
            return ".".join(parts[:i])
    return ".".join(parts[:-1])


def _root_name(site: str, block: str, modules: dict[str, Any]) -> str:
    """The outermost attention module holding ``site`` below its block (``BertAttention`` for
    ``BertSelfAttention``), or ``site`` itself."""
    parts = site.split(".")
    start = len(block.split(".")) if block else 0
    for i in range(start + 1, len(parts) + 1):
        name = ".".join(parts[:i])
        if _ATTENTION_NAME.search(type(modules[name]).__name__):
            return name
    return site


def _inside(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def _value_sources(
    candidates: Sequence[tuple[str, Any]], width: int, n_heads: int, head_dim: int
) -> tuple[ValueSource, ...]:
    """Linear maps whose output can hold values: named like a value first, then fused ones."""
    named: list[ValueSource] = []
    fused: list[ValueSource] = []
    other: list[ValueSource] = []
    for name, module in candidates:
        io = linear_in_out(module)
        if io is None or io[1] % head_dim:
            continue
        units = io[1] // head_dim
        leaf = name.rsplit(".", 1)[-1]
        if units <= n_heads and n_heads % units == 0:
            source = ValueSource(module, name, ("plain",))
            (named if _VALUE_NAME.search(leaf) and "global" not in leaf else other).append(source)
        elif units > n_heads and (units - n_heads) % 2 == 0:
            layouts = (
                ("blocks", "heads", "groups") if units == 3 * n_heads else ("blocks", "groups")
            )
            fused.append(ValueSource(module, name, layouts))
    return tuple(named + fused + other)[:8]


def _from_table(
    family: Family, kind: str, block: Any, root: str, names: dict[int, str]
) -> tuple[Any, str, tuple[ValueSource, ...]] | None:
    out_path = family.cross_output if kind == "cross" else family.output
    value_path = family.cross_value if kind == "cross" else family.value
    if out_path is None:
        return None
    out = module_at(block, out_path)
    if out is None or linear_in_out(out) is None or not _inside(names.get(id(out), ""), root):
        return None
    fused = module_at(block, family.fused_qkv) if kind != "cross" else None
    value = fused if fused is not None else module_at(block, value_path)
    if value is None or linear_in_out(value) is None:
        return None
    layouts = ("blocks", "heads", "groups") if fused is not None else ("plain",)
    return (
        out,
        names.get(id(out), out_path),
        (ValueSource(value, names.get(id(value), ""), layouts),),
    )


def find_structure(
    model: Any,
    *,
    model_type: str,
    sites: Sequence[tuple[str, Any]],
    n_heads: int,
    n_kv_heads: int,
    feature: str,
    kind: str = "self",
) -> Structure:
    """Find the attention projections of every layer of one stack of ``model``.

    Args:
        sites: ``(qualified name, module)`` of the attention module of every layer of the
            stack, in the order they run (a shared module appears once per layer).
        kind: the stack (``self``, ``encoder``, ``decoder`` or ``cross``).

    Raises:
        UnsupportedModelError: naming ``feature`` when no output projection is found.
    """
    modules = _named(model)
    names = {id(m): n for n, m in modules.items()}
    hidden = hidden_size(model.config)
    own = [f for f in families_of(model_type) if f.output is not None]
    rest = [f for f in FAMILIES.values() if f.output is not None and f not in own]
    layers: list[AttentionLayer] = []
    families: set[str] = set()
    for site_name, site in sites:
        block_name = _block_name(site_name, modules)
        block = modules.get(block_name, model)
        root = _root_name(site_name, block_name, modules)
        found = None
        for family in own + rest:
            found = _from_table(family, kind, block, root, names)
            if found is not None:
                families.add(family.name)
                break
        if found is None:
            found = _by_structure(root, modules, n_heads, hidden)
            families.add("structure")
        if found is None:
            raise UnsupportedModelError(
                f"{feature} does not support {type(model).__name__} ({model_type}): found no "
                f"attention output projection (a linear map from heads x head_dim features to "
                f"the hidden size) in {root or type(site).__name__} of layer {len(layers)}; name "
                f"it with inspector.models.register_family(Family(..., value=..., output=...))"
            )
        out, out_name, values = found
        w = _weight_in_out(out)
        width = int(w.shape[0])
        head_dim = width // n_heads
        if head_dim * n_heads != width:
            raise UnsupportedModelError(
                f"{feature}: the output projection {out_name} reads {width} features, which "
                f"{n_heads} heads cannot share evenly"
            )
        # the table's value source first, then every other candidate found by structure
        found_values = _value_sources(
            [(n, m) for n, m in modules.items() if _inside(n, root) and m is not out],
            width,
            n_heads,
            head_dim,
        )
        values = values + tuple(
            v for v in found_values if v.module not in [s.module for s in values]
        )
        layers.append(
            AttentionLayer(
                block=block,
                attention=site,
                out=out,
                out_weight=w.reshape(n_heads, head_dim, -1),
                values=values,
                names=(("out", out_name), ("attention", site_name)),
                **_query_key(block, kind, model_type, width),
            )
        )
    calls: dict[int, list[int]] = {}
    for li, layer in enumerate(layers):
        calls.setdefault(id(layer.out), []).append(li)
    shared = [
        replace(layer, call=(users.index(li), len(users))) if len(users) > 1 else layer
        for li, layer in enumerate(layers)
        for users in [calls[id(layer.out)]]
    ]
    family_name = "structure" if "structure" in families else next(iter(families), "structure")
    table = FAMILIES.get(family_name)
    return Structure(
        family_name,
        tuple(shared),
        n_heads,
        n_kv_heads,
        int(shared[0].out_weight.shape[1]) if shared else 0,
        kind,
        shared_prefix=bool(table and table.shared_prefix) and kind in ("self",),
    )


def _by_structure(
    root: str, modules: dict[str, Any], n_heads: int, hidden: int | None
) -> tuple[Any, str, tuple[ValueSource, ...]] | None:
    """The last linear map inside ``root`` from ``heads x d`` features to the hidden size."""
    out_name, out = None, None
    for name, module in modules.items():
        io = linear_in_out(module)
        if io is None or not _inside(name, root):
            continue
        if io[0] % n_heads == 0 and (hidden is None or io[1] == hidden):
            out_name, out = name, module
    if out is None or out_name is None:
        return None
    return out, out_name, ()


def _query_key(block: Any, kind: str, model_type: str, width: int) -> dict[str, Any]:
    """Query and key modules named by the table (the neuron view reads them)."""
    if kind == "cross":
        return {}
    for family in families_of(model_type):
        if family.fused_qkv:
            fused = module_at(block, family.fused_qkv)
            io = linear_in_out(fused) if fused is not None else None
            if io is not None and io[1] == 3 * width:
                q, k = slice(0, width), slice(width, 2 * width)
                return {"query": fused, "key": fused, "query_slice": q, "key_slice": k}
        query, key = module_at(block, family.query), module_at(block, family.key)
        if query is not None and key is not None:
            return {"query": query, "key": key}
    return {}


def split_values(output: Any, layout: str, n_heads: int, head_dim: int) -> Any:
    """The values ``(seq, kv_heads, head_dim)`` in one sequence's projection output
    ``(seq, width)`` read with ``layout`` (:data:`LAYOUTS`), or ``None`` when it cannot fit."""
    seq, width = int(output.shape[0]), int(output.shape[-1])
    if width % head_dim:
        return None
    units = width // head_dim
    if layout == "plain":
        return output.reshape(seq, units, head_dim) if n_heads % units == 0 else None
    kv, rest = divmod(units - n_heads, 2)
    if kv < 1 or rest or n_heads % kv:
        return None
    if layout == "blocks":
        return output[:, (n_heads + kv) * head_dim :].reshape(seq, kv, head_dim)
    if layout == "heads":
        return output.reshape(seq, n_heads, 3, head_dim)[:, :, 2] if kv == n_heads else None
    if layout == "groups":
        return output.reshape(seq, kv, n_heads // kv + 2, head_dim)[:, :, -1]
    raise InputError(f"unknown value layout {layout!r}; one of {LAYOUTS}")


__all__ = [
    "LAYOUTS",
    "AttentionLayer",
    "Structure",
    "ValueSource",
    "find_structure",
    "linear_in_out",
    "module_at",
    "split_values",
]
