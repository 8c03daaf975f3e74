"""How explain methods find their way around a model and feed it.

The projections come from :func:`inspector.capture.run.stack_structure` (the attention modules
of every layer, then :func:`inspector.models.families.find_structure`: the family table, then
structure); the inputs come from the one tokenization path
(:func:`inspector.capture.tokenize.encode` / :func:`~inspector.capture.tokenize.model_inputs`).
"""

from __future__ import annotations

from typing import Any

from ..capture.run import stack_structure
from ..capture.tokenize import decoder_tokens, encode, encode_image, encoded_inputs, model_inputs
from ..capture.types import Capture, Tokens
from ..errors import InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from ..models.structure import Structure


def default_kind(bundle: ModelBundle) -> str:
    """The stack a method works on when none is named: ``self``, or an encoder-decoder's
    ``encoder``."""
    return "encoder" if bundle.architecture == "encoder-decoder" else "self"


def structure(bundle: ModelBundle, feature: str, kind: str | None = None) -> Structure:
    """The attention projections of every layer of one stack of ``bundle``'s model.

    Args:
        kind: ``self`` (self-attention models), or ``encoder`` / ``decoder`` / ``cross`` of an
            encoder-decoder (default: :func:`default_kind`).
    """
    kind = kind or default_kind(bundle)
    allowed = (
        ("encoder", "decoder", "cross") if bundle.architecture == "encoder-decoder" else ("self",)
    )
    if kind not in allowed:
        raise InputError(f"{feature}: {bundle.name} has no {kind!r} attention; one of {allowed}")
    return stack_structure(bundle, kind, feature)


def inputs_for(
    bundle: ModelBundle, source: str | Tokens | Capture | Any, pair: str | None = None
) -> Any:
    """Model inputs (batch of 1) for a text (tokenized as ``inspect`` does, too-long inputs
    refused), the tokens of a capture, a capture (an encoder-decoder's encoder and decoder
    tokens), or ready inputs (a mapping with ``input_ids``).

    An encoder-decoder given a text or tokens runs its decoder on the start token alone. A
    vision transformer's capture gives its image back to the image processor, which must
    reproduce the pixels the capture saw.
    """
    if isinstance(source, Capture) and source.image is not None:
        encoded = encode_image(bundle, source.image)
        if encoded.image.shape != source.image.shape or (encoded.image != source.image).any():
            raise UnsupportedModelError(
                f"{bundle.name}: its image processor does not give back the image this capture "
                f"saw (it resizes or crops it again), so the model cannot be run on the same "
                f"pixels; inspect the image again with this model"
            )
        return encoded_inputs(bundle, encoded)
    if isinstance(source, Capture):
        if not source.is_encoder_decoder:
            return model_inputs(bundle, [source.stacks["self"].query])
        inputs = model_inputs(bundle, [source.stacks["encoder"].query])
        dec = model_inputs(bundle, [source.stacks["decoder"].query])["input_ids"]
        return {**inputs, "decoder_input_ids": dec}
    if isinstance(source, Tokens | str):
        tokens = source if isinstance(source, Tokens) else encode(bundle, source, pair).tokens
        inputs = model_inputs(bundle, [tokens])
        if bundle.architecture == "encoder-decoder":
            start = model_inputs(bundle, [decoder_tokens(bundle, None)])["input_ids"]
            inputs["decoder_input_ids"] = start
        return inputs
    if hasattr(source, "keys") and ("input_ids" in source or "pixel_values" in source):
        return source
    raise InputError(
        f"expected a text, the Tokens of a capture, a capture or model inputs, not "
        f"{type(source).__name__}"
    )


def input_device(inputs: Any) -> Any:
    """The device of model inputs (their first tensor)."""
    return next(v for v in inputs.values() if hasattr(v, "device")).device


def check_head(bundle: ModelBundle, layer: int, head: int) -> None:
    """Raise unless ``(layer, head)`` exists in ``bundle``'s model."""
    if not (0 <= layer < bundle.n_layers and 0 <= head < bundle.n_heads):
        raise InputError(
            f"head ({layer}, {head}) is out of range: the model has {bundle.n_layers} layers x "
            f"{bundle.n_heads} heads"
        )


__all__ = ["check_head", "default_kind", "input_device", "inputs_for", "structure"]
