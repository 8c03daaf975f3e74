"""Model-family facts in one table, and the attention structure found on a loaded model.

Every fact inspector needs about an architecture lives here, as data (:class:`Family`, one entry
per family in :data:`FAMILIES`, extended with :func:`register_family`):

* ``decoder``: a causal language model, used only when neither the config nor the model says
  (see :func:`inspector.models.loading.classify`);
* ``value`` / ``output``: where a transformer block keeps its value projection and the attention
  output projection (norm-based attention and head ablation read and gate them); ``cross_value``
  / ``cross_output`` the same for the cross attention of an encoder-decoder's decoder block;
* ``query`` / ``key``: the query and key projections (the neuron view reads them);
* ``fused_qkv``: one module computing queries, keys and values together (GPT-2's ``c_attn``);
* ``shared_prefix``: head ablation may share the layers below each ablated layer between rows;
* ``prefix_space``: its byte-level tokenizer needs ``add_prefix_space=True`` for pre-split words.

Structure found on the model wins over names: :func:`inspector.models.structure.find_structure`
starts from the attention modules the model runs and uses these paths where they fit, structure
otherwise. Adding a family is one :class:`Family` entry.

Nothing here runs a model or registers hooks (:mod:`inspector.capture.hooks` does).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Literal

from .._registry import Registry
from ..errors import InputError


@dataclass(frozen=True)
class Family:
    """What inspector knows about one family of architectures.

    Attributes:
        name: the family's name (``"bert"``, ``"gpt2"``, ``"llama"``, ...).
        model_types: ``config.model_type`` values of the family.
        decoder: True for causal language models (a hint when the model does not say).
        value, output: dotted paths of the value projection and of the attention output
            projection inside one transformer block (``None``: found by structure).
        query, key: dotted paths of the query and key projections.
        fused_qkv: dotted path of a module whose output holds queries, keys and values (then
            ``value`` is not needed; the layout is checked where values are used).
        cross_value, cross_output: the same for the cross attention of a decoder block.
        conv1d: the projections store weights ``(in, out)`` (GPT-2's ``Conv1D``; also detected).
        prefix_space: the tokenizer needs ``add_prefix_space=True`` for pre-split words.
        shared_prefix: head ablation may run the layers below an ablated layer once for all rows
            (the attention module takes ``hidden_states`` first and its other inputs broadcast
            over the batch); plain batches otherwise.
    """

    name: str
    model_types: tuple[str, ...]
    decoder: bool = False
    value: str | None = None
    output: str | None = None
    query: str | None = None
    key: str | None = None
    fused_qkv: str | None = None
    cross_value: str | None = None
    cross_output: str | None = None
    conv1d: bool = False
    prefix_space: bool = False
    shared_prefix: bool = True

    def __post_init__(self) -> None:
        if not self.name or not self.model_types:
            raise InputError("a Family needs a name and at least one model_type")
        if self.fused_qkv is None and (self.value is None) != (self.output is None):
            raise InputError(f"family {self.name!r}: give both value= and output=, or neither")

    @property
    def has_projections(self) -> bool:
        """True when the value and output projections are named (otherwise found by structure)."""
        return self.output is not None and (self.value is not None or self.fused_qkv is not None)


Architecture = Literal["encoder", "decoder", "encoder-decoder"]
Modality = Literal["text", "image"]


def _families_changed() -> None:
    by_type = globals().get("_by_type")  # defined below; absent while the table is first filled
    if by_type is not None:
        by_type.cache_clear()


FAMILIES: Registry[Family] = Registry("family", on_change=_families_changed)
"""The family table, name -> :class:`Family`. Extend it with :func:`register_family`
(``FAMILIES.scoped()`` restores it when a block ends)."""


def register_family(family: Family, *, overwrite: bool = False) -> None:
    """Add ``family`` to the table (``overwrite=True`` replaces an entry of the same name).

    Example:
        >>> register_family(Family("mygpt", ("mygpt",), decoder=True,
        ...     value="attn.v", output="attn.o", query="attn.q", key="attn.k"))  # doctest: +SKIP
    """
    if not isinstance(family, Family):
        raise InputError(f"register_family takes a Family, not {type(family).__name__}")
    FAMILIES.register(family.name, family, overwrite=overwrite)


_BERT_PATHS: dict[str, Any] = {
    "value": "attention.self.value",
    "output": "attention.output.dense",
    "query": "attention.self.query",
    "key": "attention.self.key",
}


def _proj_paths(module: str, output: str) -> dict[str, Any]:
    """The paths of an attention ``module`` with ``q_proj`` / ``k_proj`` / ``v_proj``
    projections and the output projection ``output``."""
    return {
        "value": f"{module}.v_proj",
        "output": f"{module}.{output}",
        "query": f"{module}.q_proj",
        "key": f"{module}.k_proj",
    }


_LLAMA_PATHS = _proj_paths("self_attn", "o_proj")
_BART_PATHS: dict[str, Any] = {
    **_proj_paths("self_attn", "out_proj"),
    "cross_value": "encoder_attn.v_proj",
    "cross_output": "encoder_attn.out_proj",
}
_T5_PATHS: dict[str, Any] = {
    "value": "layer.0.SelfAttention.v",
    "output": "layer.0.SelfAttention.o",
    "query": "layer.0.SelfAttention.q",
    "key": "layer.0.SelfAttention.k",
    "cross_value": "layer.1.EncDecAttention.v",
    "cross_output": "layer.1.EncDecAttention.o",
}
for _family in (
    # ------------------------------------------------------------------------------ encoders
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
        "albert",
        ("albert",),
        value="albert_layers.0.attention.value",
        output="albert_layers.0.attention.dense",
        query="albert_layers.0.attention.query",
        key="albert_layers.0.attention.key",
        shared_prefix=False,  # its attention module adds the residual itself
    ),
    Family(
        "mpnet",
        ("mpnet",),
        value="attention.attn.v",
        output="attention.attn.o",
        query="attention.attn.q",
        key="attention.attn.k",
    ),
    Family(
        "deberta",
        ("deberta", "deberta-v2"),
        value="attention.self.value_proj",
        output="attention.output.dense",
    ),
    Family("modernbert", ("modernbert",), fused_qkv="attn.Wqkv", output="attn.Wo"),
    # ------------------------------------------------------------------------------ decoders
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
        **_LLAMA_PATHS,
    ),
    Family("phi", ("phi",), decoder=True, **_proj_paths("self_attn", "dense")),
    Family(
        "phi3", ("phi3",), decoder=True, fused_qkv="self_attn.qkv_proj", output="self_attn.o_proj"
    ),
    Family("gptj", ("gptj", "codegen"), decoder=True, **_proj_paths("attn", "out_proj")),
    Family("opt", ("opt", "xglm"), decoder=True, **_proj_paths("self_attn", "out_proj")),
    Family(
        "gpt_neox",
        ("gpt_neox",),
        decoder=True,
        fused_qkv="attention.query_key_value",
        output="attention.dense",
    ),
    Family(
        "bloom",
        ("bloom",),
        decoder=True,
        fused_qkv="self_attention.query_key_value",
        output="self_attention.dense",
        shared_prefix=False,  # ALiBi biases are built per batch row outside the blocks
    ),
    Family(
        "falcon",
        ("falcon",),
        decoder=True,
        fused_qkv="self_attention.query_key_value",
        output="self_attention.dense",
    ),
    Family("causal-lm", ("gpt_neo", "ctrl"), decoder=True),
    # ----------------------------------------------------------------------- encoder-decoders
    Family("t5", ("t5", "mt5", "longt5", "umt5"), **_T5_PATHS),
    Family(
        "bart",
        ("bart", "mbart", "pegasus", "marian", "led", "blenderbot", "m2m_100"),
        **_BART_PATHS,
    ),
):
    FAMILIES.register(_family.name, _family)


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
    """A readable list of the families whose projections are named in the table."""
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


def modality(model: Any) -> Modality:
    """``image`` for a model that reads ``pixel_values`` and no ``input_ids``, else ``text``."""
    if forward_accepts(model, "pixel_values") and not forward_accepts(model, "input_ids"):
        return "image"
    return "text"


def classify(model: Any) -> Architecture:
    """``encoder``, ``decoder`` or ``encoder-decoder``, read from the model itself.

    In order: the config's ``is_encoder_decoder`` and ``is_decoder``; the model's generation
    capability (a class that generates and is not an encoder-decoder is a causal LM); the
    ``is_causal`` flag of its attention modules (a bare decoder such as ``LlamaModel``); only
    when none of these says, the config's architecture names and the family table's hint.
    """
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if getattr(config, "is_decoder", False):
        return "decoder"
    can_generate = getattr(model, "can_generate", None)
    if callable(can_generate) and can_generate():
        return "decoder"
    flags = [
        m.is_causal for m in model.modules() if isinstance(getattr(m, "is_causal", None), bool)
    ]
    if flags:
        return "decoder" if any(flags) else "encoder"
    return config_architecture(config)


def config_architecture(config: Any) -> Architecture:
    """The architecture as far as a config alone tells (before the model exists)."""
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    if getattr(config, "is_decoder", False):
        return "decoder"
    archs = " ".join(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "")
    if "CausalLM" in archs or "LMHead" in archs or is_decoder_type(model_type):
        return "decoder"
    return "encoder"


def hidden_size(config: Any) -> int | None:
    """The width of the residual stream of a (text or vision) config."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def key_value_heads(model: Any, n_heads: int) -> int:
    """Key/value heads of ``model`` (grouped-query and multi-query attention), read from its
    attention modules where they say (Falcon's multi-query flag), else from its config."""
    for module in model.modules():
        for name in ("num_kv_heads", "num_key_value_heads"):
            value = getattr(module, name, None)
            if isinstance(value, int) and 0 < value <= n_heads and module is not model:
                return value
        groups = getattr(module, "num_key_value_groups", None)
        if isinstance(groups, int) and groups > 0 and n_heads % groups == 0:
            return n_heads // groups
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    value = getattr(cfg or model.config, "num_key_value_heads", None)
    return value if isinstance(value, int) and 0 < value <= n_heads else n_heads


# ------------------------------------------------------------------------ residual-stream facts

#: Buffers some models add to the unembedding's output (BART-family ``final_logits_bias``).
LOGIT_BIAS_BUFFERS = ("final_logits_bias",)


def _text_config(config: Any) -> Any:
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def residual_multiplier(config: Any) -> float:
    """The factor each block applies to a sublayer's output before adding it to the residual
    stream (Granite's ``residual_multiplier``; 1 for every other family)."""
    value = getattr(_text_config(config), "residual_multiplier", None)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1.0


def logit_transform(config: Any) -> tuple[float, float | None]:
    """``(scale, softcap)`` a language model applies to its unembedding's output: Cohere
    multiplies by ``logit_scale``, Granite divides by ``logits_scaling``; Gemma 2 soft-caps
    at ``final_logit_softcapping`` (``cap * tanh(logit / cap)``; ``None``: no cap)."""
    cfg = _text_config(config)
    scale = 1.0
    mul = getattr(cfg, "logit_scale", None)
    if isinstance(mul, int | float) and not isinstance(mul, bool):
        scale *= float(mul)
    div = getattr(cfg, "logits_scaling", None)
    if isinstance(div, int | float) and not isinstance(div, bool) and div:
        scale /= float(div)
    cap = getattr(cfg, "final_logit_softcapping", None)
    return scale, float(cap) if isinstance(cap, int | float) and cap else None


def activation_candidates(config: Any) -> list[tuple[str, Any]]:
    """``(name, function)`` of the elementwise activations a masked LM's head transform may
    apply (the config's ``hidden_act`` / ``activation`` first, then the common ones): the
    trace keeps the one that reproduces what the model computed."""
    from transformers.activations import ACT2FN

    config = _text_config(config)
    names = [getattr(config, a, None) for a in ("hidden_act", "activation")]
    names += ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "tanh"]
    out = []
    for name in dict.fromkeys(n for n in names if isinstance(n, str)):
        if name in ACT2FN:
            out.append((name, ACT2FN[name]))
    return out


def logit_biases(model: Any) -> list[Any]:
    """The bias buffers ``model`` adds to its logits (:data:`LOGIT_BIAS_BUFFERS`)."""
    found = [getattr(model, name, None) for name in LOGIT_BIAS_BUFFERS]
    return [b for b in found if b is not None and hasattr(b, "reshape")]


__all__ = [
    "FAMILIES",
    "HEAD_MODULES",
    "LOGIT_BIAS_BUFFERS",
    "Architecture",
    "Family",
    "Modality",
    "activation_candidates",
    "classify",
    "config_architecture",
    "families_of",
    "forward_accepts",
    "hidden_size",
    "is_decoder_type",
    "is_head_weight",
    "key_value_heads",
    "logit_biases",
    "logit_transform",
    "modality",
    "needs_prefix_space",
    "register_family",
    "residual_multiplier",
    "supported_families",
]
