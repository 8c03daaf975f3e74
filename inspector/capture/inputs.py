"""The one input preparation of a capture and a scan: a text (a pair, a chat, or token ids)
checked, tokenized with :func:`~.tokenize.encode`, and recorded with the model's facts.

:func:`~.run.capture` and :func:`~.scan.scan_layout` both start here, so an input is the same
tokens whichever way it is measured. Nothing here runs the model.
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..models.loading import ModelBundle, tokenizer_fingerprint
from .options import InputOptions
from .tokenize import chat_text, check_text, encode, encode_ids
from .types import Tokens, kv_head_map


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: parsing package metadata costs ~10 ms, more than a short forward."""
    out = []
    for pkg in ("attention-inspector", "transformers", "torch", "tokenizers"):
        try:
            out.append((pkg, importlib.metadata.version(pkg)))
        except importlib.metadata.PackageNotFoundError:
            out.append((pkg, "unknown"))
    return tuple(out)


def bundle_metadata(bundle: ModelBundle) -> dict[str, Any]:
    """The model facts recorded with every capture."""
    return {
        "model_name": bundle.name,
        "model_source": bundle.source,
        "model_type": bundle.model_type,
        "model_class": type(bundle.model).__name__,
        "architecture": bundle.architecture,
        "n_layers": bundle.n_layers,
        "n_heads": bundle.n_heads,
        "n_kv_heads": bundle.n_kv_heads,
        "kv_heads": list(kv_head_map(bundle.n_heads, bundle.n_kv_heads)),
        "n_parameters": bundle.n_parameters,
        "max_positions": bundle.max_positions,
        "attn_implementation": bundle.attn_implementation,
        "tokenizer_fingerprint": tokenizer_fingerprint(bundle),
        "dtype": bundle.dtype,
        "device": bundle.device,
        "versions": dict(_installed_versions()),
    }


def made_metadata(
    bundle: ModelBundle, text: str, store: str, facts: Mapping[str, Any]
) -> dict[str, Any]:
    """The metadata of a capture whose input was made, not given as a text input (a
    generation, an image): the model's facts, ``text``, no pair, target or truncation, the
    storage dtype ``store``, then ``facts``."""
    meta = bundle_metadata(bundle)
    meta.update(text=text, text_pair=None, target=None, truncated=False, storage_dtype=store)
    meta.update(facts)
    return meta


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """A checked, tokenized input.

    Attributes:
        text: the text that was tokenized (the chat template's output for ``messages``).
        target: the checked decoder text, or ``None``.
        tokens: its tokens (the encoder's, for encoder-decoder models).
        metadata: the model's facts (:func:`bundle_metadata`) and the input's: ``text``,
            ``text_pair``, ``target``, ``truncated`` (and ``messages`` for a chat).
    """

    text: str
    target: str | None
    tokens: Tokens
    metadata: dict[str, Any]


def prepare_input(
    bundle: ModelBundle,
    text: str | None,
    options: InputOptions,
    token_ids: Sequence[int] | None = None,
) -> PreparedInput:
    """Check and tokenize one input: ``text`` (with ``options``), a chat
    (``options.messages``), or exactly ``token_ids`` between the tokenizer's special tokens.

    Raises:
        InputError: none or several of text, messages and token ids, an empty text, a target
            for a model without a decoder, or an input over the token limit.
    """
    add_special = True
    from_ids = None
    if token_ids is not None:
        if text is not None or options.text_pair is not None or options.messages is not None:
            raise InputError("give one of text, messages= or token_ids=")
        from_ids = encode_ids(bundle, token_ids)
        text = from_ids.text or " ".join(from_ids.tokens.tokens)
    elif options.messages is not None:
        if text is not None or options.text_pair is not None:
            raise InputError("give either text (and text_pair) or messages=, not both")
        text = chat_text(
            bundle, options.messages, add_generation_prompt=options.add_generation_prompt
        )
        add_special = False
    elif text is None:
        raise InputError("give the text to inspect, or a chat as messages=[...]")
    text = check_text(text, "text")
    target = options.target
    if target is not None:
        target = check_text(target, "target")
        if bundle.architecture != "encoder-decoder":
            raise InputError(
                "target= is for encoder-decoder models (T5, BART); use text_pair= for a second text"
            )
    encoded = from_ids or encode(
        bundle,
        text,
        options.text_pair,
        truncation=options.truncation,
        max_length=options.max_length,
        add_special_tokens=add_special,
    )
    meta = bundle_metadata(bundle)
    meta.update(text=text, text_pair=options.text_pair, target=target, truncated=encoded.truncated)
    if options.messages is not None:
        meta["messages"] = [dict(m) for m in options.messages]
    return PreparedInput(text, target, encoded.tokens, meta)


__all__ = ["PreparedInput", "bundle_metadata", "made_metadata", "prepare_input"]
