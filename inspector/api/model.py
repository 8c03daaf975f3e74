"""The facade's entry: :func:`load` → :class:`LoadedModel` (inspect, generate, detect heads).

Every facade function that needs a model takes a :data:`ModelLike`: a :class:`LoadedModel`, a
short name (``"minilm"``), a folder, a ``.gguf`` file, a hub id, or a ``(model, tokenizer)``
pair; :func:`as_model` turns any of them into a :class:`LoadedModel`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import pandas as pd

from .._progress import bar as progress_bar
from ..analysis import detectors as _detectors
from ..capture.generation import generate as _generate
from ..capture.image import is_image
from ..capture.memory import MemoryLimit
from ..capture.options import InputOptions, Selection
from ..capture.run import capture as _capture
from ..capture.tokenize import readable_tokens as _readable
from ..capture.types import AttentionStack, storage_dtype
from ..capture.vision import capture_image as _capture_image
from ..errors import InputError
from ..models.loading import LoadOptions, ModelBundle, load_model
from .inspection import Inspection
from .scanning import resolve_bundle
from .scanning import scan as _scan

if TYPE_CHECKING:
    import numpy as np
    import PIL.Image
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: What every facade function accepts as a model.
ModelLike: TypeAlias = "LoadedModel | ModelBundle | str | os.PathLike[str] | tuple[Any, Any]"
#: An image for a vision transformer: a PIL image or an ``(h, w)`` / ``(h, w, 3|4)`` array.
ImageLike: TypeAlias = "PIL.Image.Image | np.ndarray"


def load(
    model: ModelLike,
    tokenizer: Any = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
    allow_pickle: bool = False,
    progress: bool = False,
) -> LoadedModel:
    """Load a model for attention inspection.

    Args:
        model: ``"minilm"`` (embedded all-MiniLM-L6-v2), ``"smollm2"``, a local folder, a
            ``.gguf`` file, a hub id, or an already-built ``(model, tokenizer)`` pair (a
            :class:`LoadedModel` is returned as it is).
        tokenizer: optional tokenizer (object, folder or hub id).
        device: torch device, e.g. ``"cuda"``.
        dtype: e.g. ``"float16"``; attention is always returned as float32.
        trust_remote_code: let a model folder run its own code (off unless you ask).
        gguf_file: name of a GGUF file inside the folder ``model``.
        allow_pickle: accept pickle weights (``pytorch_model.bin``) when no safetensors file
            exists; off by default because unpickling can run code.
        progress: show the GGUF dequantisation bar on stderr. Off by default: loading draws
            no bar (no "Loading weights" or GGUF bars, no Jupyter widget warning). A GGUF
            file's first load prints one line on stderr either way (dequantising, about how
            long, once).

    A GGUF file (the embedded ``smollm2`` is a 4-bit ``Q4_1`` GGUF) is dequantised on its first
    load and cached as float32 safetensors in ``~/.cache/inspector`` (``$INSPECTOR_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/inspector``), keyed by the file's SHA-256: later loads take a few
    seconds (:mod:`inspector.models.cache`).

    Example:
        >>> m = inspector.load("minilm")  # doctest: +SKIP
        >>> ins = m.inspect("The cat sat on the mat.")  # doctest: +SKIP
        >>> ins.attention.shape  # doctest: +SKIP
        (6, 12, 9, 9)
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, ModelBundle):
        return LoadedModel(model)
    options = LoadOptions(device, dtype, trust_remote_code, gguf_file, allow_pickle, progress)
    return LoadedModel(load_model(model, tokenizer, options))


def as_model(model: ModelLike) -> LoadedModel:
    """Any :data:`ModelLike` as a :class:`LoadedModel` (loading it when it is a name or path;
    :func:`~inspector.api.scanning.resolve_bundle`)."""
    return model if isinstance(model, LoadedModel) else LoadedModel(resolve_bundle(model))


class LoadedModel:
    """A model loaded with eager attention, in eval mode. Create it with :func:`load`."""

    def __init__(self, bundle: ModelBundle) -> None:
        if not isinstance(bundle, ModelBundle):
            raise InputError("LoadedModel wraps a ModelBundle; use inspector.load(...)")
        self.bundle = bundle

    @property
    def model(self) -> PreTrainedModel:
        """The ``transformers`` model."""
        return cast("PreTrainedModel", self.bundle.model)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """Its tokenizer."""
        return cast("PreTrainedTokenizerBase", self.bundle.tokenizer)

    @property
    def name(self) -> str:
        """What it was loaded as (short name, path or hub id)."""
        return self.bundle.name

    def __repr__(self) -> str:
        b = self.bundle
        return (
            f"LoadedModel({b.name!r}, {b.model_type}, {b.architecture}, "
            f"{b.n_layers} layers x {b.n_heads} heads, {b.n_parameters / 1e6:.1f}M params)"
        )

    def readable_tokens(self, tokens: Sequence[str]) -> list[str]:
        """Raw tokens (e.g. a frame's ``sink_token`` column) as this tokenizer decodes them,
        whitespace made visible: ``["Ġcapital", "Ċ"]`` → ``["␣capital", "⏎"]``."""
        tok = self.bundle.tokenizer
        special = set(getattr(tok, "all_special_tokens", ()) or ())
        names = [str(t) for t in tokens]
        return list(_readable(tok, names, [t in special for t in names]))

    def inspect(
        self,
        text: str | ImageLike | None = None,
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
        max_memory: int | str | None = None,
    ) -> Inspection:
        """Run the model on ``text`` (and ``text_pair``) and capture every head's attention.

        Args:
            text: the input; for a vision transformer (ViT, DeiT, CLIP/SigLIP vision towers) an
                image: a PIL image or an ``(h, w, 3)`` array, read through the model's image
                processor (tokens ``[CLS]`` and ``patch r,c``; only ``layers``, ``heads``,
                ``dtype`` and ``max_memory`` apply).
            text_pair: optional second text of a sentence pair.
            target: decoder input for encoder-decoder models.
            truncation: keep the first ``max_length`` (default: the model's limit) tokens
                instead of raising on longer inputs.
            max_length: a lower token limit than the model's.
            layers, heads: keep only these indexes (negative counts from the end); the others are
                never copied out of the model, so memory follows what is kept.
            messages: instead of ``text``, a chat ``[{"role": "user", "content": ...}, ...]``
                rendered with the tokenizer's chat template.
            add_generation_prompt: with ``messages``, end with the assistant's turn header.
            dtype: storage of the weights: ``"float32"`` (default) or ``"float16"``.
            max_memory: memory budget (``"4GB"``; default: what is free now). A capture that
                would not fit is refused with ``ResourceError`` before the model runs; long
                inputs belong in :meth:`scan`.

        Returns:
            An :class:`Inspection`; ``attention`` has shape ``(layer, head, query, key)``.
        """
        select, store, limit = (
            Selection.of(layers, heads),
            storage_dtype(dtype),
            MemoryLimit.of(max_memory),
        )
        if self.bundle.modality == "image" or is_image(text):
            others: dict[str, object] = {"text_pair": text_pair, "target": target}
            others.update(max_length=max_length, messages=messages)
            given = [k for k, v in others.items() if v is not None]
            if given or truncation or add_generation_prompt:
                raise InputError(
                    f"{', '.join(given) or 'truncation / add_generation_prompt'}: not for images; "
                    f"an image takes layers=, heads=, dtype= and max_memory="
                )
            image = _capture_image(self.bundle, text, select=select, dtype=store, max_memory=limit)
            return Inspection(image, model=self)
        if not isinstance(text, str) and text is not None:
            raise InputError(f"text must be a string, not {type(text).__name__}")
        options = InputOptions(
            text_pair=text_pair,
            target=target,
            truncation=truncation,
            max_length=max_length,
            messages=messages,
            add_generation_prompt=add_generation_prompt,
        )
        cap = _capture(self.bundle, text, options, select=select, dtype=store, max_memory=limit)
        return Inspection(cap, model=self)

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        chat: bool | None = None,
        max_new_tokens: int = 20,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        dtype: Any = None,
        do_sample: bool | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        generation_options: Mapping[str, Any] | None = None,
        max_memory: int | str | None = None,
    ) -> Inspection:
        """Generate from ``prompt`` (or a chat) and capture the attention of every step.

        Greedy unless you sample (``do_sample=True, temperature=0.7``). The inspection's tokens
        are prompt + generated tokens (``prompt_length`` tells them apart) and its attention is
        the full causal ``(layer, head, query, key)`` matrix; encoder-decoder models give
        ``.encoder``, ``.decoder`` and ``.cross``. See
        :func:`inspector.capture.generation.generate`.

        Args:
            prompt: the prompt (the encoder input for encoder-decoder models).
            messages: instead of ``prompt``, a chat rendered with the tokenizer's chat template.
            chat: send ``prompt`` through the chat template as one user message. ``None``
                (default): when the model is a decoder with a chat template (an instruct model
                such as ``smollm2`` answers a raw prompt with an end-of-turn token);
                ``False``: the raw prompt (base models, completions); ``True``: always.
            max_new_tokens: how many tokens to generate at most.
            layers, heads: keep only these indexes.
            dtype: storage of the weights, ``"float32"`` (default) or ``"float16"``.
            do_sample, temperature, top_k, top_p, repetition_penalty: sampling options passed to
                ``model.generate`` (left out when ``None``).
            generation_options: any other ``model.generate`` options (beam search is refused).
            max_memory: memory budget; refused before generating when it would not fit.

        Example:
            >>> ins = m.generate("What is the capital of France?")  # doctest: +SKIP
            >>> ins.metadata["generated_text"], ins.metadata["chat"]  # doctest: +SKIP
            ('The capital of France is Paris.', True)
        """
        options = dict(generation_options or {})
        named = {
            "do_sample": do_sample,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "repetition_penalty": repetition_penalty,
        }
        options.update({k: v for k, v in named.items() if v is not None})
        cap = _generate(
            self.bundle,
            prompt,
            messages=messages,
            chat=chat,
            max_new_tokens=max_new_tokens,
            select=Selection.of(layers, heads),
            dtype=storage_dtype(dtype),
            max_memory=MemoryLimit.of(max_memory),
            **options,
        )
        return Inspection(cap, model=self)

    #: ``m.scan(text, ...)`` is :func:`inspector.scan` with this model (one definition).
    scan = _scan

    def detect_heads(
        self, *, n_tokens: int = 24, n_samples: int = 4, seed: int = 0, kind: str | None = None
    ) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores; see :func:`detect_heads`."""
        return detect_heads(self, n_tokens=n_tokens, n_samples=n_samples, seed=seed, kind=kind)


def stacks_of(
    model: ModelLike,
    texts: Sequence[str] | str,
    kind: str | None,
    truncation: bool,
    max_length: int | None,
    *,
    progress: bool | None = False,
    max_memory: int | str | None = None,
) -> Iterator[AttentionStack]:
    """Lazily inspect each text and yield its stack of ``kind`` (default: self or encoder);
    each capture is checked against ``max_memory`` (default: what is free then)."""
    m = as_model(model)
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise InputError("no texts given; pass a list of strings")
    for text in progress_bar(texts, desc=m.name, unit=" texts", progress=progress):
        ins = m.inspect(text, truncation=truncation, max_length=max_length, max_memory=max_memory)
        part = kind or ("encoder" if ins.is_encoder_decoder else "self")
        if part not in ins.capture.stacks:
            raise InputError(f"no {part!r} attention; available: {list(ins.capture.stacks)}")
        stack: AttentionStack = ins.capture.stacks[part]
        yield stack


def detect_heads(
    model: ModelLike,
    *,
    n_tokens: int = 24,
    n_samples: int = 4,
    seed: int = 0,
    kind: str | None = None,
) -> pd.DataFrame:
    """Score every head as previous-token, duplicate-token and induction head.

    Runs the model on ``n_samples`` random token sequences repeated twice - ``n_tokens`` token
    ids drawn from the tokenizer's whole-word vocabulary entries, then the same ids again,
    between the tokenizer's special tokens: an exact token repeat, as induction-head work uses -
    and averages :func:`inspector.analysis.detectors.detector_scores`. Works for causal and
    bidirectional models (for the latter, "earlier" means "any other" occurrence). Returns a
    frame on ``(layer, head)``. Scores average over the rows that have an expected key, so
    duplicate/induction scores are about twice TransformerLens' ``detect_head`` (see
    :mod:`inspector.analysis.detectors`).
    """
    if n_samples < 1:
        raise InputError(f"n_samples must be at least 1, got {n_samples}")
    m = as_model(model)
    tok = m.tokenizer
    pool = _detectors.vocabulary_token_ids(tok.get_vocab(), tok.all_special_tokens)
    frames = []
    for i in range(n_samples):
        ids = _detectors.repeated_random_ids(pool, n_tokens, seed=seed + i)
        cap = _capture(m.bundle, token_ids=ids)
        part = kind or ("encoder" if cap.is_encoder_decoder else "self")
        if part not in cap.stacks:
            raise InputError(f"no {part!r} attention; available: {list(cap.stacks)}")
        frames.append(_detectors.detector_scores(cap.stacks[part]))
    return pd.concat(frames).groupby(level=["layer", "head"]).mean()


__all__ = ["LoadedModel", "ModelLike", "as_model", "detect_heads", "load"]
