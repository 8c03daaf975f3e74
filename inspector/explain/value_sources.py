"""Which of a layer's candidate value projections holds its attention values, found once per
model on a short probe input.

A structure lists several candidates per attention layer (LLaMA: ``v_proj``, then ``q_proj`` and
``k_proj``; GPT-2: the fused ``c_attn``), and :func:`~.norms.head_values` keeps the one whose
``Σ_j α_ij v_j`` reproduces the output projection's input. A trace that keeps every candidate's
output at every position holds them all: 5x the values themselves on SmolLM2 (0.9 GB at 8k
tokens). :func:`value_sources` runs the model once on the first :data:`PROBE_TOKENS` tokens
keeping every candidate, verifies each layer's, and keeps the answer with the model, so the long
pass keeps only the verified one (and :func:`~.norms.head_values` still verifies it there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import UnsupportedModelError
from ..models.loading import ModelBundle
from .norms import head_values

#: Tokens of the probe pass (enough rows to learn a constant bias after the projection).
PROBE_TOKENS = 16


def value_sources(
    bundle: ModelBundle, wiring: Any, inputs: Any, run: Callable[[Any, list[int]], Any]
) -> dict[int, int] | None:
    """``layer -> candidate index`` of a self-attention stack (``None``: keep every candidate:
    an encoder-decoder, or a layer no candidate reproduces on the probe). ``inputs``: the long
    pass's inputs; the probe runs their first :data:`PROBE_TOKENS` tokens through
    ``run(inputs, rows)`` (:func:`.residual.record` keeping every candidate)."""
    if wiring.kind != "self" or int(inputs["input_ids"].shape[-1]) <= PROBE_TOKENS:
        return None
    found = wiring.found
    if all(len(layer.values) == 1 for layer in found.layers):
        return {li: 0 for li in range(wiring.n_layers)}
    key = f"value_sources:{wiring.kind}"
    cached = bundle.extra.get(key)
    if cached is not None:
        return dict(cached)
    probe = {k: v[..., :PROBE_TOKENS] for k, v in inputs.items() if hasattr(v, "shape")}
    rows = list(range(PROBE_TOKENS))
    rec = run(probe, rows)
    assert rec.attention is not None
    chosen = {}
    for li, layer in enumerate(found.layers):
        alpha = rec.attention.rows(wiring.kind, li, rows)
        z = rec.values[(li, -1)]
        for si in range(len(layer.values)):
            one = {(li, -1): z, (li, si): rec.values[(li, si)]}
            try:
                head_values(found, layer, li, alpha, z, one, kind=wiring.kind, name=bundle.name)
            except (UnsupportedModelError, KeyError):
                continue
            chosen[li] = si
            break
        else:
            return None  # the long pass keeps all and says which failed
    bundle.extra[key] = dict(chosen)
    return chosen


__all__ = ["PROBE_TOKENS", "value_sources"]
