"""From the last block's output to the logits: the steps between them, frozen and checked, and
the unembedding direction of a token.

Between a decoder's last block and its unembedding sit its final norms (T5 rescales their
output by a constant too); a masked LM's head also transforms the representation first (BERT:
``dense -> GELU -> LayerNorm``). :func:`final_steps` finds those steps among the modules the
pass called, in call order, and freezes each (:mod:`.frozen`): norms at the model's own scale,
the activation at its own gate, each step checked against what the model computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnsupportedModelError
from ..models.families import activation_candidates, logit_biases, logit_transform
from ..models.loading import ModelBundle
from .frozen import fit_gate, frozen_linear
from .residual import Record, Wiring, _close, _fit, _matches, _scalar


def final_steps(rec: Record, wiring: Wiring, bundle: ModelBundle) -> tuple[list[Any], float]:
    """The frozen steps between the last block and the unembedding (checked), and the scalar
    ``c`` with ``lm_head input = c * their output`` (T5 rescales by ``d_model ** -0.5``)."""
    name = bundle.name
    last = wiring.n_layers - 1
    lo, hi = rec.when(f"out{last}"), rec.when("head_in")
    modules = [(n, m, False) for n, m in wiring.outer_norms]
    modules += [(n, m, True) for n, m in wiring.head_linears]
    called = sorted(
        (rec.when(f"{n}:out"), n, m, linear)
        for n, m, linear in modules
        if lo < rec.when(f"{n}:out") < hi
    )
    x = rec.get(f"out{last}")
    steps: list[Any] = []
    for _order, step, module, linear in called:
        given = rec.get(f"{step}:in")
        if steps and not _matches(given, x):
            # the map between a head's dense layer and its norm: an elementwise activation
            steps.append(fit_gate(activation_candidates(bundle.model.config), x, given, step))
            x = given
        _close(given, x, f"{step} does not read the last block's output", name)
        steps.append(frozen_linear(module, step) if linear else _fit(rec, step, module))
        x = rec.get(f"{step}:out")
    scale = _scalar(x, rec.get("head_in"))
    if scale is None:
        raise UnsupportedModelError(
            f"{name}: the unembedding does not read the final norm's output (up to a "
            f"constant); its residual stream is wired in a way the trace does not follow"
        )
    return steps, scale


def unembedding(
    bundle: ModelBundle, wiring: Wiring, token: int, against: int | None
) -> tuple[np.ndarray, float]:
    """The logit direction ``(W_U[token] - W_U[against]) * scale`` and its bias term (the
    unembedding's bias and any bias buffer the model adds to its logits)."""
    w = wiring.lm_head.weight
    scale, _cap = logit_transform(bundle.model.config)
    g = w[token].detach().double().cpu().numpy()
    b = 0.0
    biases = [wiring.lm_head.bias, *logit_biases(bundle.model)]
    for bias in biases:
        if bias is not None:
            b += float(bias.reshape(-1)[token])
    if against is not None:
        g = g - w[against].detach().double().cpu().numpy()
        for bias in biases:
            if bias is not None:
                b -= float(bias.reshape(-1)[against])
    return g * scale, b * scale


__all__ = ["final_steps", "unembedding"]
