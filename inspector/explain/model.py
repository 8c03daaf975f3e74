"""How explain methods find their way around a model and feed it.

The projections come from :func:`inspector.models.families.find_structure` (the family table,
structure first); the inputs come from the one tokenization path
(:func:`inspector.capture.tokenize.encode` / :func:`~inspector.capture.tokenize.model_inputs`).
"""

from __future__ import annotations

from typing import Any

from ..capture.tokenize import encode, model_inputs
from ..capture.types import Tokens
from ..errors import InputError, UnsupportedModelError
from ..models.families import Structure, find_structure, supported_families
from ..models.loading import ModelBundle


def structure(bundle: ModelBundle, feature: str) -> Structure:
    """The attention projections of every layer of ``bundle``'s model, found once and kept."""
    if bundle.architecture == "encoder-decoder":
        raise UnsupportedModelError(
            f"{feature} does not support encoder-decoder models ({bundle.model_type}); it "
            f"supports self-attention models of the families {supported_families()}. Rollout and "
            f"attention flow work on any stack"
        )
    found = bundle.extra.get("structure")
    if found is None:
        found = bundle.extra["structure"] = find_structure(
            bundle.model,
            model_type=bundle.model_type,
            n_layers=bundle.n_layers,
            n_heads=bundle.n_heads,
            n_kv_heads=bundle.n_kv_heads,
            feature=feature,
        )
    return found


def inputs_for(bundle: ModelBundle, source: str | Tokens | Any, pair: str | None = None) -> Any:
    """Model inputs (batch of 1) for a text (tokenized as ``inspect`` does, too-long inputs
    refused), the tokens of a capture, or ready inputs (a mapping with ``input_ids``)."""
    if isinstance(source, Tokens):
        return model_inputs(bundle, [source])
    if isinstance(source, str):
        return model_inputs(bundle, [encode(bundle, source, pair).tokens])
    if hasattr(source, "keys") and "input_ids" in source:
        return source
    raise InputError(
        f"expected a text, the Tokens of a capture or model inputs, not {type(source).__name__}"
    )


def check_head(bundle: ModelBundle, layer: int, head: int) -> None:
    """Raise unless ``(layer, head)`` exists in ``bundle``'s model."""
    if not (0 <= layer < bundle.n_layers and 0 <= head < bundle.n_heads):
        raise InputError(
            f"head ({layer}, {head}) is out of range: the model has {bundle.n_layers} layers x "
            f"{bundle.n_heads} heads"
        )


__all__ = ["check_head", "inputs_for", "structure"]
