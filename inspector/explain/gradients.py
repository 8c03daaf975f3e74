"""Token attributions that are not attention: gradients (captum), leave-one-out occlusion and a
seeded random ranking, as explainer entries with token scores.

* ``gradient_x_input`` - captum's ``LayerGradientXActivation`` on the input embedding layer: the
  embedding times the gradient of the target, summed over the hidden dimension;
* ``integrated_gradients`` - captum's ``LayerIntegratedGradients`` on the input embedding layer
  (Sundararajan et al. 2017; 50 Gauss-Legendre steps from a baseline that replaces every
  content token by the padding token and keeps the special tokens, captum's BERT tutorial's
  reference), summed over the hidden dimension;
* ``occlusion`` - leave-one-out: ``target(full) - target(token deleted)``, all deletions of one
  input in memory-planned batches (:class:`~.perturbation.Deletions`);
* ``random`` - a seeded random ranking, the floor every other method should beat.

The gradients explain the quantity the faithfulness scores measure
(:func:`~.perturbation.measured_target`: the target's probability where it has one). Captum
runs the model through :func:`inspector.capture.perturb.embedding_attributions`. Special tokens
get a score of 0 from ``occlusion`` (they are never deleted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..analysis.faithfulness import random_scores
from ..capture.memory import MemoryLimit
from ..capture.perturb import embedding_attributions, id_inputs, last_logits_only
from ..capture.run import forward
from ..capture.tokenize import pad_id
from ..errors import InputError
from . import builtin as _builtin  # noqa: F401  (the built-in entries come first)
from .perturbation import deletions_for, measured_target
from .registry import Explainer, ExplainRequest, _head_kind, register_explainer
from .target import resolve_target

#: Integrated gradients' default number of steps (captum's default).
IG_STEPS = 50


def token_frame(request: ExplainRequest, scores: np.ndarray) -> pd.DataFrame:
    """``position, token, special, score`` of every input token."""
    tokens = request.tokens
    return pd.DataFrame(
        {
            "position": np.arange(len(tokens), dtype=np.int64),
            "token": list(tokens.readable or tokens.tokens),
            "special": np.asarray(tokens.special, dtype=bool),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )


def gradient_scores(
    request: ExplainRequest,
    method: str,
    *,
    n_steps: int = IG_STEPS,
    internal_batch_size: int | None = None,
) -> np.ndarray:
    """Captum's attribution of the measured target to each input token, ``(n,)``."""
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise InputError(f"n_steps must be a positive integer, got {n_steps!r}")
    bundle = request.model(method)
    if request.capture.is_encoder_decoder or request.capture.image is not None:
        raise InputError(f"{method} attributes text tokens of encoder or decoder models")
    tokens = request.tokens
    ids = np.asarray(tokens.ids, dtype=np.int64)[None]
    inputs = id_inputs(bundle, ids, np.asarray(tokens.type_ids)[None])
    call_kw = last_logits_only(bundle) if _head_kind(bundle) == "decoder" else {}
    clean = forward(bundle, inputs, **call_kw)
    resolved = resolve_target(measured_target(request.target), bundle, inputs, clean)

    def score(out: Any) -> Any:
        return resolved.fn(out).reshape(-1)

    baseline = None
    if method == "integrated_gradients":
        import torch

        ref = np.where(np.asarray(tokens.special, dtype=bool), ids[0], pad_id(bundle))[None]
        baseline = torch.as_tensor(ref, device=inputs["input_ids"].device)
    attr = embedding_attributions(
        bundle,
        inputs,
        score,
        method=method,  # type: ignore[arg-type]
        baseline_ids=baseline,
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
        call_kw=call_kw,
    )
    return attr.sum(axis=-1)


def _gradient_x_input(request: ExplainRequest) -> pd.DataFrame:
    return token_frame(request, gradient_scores(request, "gradient_x_input"))


def _integrated_gradients(
    request: ExplainRequest, *, n_steps: int = IG_STEPS, internal_batch_size: int | None = None
) -> pd.DataFrame:
    scores = gradient_scores(
        request, "integrated_gradients", n_steps=n_steps, internal_batch_size=internal_batch_size
    )
    return token_frame(request, scores)


def occlusion_scores(
    request: ExplainRequest, *, max_memory: MemoryLimit | None = None
) -> np.ndarray:
    """Leave-one-out: ``target(full) - target(token i deleted)`` (0 for special tokens)."""
    deletions = deletions_for(request, max_memory=max_memory)
    out = np.zeros(len(request.tokens), dtype=np.float64)
    out[deletions.content] = deletions.leave_one_out()
    return out


def _occlusion(request: ExplainRequest, *, max_memory: MemoryLimit | None = None) -> pd.DataFrame:
    return token_frame(request, occlusion_scores(request, max_memory=max_memory))


def _random(request: ExplainRequest, *, seed: int = 0) -> pd.DataFrame:
    return token_frame(request, random_scores(request.tokens.ids.tolist(), seed))


ATTRIBUTION_EXPLAINERS = (
    Explainer(
        "gradient_x_input",
        _gradient_x_input,
        "tokens",
        "model",
        "gradient x input",
        lambda r: gradient_scores(r, "gradient_x_input"),
        "captum's LayerGradientXActivation on the input embeddings, summed over the hidden size",
    ),
    Explainer(
        "integrated_gradients",
        _integrated_gradients,
        "tokens",
        "model",
        "integrated gradients",
        lambda r: gradient_scores(r, "integrated_gradients"),
        "captum's LayerIntegratedGradients on the input embeddings (50 steps, padding baseline)",
    ),
    Explainer(
        "occlusion",
        _occlusion,
        "tokens",
        "model",
        "leave-one-out occlusion",
        occlusion_scores,
        "the target's drop when one token is deleted (all deletions batched)",
    ),
    Explainer(
        "random",
        _random,
        "tokens",
        "weights",
        "random (floor)",
        lambda r: random_scores(r.tokens.ids.tolist(), 0),
        "a seeded random ranking: the floor a faithful map must beat",
    ),
)

for _entry in ATTRIBUTION_EXPLAINERS:
    register_explainer(_entry)

__all__ = [
    "ATTRIBUTION_EXPLAINERS",
    "IG_STEPS",
    "gradient_scores",
    "occlusion_scores",
    "token_frame",
]
