"""Loading models and the facts inspector knows about model families.

:mod:`.loading` is the only module that calls ``from_pretrained``; :mod:`.families` holds the one
table of per-family facts, :mod:`.structure` finds the projections on a loaded model. Nothing here
runs a model.
"""

from .families import FAMILIES, Family, forward_accepts, register_family
from .loading import (
    EMBEDDED,
    LoadOptions,
    ModelBundle,
    list_embedded,
    load_model,
    tokenizer_fingerprint,
)
from .structure import AttentionLayer, Structure, find_structure

__all__ = [
    "EMBEDDED",
    "FAMILIES",
    "AttentionLayer",
    "Family",
    "LoadOptions",
    "ModelBundle",
    "Structure",
    "find_structure",
    "forward_accepts",
    "list_embedded",
    "load_model",
    "register_family",
    "tokenizer_fingerprint",
]
