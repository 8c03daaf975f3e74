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

from . import frames as _frames
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


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :meth:`Inspection.to_parquet` (metadata: ``attrs['inspector']``)."""
    return _frames.read_parquet(path)


__all__ = ["Inspection", "LoadedModel", "list_embedded", "load", "read_parquet"]
