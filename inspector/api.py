"""The facade: ``load`` → :class:`LoadedModel` → ``inspect`` → :class:`Inspection`.

Convenience methods (frames, exports, views, reports, metrics) live here and delegate to the pure
modules below; the data classes of :mod:`inspector.capture` never render or measure themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import compare as _compare
from . import frames as _frames
from . import metrics as _metrics
from .capture import AttentionStack, Capture, Tokens, capture
from .errors import InputError
from .loading import ModelBundle, list_embedded, load_model


def load(
    model: Any,
    tokenizer: Any = None,
    *,
    device: str | None = None,
    dtype: Any = None,
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
) -> LoadedModel:
    """Load a model for attention inspection.

    Args:
        model: ``"minilm"`` (embedded all-MiniLM-L6-v2), ``"smollm2"``, a local folder, a hub id,
            or an already-built ``(model, tokenizer)`` pair.
        tokenizer: optional tokenizer (object, folder or hub id).
        device: torch device, e.g. ``"cuda"``.
        dtype: e.g. ``"float16"``; attention is always returned as float32.
        trust_remote_code: let a model folder run its own code (off unless you ask).
        gguf_file: name of a GGUF file inside the folder ``model``.

    Example:
        >>> m = inspector.load("minilm")  # doctest: +SKIP
        >>> ins = m.inspect("The cat sat on the mat.")  # doctest: +SKIP
        >>> ins.attention.shape  # doctest: +SKIP
        (6, 12, 9, 9)
    """
    return LoadedModel(
        load_model(
            model,
            tokenizer,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            gguf_file=gguf_file,
        )
    )


class LoadedModel:
    """A model loaded with eager attention, in eval mode. Create it with :func:`load`."""

    def __init__(self, bundle: ModelBundle) -> None:
        if not isinstance(bundle, ModelBundle):
            raise InputError("LoadedModel wraps a ModelBundle; use inspector.load(...)")
        self.bundle = bundle

    @property
    def model(self) -> Any:
        return self.bundle.model

    @property
    def tokenizer(self) -> Any:
        return self.bundle.tokenizer

    @property
    def name(self) -> str:
        return self.bundle.name

    def __repr__(self) -> str:
        b = self.bundle
        return (
            f"LoadedModel({b.name!r}, {b.model_type}, {b.architecture}, "
            f"{b.n_layers} layers x {b.n_heads} heads, {b.n_parameters / 1e6:.1f}M params)"
        )

    def inspect(
        self,
        text: str,
        text_pair: str | None = None,
        *,
        target: str | None = None,
        truncation: bool = False,
        max_length: int | None = None,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
    ) -> Inspection:
        """Run the model on ``text`` (and ``text_pair``) and capture every head's attention.

        Args:
            text: the input.
            text_pair: optional second text of a sentence pair.
            target: decoder input for encoder-decoder models.
            truncation: keep the first ``max_length`` (default: the model's limit) tokens
                instead of raising on longer inputs.
            max_length: a lower token limit than the model's.
            layers, heads: keep only these indexes (negative counts from the end).

        Returns:
            An :class:`Inspection`; ``attention`` has shape ``(layer, head, query, key)``.
        """
        cap = capture(
            self.bundle,
            text,
            text_pair,
            target=target,
            truncation=truncation,
            max_length=max_length,
            layers=layers,
            heads=heads,
        )
        return Inspection(cap)

    def detect_heads(self, **kw: Any) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores; see :func:`detect_heads`."""
        return detect_heads(self, **kw)


class Inspection:
    """One input's captured attention, with frames, exports and views.

    For self-attention models ``tokens`` / ``attention`` describe the single stack. For
    encoder-decoder models use ``.encoder``, ``.decoder`` and ``.cross``, which are Inspections of
    one stack each (cross attention is ``(layer, head, decoder_query, encoder_key)``).
    """

    def __init__(self, capture: Capture, kind: str | None = None) -> None:
        if not isinstance(capture, Capture):
            raise InputError("Inspection wraps a Capture; use LoadedModel.inspect(...)")
        if kind is None and not capture.is_encoder_decoder:
            kind = "self"
        if kind is not None and kind not in capture.stacks:
            raise InputError(f"no {kind!r} attention here; available: {list(capture.stacks)}")
        self.capture = capture
        self.kind = kind

    # ------------------------------------------------------------------ structure
    def _part(self, kind: str) -> Inspection:
        if not self.capture.is_encoder_decoder:
            raise InputError(
                f".{kind} is for encoder-decoder models; this model has self-attention "
                f"only: use .attention and .tokens"
            )
        return Inspection(self.capture, kind)

    @property
    def encoder(self) -> Inspection:
        return self._part("encoder")

    @property
    def decoder(self) -> Inspection:
        return self._part("decoder")

    @property
    def cross(self) -> Inspection:
        return self._part("cross")

    @property
    def stack(self) -> AttentionStack:
        if self.kind is None:
            raise InputError(
                "this is an encoder-decoder inspection: choose .encoder, .decoder or .cross first"
            )
        return self.capture.stacks[self.kind]

    @property
    def is_encoder_decoder(self) -> bool:
        return self.capture.is_encoder_decoder

    # ------------------------------------------------------------------ data
    @property
    def attention(self) -> np.ndarray:
        """float32 ``(layer, head, query, key)``, read-only, rows sum to 1."""
        return self.stack.weights

    @property
    def tokens(self) -> list[str]:
        """Query-side tokens as the tokenizer shows them."""
        return list(self.stack.query.tokens)

    @property
    def key_tokens(self) -> list[str]:
        return list(self.stack.key.tokens)

    @property
    def token_ids(self) -> np.ndarray:
        return self.stack.query.ids

    @property
    def special_mask(self) -> np.ndarray:
        return self.stack.query.special

    @property
    def word_ids(self) -> np.ndarray:
        return self.stack.query.word_ids

    @property
    def token_info(self) -> Tokens:
        return self.stack.query

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.capture.metadata)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].layers

    @property
    def heads(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].heads

    def __repr__(self) -> str:
        m = self.capture.metadata
        parts = ", ".join(
            f"{k} {tuple(s.weights.shape)}"
            for k, s in self.capture.stacks.items()
            if self.kind in (None, k)
        )
        return f"Inspection({m.get('model_name')!r}, {parts})"

    # ------------------------------------------------------------------ frames
    def frame(
        self,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
    ) -> pd.DataFrame:
        """Long tidy frame: ``layer, head, query_pos, key_pos, query_token, key_token, weight``.

        Encoder-decoder inspections (not narrowed to one part) add a leading ``kind`` column.
        ``level="word"`` merges sub-word pieces into words (rows still sum to 1).
        """
        kinds = None if self.kind is None else [self.kind]
        return _frames.capture_frame(
            self.capture,
            kinds=kinds,
            layers=layers,
            heads=heads,
            level=level,  # type: ignore[arg-type]
        )

    def tokens_frame(self) -> pd.DataFrame:
        """One row per token: position, token, id, word id, sequence, special, offsets."""
        return _frames.tokens_frame(self.stack.query)

    def to_parquet(self, path: str | os.PathLike[str], **frame_kw: Any) -> Path:
        """Write :meth:`frame` with its metadata to Parquet (read back with ``read_parquet``)."""
        return self._write(path, ".parquet", frame_kw)

    def to_csv(self, path: str | os.PathLike[str], **frame_kw: Any) -> Path:
        """Write :meth:`frame` to CSV for spreadsheets."""
        return self._write(path, ".csv", frame_kw)

    def _write(self, path: str | os.PathLike[str], suffix: str, frame_kw: dict[str, Any]) -> Path:
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"{path}: expected a file name ending in {suffix}")
        return _frames.write_frame(self.frame(**frame_kw), path)

    # ------------------------------------------------------------------ head analysis
    def head_metrics(self, names: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Per-head metrics indexed by ``(layer, head)``; see :mod:`inspector.metrics`."""
        return _metrics.head_metrics(self.stack, names)

    def head_roles(
        self, thresholds: _metrics.RoleThresholds | None = None, **overrides: float
    ) -> pd.DataFrame:
        """Each head's role (previous, next, self, sink, broad, punctuation or other)."""
        return _metrics.head_roles(self.head_metrics(), thresholds, **overrides)

    def layer_summary(self) -> pd.DataFrame:
        """Per-layer mean entropy / distance and the share of each head role."""
        return _metrics.layer_summary(self.head_metrics())

    def detector_scores(self) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores of every head on this input."""
        return _metrics.detector_scores(self.stack)

    def head_similarity(self, method: str = "js") -> pd.DataFrame:
        """Distance between every pair of heads, square on ``(layer, head)`` (``js``/``cosine``)."""
        return _metrics.head_distance_frame(self.stack, method)

    def head_clusters(self, method: str = "js", **kw: Any) -> pd.DataFrame:
        """Hierarchical clusters and dendrogram order of the heads (see ``cluster_heads``)."""
        return _metrics.cluster_heads(self.head_similarity(method), **kw)

    def head_embedding(self, method: str = "js") -> pd.DataFrame:
        """2-D classical MDS coordinates ``x, y`` of the heads, for plotting."""
        return _metrics.head_embedding(self.head_similarity(method))

    def nearest_heads(
        self, layer: int, head: int, k: int = 5, *, method: str = "js"
    ) -> pd.DataFrame:
        """The ``k`` heads whose attention is closest to head ``(layer, head)``."""
        return _metrics.nearest_heads(self.head_similarity(method), layer, head, k)

    def compare(self, other: Inspection) -> _compare.Comparison:
        """Head-by-head comparison with another inspection; see :func:`inspector.compare`."""
        return _compare.compare(self, other)


# --------------------------------------------------------------------------- many inputs


def _stacks(
    model: LoadedModel,
    texts: Sequence[str] | str,
    kind: str | None,
    truncation: bool,
    max_length: int | None,
) -> Any:
    """Lazily inspect each text and yield its stack of ``kind`` (default: self or encoder)."""
    if not isinstance(model, LoadedModel):
        raise InputError(f"model must be a LoadedModel from inspector.load, not {type(model)}")
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise InputError("no texts given; pass a list of strings")
    for text in texts:
        ins = model.inspect(text, truncation=truncation, max_length=max_length)
        part = kind or ("encoder" if ins.is_encoder_decoder else "self")
        if part not in ins.capture.stacks:
            raise InputError(f"no {part!r} attention; available: {list(ins.capture.stacks)}")
        yield ins.capture.stacks[part]


def head_metrics(
    model: LoadedModel,
    texts: Sequence[str] | str,
    names: Sequence[str] | str | None = None,
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Per-head metrics averaged over many texts: means, ``<metric>_std`` and ``n``.

    Example:
        >>> inspector.head_metrics(m, ["The cat sat.", "A dog barked."])  # doctest: +SKIP
    """
    stacks = _stacks(model, texts, kind, truncation, max_length)
    return _metrics.aggregate_head_metrics(stacks, names)


def head_similarity(
    model: LoadedModel,
    texts: Sequence[str] | str,
    method: str = "js",
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
) -> pd.DataFrame:
    """Head-to-head distances averaged over many texts, square on ``(layer, head)``."""
    stacks = _stacks(model, texts, kind, truncation, max_length)
    return _metrics.mean_head_distances(stacks, method)


def detect_heads(
    model: LoadedModel,
    *,
    n_tokens: int = 24,
    n_samples: int = 4,
    seed: int = 0,
    kind: str | None = None,
) -> pd.DataFrame:
    """Score every head as previous-token, duplicate-token and induction head.

    Runs the model on ``n_samples`` random word sequences repeated twice (words drawn from the
    tokenizer's vocabulary) and averages :func:`inspector.metrics.detector_scores`. Works for
    causal and bidirectional models (for the latter, "earlier" means "any other" occurrence).
    """
    if n_samples < 1:
        raise InputError(f"n_samples must be at least 1, got {n_samples}")
    tok = model.tokenizer
    words = _metrics.vocabulary_words(tok.get_vocab(), tok.all_special_tokens)
    texts = [
        _metrics.repeated_random_text(words, n_tokens, seed=seed + i) for i in range(n_samples)
    ]
    limit = model.bundle.max_positions
    frames = [
        _metrics.detector_scores(stack)
        for stack in _stacks(model, texts, kind, limit is not None, None)
    ]
    return pd.concat(frames).groupby(level=["layer", "head"]).mean()


def compare(a: Any, b: Any, *, labels: tuple[str, str] | None = None) -> _compare.Comparison:
    """Compare two inspections head by head (see :mod:`inspector.compare`)."""
    return _compare.compare(a, b, labels=labels)


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :meth:`Inspection.to_parquet` (metadata: ``attrs['inspector']``)."""
    return _frames.read_parquet(path)


__all__ = [
    "Inspection",
    "LoadedModel",
    "compare",
    "detect_heads",
    "head_metrics",
    "head_similarity",
    "list_embedded",
    "load",
    "read_parquet",
]
