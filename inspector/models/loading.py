"""Load a Hugging Face model and tokenizer so that it returns real attention weights.

This is the only module that calls ``from_pretrained``. It never runs the model; ``capture`` does.
Model-family facts come from :mod:`inspector.models.families`.
It accepts a short name of an embedded model, a local folder, a hub id, or a ready
``(model, tokenizer)`` pair, always switches the model to the ``eager`` attention implementation
(under ``sdpa`` transformers 5 silently returns no attention weights) and puts it in eval mode.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InputError, InspectorWarning, ModelLoadError
from . import cache as _cache
from .checks import (
    check_gguf,
    first_line,
    folder_name,
    hub_reachable,
    hub_unreachable,
    in_hub_cache,
    looks_like_path,
    near_name,
    parse_dtype,
)
from .embedded import EMBEDDED, list_embedded
from .families import (
    Architecture,
    Modality,
    classify,
    config_architecture,
    key_value_heads,
    modality,
)
from .quiet import import_tqdm_quietly, load_progress
from .weights import check_device, check_loading_info, weights_format

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model ready for capture: eval mode, eager attention, no gradients.

    Attributes:
        model: the ``transformers`` model.
        tokenizer: its tokenizer (a fast tokenizer where one exists).
        name: what the caller asked for (short name, path or hub id).
        architecture: ``encoder``, ``decoder`` or ``encoder-decoder``.
        n_layers / n_heads: of the (first) attention stack: the encoder's for encoder-decoder
            models, whose decoder may differ (see :attr:`stacks`).
        n_kv_heads: key/value heads (differs from ``n_heads`` under grouped-query attention).
        max_positions: the longest input the model accepts, or ``None`` when unbounded.
        stacks: ``(layers, heads)`` of each attention stack by kind (``self``, or ``encoder``,
            ``decoder`` and ``cross``); see :meth:`stack_shape`.
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
    stacks: Mapping[str, tuple[int, int]] = field(default_factory=dict)
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

    def stack_shape(self, kind: str) -> tuple[int, int]:
        """``(layers, heads)`` of the attention stack ``kind`` (``self``, ``encoder``,
        ``decoder``, ``cross``); encoder-decoder models may have a deeper encoder than decoder,
        or other head counts."""
        shape = self.stacks.get(kind)
        return (self.n_layers, self.n_heads) if shape is None else shape

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
    if architecture == "encoder-decoder":
        enc_layers = _config_int(text_config, "encoder_layers", "num_layers") or n_layers
        enc_heads = _config_int(text_config, "encoder_attention_heads", "num_heads") or n_heads
        dec_layers = _config_int(text_config, "decoder_layers", "num_decoder_layers") or enc_layers
        dec_heads = _config_int(text_config, "decoder_attention_heads", "num_heads") or enc_heads
        stacks = {
            "encoder": (enc_layers, enc_heads),
            "decoder": (dec_layers, dec_heads),
            "cross": (dec_layers, dec_heads),
        }
        n_layers, n_heads = enc_layers, enc_heads
    else:
        stacks = {"self": (n_layers, n_heads)}
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
        stacks=stacks,
        modality=kind,
    )


def _force_eager(model: Any, name: str) -> None:
    """Switch ``model`` to eager attention, and check that the switch happened.

    transformers' ``set_attn_implementation`` only logs a warning for classes that read the
    implementation at run time instead of through its attention interface (Falcon before
    transformers 5.25); their
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
    # A module whose class was chosen for another implementation when the model was built
    # keeps running it whatever the config now says (transformers <= 5.24 built Falcon's
    # attention class per implementation; 5.25 moved it to the attention interface, so its
    # switch succeeds, but a remote-code class named ``...SdpaAttention`` is still built for
    # sdpa): look for one whether or not the switch reported success.
    built_for = sorted(
        {
            type(m).__name__
            for m in model.modules()
            if "sdpa" in type(m).__name__.lower() or "flash" in type(m).__name__.lower()
        }
    )
    if not built_for and getattr(model.config, "_attn_implementation", None) == "eager":
        return
    if not built_for:
        for module in model.modules():
            config: Any = getattr(module, "config", None)
            if hasattr(config, "_attn_implementation"):
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


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`load_model` loads a model, as one value (``inspector.load`` builds it once).

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ... (default: leave where it is / CPU).
        dtype: a ``torch.dtype`` or its name (``"float16"``); default: the checkpoint's.
        trust_remote_code: allow code from the model folder or hub repo to run. Off by default.
        gguf_file: file name of a GGUF checkpoint inside the folder ``model``.
        allow_pickle: allow weights stored as pickle (``pytorch_model.bin``, ``.pt``, ``.ckpt``)
            when no safetensors file exists. Off by default: unpickling a file from an
            untrusted source can run arbitrary code, safetensors cannot.
        progress: draw the dequantisation bar of a GGUF file's first (slow) load. Off by
            default: a load draws no bar (no "Loading weights" bar, no Jupyter "IProgress not
            found" warning). A GGUF file's first load always says so in one line on stderr
            (what it does, about how long, that later loads take seconds).
    """

    device: str | None = None
    dtype: str | torch.dtype | None = None
    trust_remote_code: bool = False
    gguf_file: str | None = None
    allow_pickle: bool = False
    progress: bool = False


#: The defaults: the checkpoint's dtype, where it is, no remote code, no pickle, no bar.
DEFAULT_LOAD = LoadOptions()


def load_model(
    model: Any, tokenizer: Any = None, options: LoadOptions = DEFAULT_LOAD
) -> ModelBundle:
    """Load ``model`` for attention capture.

    Args:
        model: a short name from :func:`list_embedded` (``"minilm"``), a local folder, a hub id, a
            ``(model, tokenizer)`` pair, or a ready model object (then pass ``tokenizer``).
        tokenizer: a tokenizer object or name/path; defaults to the model's own.
        options: device, dtype, remote code, GGUF file, pickle and progress
            (:class:`LoadOptions`).

    GGUF checkpoints are dequantised once and kept in the weights cache
    (:mod:`inspector.models.cache`, keyed by the GGUF file's SHA-256); later loads read the
    cached safetensors folder.

    Returns:
        A validated :class:`ModelBundle` in eval mode with eager attention.

    Example:
        >>> bundle = load_model("minilm")  # doctest: +SKIP
        >>> bundle.n_layers, bundle.n_heads  # doctest: +SKIP
        (6, 12)
    """
    if isinstance(model, str | os.PathLike):
        _refuse_unknown_name(os.fspath(model))  # at once: before torch and any network
    import_tqdm_quietly()
    import torch

    torch_dtype = parse_dtype(options.dtype)
    device, trust_remote_code = options.device, options.trust_remote_code
    check_device(device)
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
    source, gguf_file = name, options.gguf_file
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
    options = dataclasses.replace(options, gguf_file=gguf_file)
    if gguf_file and os.path.isdir(source):
        check_gguf(name, source, gguf_file)
        return _load_gguf(name, source, gguf_file, tokenizer, torch_dtype, options)
    return _load_from_source(name, source, tokenizer, torch_dtype, options)


def _refuse_unknown_name(name: str) -> None:
    """A path that does not exist, or a typo of an embedded name, is refused before loading."""
    if name in EMBEDDED or os.path.exists(name):
        return
    if looks_like_path(name):
        raise ModelLoadError(
            f"{name!r} does not exist; give a model folder, a hub id, or one of the embedded "
            f"names: {', '.join(list_embedded())}"
        )
    near = near_name(name, list_embedded())
    if near is not None:
        raise ModelLoadError(
            f"{name!r} is not an embedded name, a folder or a file; did you mean {near!r}? "
            f"(embedded: {', '.join(list_embedded())})"
        )
    if not hub_reachable() and not in_hub_cache(name):
        raise _unreachable(name)  # nothing to load: say so now, not after transformers' retries


def _unreachable(name: str) -> ModelLoadError:
    return ModelLoadError(
        f"{name!r} is not an embedded name ({', '.join(list_embedded())}) or a local "
        f"folder, and the Hugging Face hub could not be reached to download it "
        f"(offline or no network). Where the hub is reachable, run `hf download {name} "
        f"--local-dir {folder_name(name)}`, then load the folder: "
        f"inspector.load('./{folder_name(name)}') (CLI: inspector ... "
        f"./{folder_name(name)} ...)"
    )


def _load_gguf(
    name: str,
    source: str,
    gguf_file: str,
    tokenizer: Any,
    torch_dtype: torch.dtype | None,
    options: LoadOptions,
) -> ModelBundle:
    """A GGUF checkpoint through the weights cache: dequantised once, then read as safetensors.

    When the cache cannot be written (read-only home, full disk) the GGUF file is loaded
    directly, as without a cache. Neither runs remote code.
    """
    raw = LoadOptions(gguf_file=gguf_file, progress=options.progress)  # the GGUF as it is
    placed = dataclasses.replace(raw, device=options.device)
    path = os.path.join(source, gguf_file)
    key = _cache.file_sha256(path)
    folder = _cache.lookup(key)
    if folder is None:
        # Said whether or not a bar was asked for: the first load is the one long silent wait.
        print(_cache.first_load_note(name, path, gguf_file), file=sys.stderr, flush=True)
        built = _load_from_source(name, source, None, None, raw)
        try:
            folder = _cache.store(
                key,
                functools.partial(_cache.save_folder, built.model, built.tokenizer),
                source=path,
            )
        except OSError:
            if tokenizer is None and torch_dtype is None and options.device is None:
                return built
            del built
            return _load_from_source(name, source, tokenizer, torch_dtype, placed)
        del built
    try:
        cached = dataclasses.replace(placed, gguf_file=None)
        bundle = _load_from_source(name, str(folder), tokenizer, torch_dtype, cached)
    except Exception as exc:  # checked a moment ago; now unreadable or broken: use the GGUF
        warnings.warn(
            f"{name}: the weights cache entry {folder} could not be loaded "
            f"({first_line(exc)}); loading {gguf_file} directly instead",
            InspectorWarning,
            stacklevel=3,
        )
        return _load_from_source(name, source, tokenizer, torch_dtype, placed)
    _cache.realign(bundle.model)
    bundle.extra.update(gguf_file=gguf_file, weights_cache=str(folder))
    return dataclasses.replace(bundle, source=source)


def _load_tokenizer(tokenizer: Any, default: str, trust_remote_code: bool, **kw: Any) -> Any:
    if tokenizer is not None and not isinstance(tokenizer, str | os.PathLike):
        return tokenizer
    from transformers import AutoTokenizer

    source = os.fspath(tokenizer) if tokenizer is not None else default
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kw)
    except Exception as exc:
        raise ModelLoadError(
            f"{default}: could not load a tokenizer from {source!r} ({first_line(exc)}); "
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
            f"({first_line(exc)}); pass one with load((model, image_processor))"
        ) from exc
    finally:
        hf_logging.set_verbosity(verbosity)


def _load_from_source(
    name: str,
    source: str,
    tokenizer: Any,
    torch_dtype: torch.dtype | None,
    options: LoadOptions,
) -> ModelBundle:
    from transformers import AutoConfig

    trust_remote_code, gguf_file = options.trust_remote_code, options.gguf_file
    allow_pickle, device = options.allow_pickle, options.device

    kw: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    # A hub id where the hub cannot be reached: only the local hub cache, at once.
    offline = not os.path.exists(source) and not hub_reachable()
    if os.path.exists(source) or offline:
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
        if not os.path.exists(source) and (offline or hub_unreachable(exc)):
            raise _unreachable(name) from exc
        if not os.path.exists(source):
            raise ModelLoadError(
                f"unknown model {name!r}: not an embedded name ({', '.join(list_embedded())}), "
                f"not a folder, and not loadable from the hub ({first_line(exc)})"
            ) from exc
        raise ModelLoadError(
            f"{name}: could not read a model config from {source!r} ({first_line(exc)})"
        ) from exc
    if os.path.isdir(source) and not gguf_file:
        kw["use_safetensors"] = weights_format(name, source, allow_pickle)
    cls = _auto_class(config, config_architecture(config))
    load_kw = dict(kw, attn_implementation="eager", output_loading_info=True)
    if torch_dtype is not None:
        load_kw["dtype"] = torch_dtype
    try:
        with load_progress(options.progress, gguf=bool(gguf_file)):
            model, info = cls.from_pretrained(source, config=config, **load_kw)
    except Exception as exc:
        hint = ""
        if "eager" in str(exc):
            hint = "; this architecture has no 'eager' attention, which is needed for weights"
        raise ModelLoadError(
            f"{name}: could not load the weights from {source!r} ({first_line(exc)}){hint}"
        ) from exc
    random_heads = check_loading_info(name, source, info)
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
    bundle = _describe(_prepare(model), tok, name, source)
    if random_heads:
        bundle.extra["random_head_weights"] = random_heads
    return bundle
