"""Model-family facts in one table, and the attention structure found on a loaded model.

Every fact inspector needs about an architecture lives here, as data (:class:`Family`, one entry
per family in :data:`FAMILIES`, extended with :func:`register_family`):

* ``decoder``: a causal language model when its config does not say so itself;
* ``value`` / ``output``: where a transformer block keeps its value projection and the attention
  output projection (norm-based attention and head ablation read and gate them);
* ``query`` / ``key``: the query and key projections (the neuron view reads them);
* ``fused_qkv``: one module computing ``[q | k | v]`` (GPT-2's ``c_attn``) instead of three;
* ``conv1d``: weights stored ``(in, out)`` instead of ``nn.Linear``'s ``(out, in)``;
* ``prefix_space``: its byte-level tokenizer needs ``add_prefix_space=True`` for pre-split words.

Structure found on the model wins over names: :func:`find_structure` looks for the
:class:`torch.nn.ModuleList` of transformer blocks and tries each family's paths on its first
block, the model's own family first. Adding a family is one :class:`Family` entry.

Nothing here runs a model or registers hooks (:mod:`inspector.capture.hooks` does).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, UnsupportedModelError


@dataclass(frozen=True)
class Family:
    """What inspector knows about one family of architectures.

    Attributes:
        name: the family's name (``"bert"``, ``"gpt2"``, ``"llama"``, ...).
        model_types: ``config.model_type`` values of the family.
        decoder: True for causal language models (used when the config does not say).
        value, output: dotted paths of the value projection and of the attention output
            projection inside one transformer block (``None``: unknown layout).
        query, key: dotted paths of the query and key projections.
        fused_qkv: dotted path of a module whose output is ``[q | k | v]`` (then ``query``,
            ``key`` and ``value`` are its thirds).
        conv1d: the projections store weights ``(in, out)`` (GPT-2's ``Conv1D``).
        prefix_space: the tokenizer needs ``add_prefix_space=True`` for pre-split words.
    """

    name: str
    model_types: tuple[str, ...]
    decoder: bool = False
    value: str | None = None
    output: str | None = None
    query: str | None = None
    key: str | None = None
    fused_qkv: str | None = None
    conv1d: bool = False
    prefix_space: bool = False

    def __post_init__(self) -> None:
        if not self.name or not self.model_types:
            raise InputError("a Family needs a name and at least one model_type")
        if self.fused_qkv is None and (self.value is None) != (self.output is None):
            raise InputError(f"family {self.name!r}: give both value= and output=, or neither")

    @property
    def has_projections(self) -> bool:
        """True when the value and output projections are known (norms, ablation)."""
        return self.output is not None and (self.value is not None or self.fused_qkv is not None)


FAMILIES: dict[str, Family] = {}
"""The family table, name -> :class:`Family`. Extend it with :func:`register_family`."""


def register_family(family: Family, *, overwrite: bool = False) -> None:
    """Add ``family`` to the table (``overwrite=True`` replaces an entry of the same name).

    Example:
        >>> register_family(Family("mygpt", ("mygpt",), decoder=True,
        ...     value="attn.v", output="attn.o", query="attn.q", key="attn.k"))  # doctest: +SKIP
    """
    if not isinstance(family, Family):
        raise InputError(f"register_family takes a Family, not {type(family).__name__}")
    if family.name in FAMILIES and not overwrite:
        raise InputError(f"family {family.name!r} is registered; pass overwrite=True to replace it")
    FAMILIES[family.name] = family
    _by_type.cache_clear()


_BERT_PATHS: dict[str, Any] = {
    "value": "attention.self.value",
    "output": "attention.output.dense",
    "query": "attention.self.query",
    "key": "attention.self.key",
}
for _family in (
    Family(
        "bert",
        ("bert", "xlm-roberta", "camembert", "electra", "ernie", "data2vec-text"),
        **_BERT_PATHS,
    ),
    Family("roberta", ("roberta",), prefix_space=True, **_BERT_PATHS),
    Family(
        "distilbert",
        ("distilbert",),
        value="attention.v_lin",
        output="attention.out_lin",
        query="attention.q_lin",
        key="attention.k_lin",
    ),
    Family(
        "gpt2",
        ("gpt2",),
        decoder=True,
        fused_qkv="attn.c_attn",
        output="attn.c_proj",
        conv1d=True,
        prefix_space=True,
    ),
    Family(
        "llama",
        (
            "llama",
            "mistral",
            "mixtral",
            "qwen2",
            "qwen3",
            "qwen2_moe",
            "gemma",
            "gemma2",
            "gemma3_text",
            "olmo",
            "olmo2",
            "smollm3",
            "granite",
            "cohere",
            "stablelm",
            "starcoder2",
        ),
        decoder=True,
        value="self_attn.v_proj",
        output="self_attn.o_proj",
        query="self_attn.q_proj",
        key="self_attn.k_proj",
    ),
    Family(
        "causal-lm",
        (
            "gpt_neo",
            "gpt_neox",
            "gptj",
            "phi",
            "phi3",
            "opt",
            "bloom",
            "falcon",
            "codegen",
            "ctrl",
            "xglm",
        ),
        decoder=True,
    ),
):
    FAMILIES[_family.name] = _family


@functools.lru_cache(maxsize=256)
def _by_type(model_type: str) -> tuple[Family, ...]:
    return tuple(f for f in FAMILIES.values() if model_type in f.model_types)


def families_of(model_type: str) -> tuple[Family, ...]:
    """The table entries naming ``model_type`` (the most specific last)."""
    return _by_type(str(model_type))


def is_decoder_type(model_type: str) -> bool:
    """True when the table says ``model_type`` is a causal language model."""
    return any(f.decoder for f in families_of(model_type))


def needs_prefix_space(model_type: str) -> bool:
    """True when ``model_type``'s tokenizer needs ``add_prefix_space`` for pre-split words."""
    return any(f.prefix_space for f in families_of(model_type))


#: Modules of a task head on top of the transformer (pooler, language-model and classifier
#: heads). A checkpoint may lack them, or carry ones the loaded class does not use, without
#: changing any attention weight: loading tolerates (and reports) such weights, and refuses any
#: other missing or unexpected weight.
HEAD_MODULES = frozenset(
    {
        "pooler",
        "lm_head",
        "cls",
        "classifier",
        "pre_classifier",
        "classification_head",
        "qa_outputs",
        "score",
        "final_logits_bias",
        "seq_relationship",
        "vocab_transform",
        "vocab_layer_norm",
        "vocab_projector",
        "lm_loss",
        "sop_classifier",
    }
)


def is_head_weight(key: str) -> bool:
    """True for a task-head weight (:data:`HEAD_MODULES`), e.g. ``bert.pooler.dense.weight``."""
    return any(part in HEAD_MODULES for part in key.split("."))


def supported_families() -> str:
    """A readable list of the families whose projections are known."""
    names = [f.name for f in FAMILIES.values() if f.has_projections]
    return ", ".join(names)


# ---------------------------------------------------------------------------------- model facts


@functools.lru_cache(maxsize=128)
def _forward_parameters(cls: Any) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(cls.forward).parameters)
    except (TypeError, ValueError):
        return frozenset()


def forward_accepts(model: Any, name: str) -> bool:
    """True when ``model.forward`` takes an argument called ``name``."""
    cls: Any = type(model)
    return name in _forward_parameters(cls)


# ------------------------------------------------------------------------ structure of a model


@dataclass(frozen=True)
class AttentionLayer:
    """Where one layer's attention projections live and how to read them.

    Attributes:
        block: the transformer block (``BertLayer``, ``GPT2Block``, ``LlamaDecoderLayer``, ...).
        attention: the module computing the attention (parent of ``value``); its input hidden
            states are the block's attention input.
        value: the module whose output holds the values.
        value_slice: the part of ``value``'s output that is the values (fused qkv), or ``None``.
        out: the output projection; its input is ``(batch, seq, heads * head_dim)``.
        out_weight: ``W_O`` split by head, ``(heads, head_dim, hidden)``.
        query, key: modules whose outputs hold the queries and keys (may be ``value``).
        query_slice, key_slice: their parts of a fused output, or ``None``.
    """

    block: Any
    attention: Any
    value: Any
    value_slice: slice | None
    out: Any
    out_weight: Any
    query: Any = None
    key: Any = None
    query_slice: slice | None = None
    key_slice: slice | None = None


@dataclass(frozen=True)
class Structure:
    """The attention layers of one model, found by :func:`find_structure`."""

    family: str
    layers: tuple[AttentionLayer, ...]
    n_heads: int
    n_kv_heads: int
    head_dim: int


def module_at(module: Any, path: str | None) -> Any:
    """The sub-module at dotted ``path`` (``None`` when any part is missing)."""
    if path is None:
        return None
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def _candidates(model_type: str) -> list[Family]:
    own = [f for f in families_of(model_type) if f.has_projections]
    rest = [f for f in FAMILIES.values() if f.has_projections and f not in own]
    return own + rest


def _layer(block: Any, family: Family, n_heads: int) -> AttentionLayer | None:
    out = module_at(block, family.output)
    fused = module_at(block, family.fused_qkv)
    value = fused if family.fused_qkv else module_at(block, family.value)
    if out is None or value is None or getattr(out, "weight", None) is None:
        return None
    w = out.weight.detach()
    w_in_out = w if family.conv1d else w.T
    width = int(w_in_out.shape[0])
    head_dim = width // n_heads
    if head_dim * n_heads != width:
        return None
    if fused is not None:
        q, k, v = (slice(i * width, (i + 1) * width) for i in range(3))
        return AttentionLayer(
            block,
            module_at(block, family.fused_qkv.rpartition(".")[0]),  # type: ignore[union-attr]
            fused,
            v,
            out,
            w_in_out.reshape(n_heads, head_dim, -1),
            fused,
            fused,
            q,
            k,
        )
    path = family.value or ""
    return AttentionLayer(
        block,
        module_at(block, path.rpartition(".")[0]) if "." in path else block,
        value,
        None,
        out,
        w_in_out.reshape(n_heads, head_dim, -1),
        module_at(block, family.query),
        module_at(block, family.key),
    )


def find_structure(
    model: Any,
    *,
    model_type: str,
    n_layers: int,
    n_heads: int,
    n_kv_heads: int,
    feature: str,
    exclude: Sequence[Any] = (),
) -> Structure:
    """Find the attention projections of every layer of ``model``.

    Looks for a :class:`torch.nn.ModuleList` of ``n_layers`` blocks (outside ``exclude``, e.g.
    an encoder stack) and tries the family table's paths on its blocks, ``model_type``'s own
    families first.

    Raises:
        UnsupportedModelError: naming ``feature`` when no known layout fits.
    """
    import torch

    skipped = {id(m) for part in exclude for m in part.modules()}
    for module in model.modules():
        if id(module) in skipped:
            continue
        if not isinstance(module, torch.nn.ModuleList) or len(module) != n_layers:
            continue
        for family in _candidates(model_type):
            layers = [_layer(block, family, n_heads) for block in module]
            if all(layer is not None for layer in layers):
                found = tuple(layer for layer in layers if layer is not None)
                return Structure(
                    family.name, found, n_heads, n_kv_heads, int(found[0].out_weight.shape[1])
                )
    raise UnsupportedModelError(
        f"{feature} does not support model type {model_type!r} ({type(model).__name__}): no "
        f"value / output projections of a known layout were found. Known layouts: "
        f"{supported_families()}; add yours with inspector.models.register_family(...)"
    )


__all__ = [
    "FAMILIES",
    "HEAD_MODULES",
    "AttentionLayer",
    "Family",
    "Structure",
    "families_of",
    "find_structure",
    "forward_accepts",
    "is_decoder_type",
    "is_head_weight",
    "module_at",
    "needs_prefix_space",
    "register_family",
    "supported_families",
]
