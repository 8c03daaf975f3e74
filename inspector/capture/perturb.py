"""Runs for explanations that change the input: token deletions in memory-planned batches, and
captum's gradient attributions on the input embeddings.

* :func:`id_inputs` turns rows of token ids (all the same length: deleted tokens are gone, not
  padded) into model inputs; :func:`rows_per_pass` is their memory pre-flight (the eager
  forward's transient of a batch, :func:`inspector.capture.memory.forward_bytes`, against a share
  of the budget), refusing before anything runs when one row alone does not fit.
* :func:`embedding_attributions` runs captum's ``LayerIntegratedGradients`` or
  ``LayerGradientXActivation`` on the model's input embedding layer. Captum calls the model
  itself, so the forward function it gets goes through :func:`inspector.capture.run.forward`
  and the whole call holds the model's lock (:func:`inspector.capture.hooks.hooked`), like every
  other pass: captum's own hook on the embedding layer is removed by captum before the lock is
  released. No ``.grad`` is written (captum uses ``torch.autograd.grad``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np

from ..errors import InputError, ResourceError, UnsupportedModelError
from ..models.families import forward_accepts
from ..models.loading import ModelBundle
from . import memory as _memory
from .hooks import hooked
from .memory import MemoryLimit
from .run import forward
from .tokenize import pad_id, takes_token_types

#: Share of the budget one pass of deleted inputs may take.
PASS_SHARE = 0.5
#: Default cap on rows per pass (larger CPU batches stop paying off well before memory runs out).
MAX_ROWS = 64

AttributionMethod = Literal["integrated_gradients", "gradient_x_input"]


def id_inputs(bundle: ModelBundle, ids: np.ndarray, type_ids: np.ndarray | None = None) -> Any:
    """Model inputs for ``(rows, length)`` token ids, no padding (every row is ``length`` long).

    ``type_ids`` (same shape) are passed as ``token_type_ids`` when the model takes them.
    """
    import torch

    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise InputError(f"token ids must be (rows, length) with length >= 1, got {ids.shape}")
    device = next(bundle.model.parameters()).device
    inputs: dict[str, Any] = {
        "input_ids": torch.from_numpy(ids.copy()).to(device),
        "attention_mask": torch.ones(ids.shape, dtype=torch.long, device=device),
    }
    if takes_token_types(bundle):
        types = np.zeros_like(ids) if type_ids is None else np.array(type_ids, dtype=np.int64)
        inputs["token_type_ids"] = torch.from_numpy(types).to(device)
    return inputs


def last_logits_only(bundle: ModelBundle) -> dict[str, Any]:
    """``logits_to_keep=1`` for a decoder that takes it (its target reads the last position)."""
    if bundle.architecture == "decoder" and forward_accepts(bundle.model, "logits_to_keep"):
        return {"logits_to_keep": 1}
    return {}


def pass_bytes(bundle: ModelBundle, rows: int, length: int, *, all_logits: bool) -> int:
    """Estimated peak bytes of one forward pass over ``rows`` inputs of ``length`` tokens."""
    dims = _memory.model_dims(bundle.model)
    has_vocab = getattr(bundle.model, "get_output_embeddings", lambda: None)() is not None
    logit_rows = (rows * length if all_logits else rows) if has_vocab else 0
    return _memory.forward_bytes(
        dims,
        n_heads=bundle.n_heads,
        shapes={"self": (rows * length, length)},
        model_itemsize=_memory.itemsize(bundle.dtype),
        logits_rows=logit_rows,
    )


def rows_per_pass(
    bundle: ModelBundle,
    length: int,
    *,
    all_logits: bool = True,
    max_rows: int = MAX_ROWS,
    budget: _memory.Budget | None = None,
    max_memory: MemoryLimit | None = None,
) -> int:
    """How many inputs of ``length`` tokens one pass may hold: at most ``max_rows``, and no more
    than fit :data:`PASS_SHARE` of the budget.

    Raises:
        ResourceError: one input alone does not fit (nothing was run).
    """
    budget = budget or _memory.memory_budget(max_memory)
    limit = PASS_SHARE * budget.bytes
    one = pass_bytes(bundle, 1, length, all_logits=all_logits)
    if one > limit:
        raise ResourceError(
            f"one deleted input of {length:,} tokens needs about {_memory.format_bytes(one)} to "
            f"run, more than half of the {budget}; nothing was run. Use shorter texts "
            f"(max_length=), or raise max_memory= if you know more is free"
        )
    rows = max(1, int(max_rows))
    while rows > 1 and pass_bytes(bundle, rows, length, all_logits=all_logits) > limit:
        rows //= 2
    return rows


def start_id(bundle: ModelBundle) -> int:
    """The token an input with every token deleted runs as (a model cannot run on none): the
    beginning-of-sequence token, else end-of-sequence, else the padding id."""
    tok = bundle.tokenizer
    for value in (getattr(tok, "bos_token_id", None), getattr(tok, "eos_token_id", None)):
        if value is not None:
            return int(value)
    return pad_id(bundle)


def embedding_attributions(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    score: Callable[[Any], Any],
    *,
    method: AttributionMethod,
    baseline_ids: Any = None,
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    call_kw: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """Captum's attributions of ``score`` to the input embeddings, ``(tokens, hidden)``.

    Args:
        bundle: a loaded model.
        inputs: model inputs of one text (batch of 1; ``input_ids`` and the rest).
        score: ``score(output) -> (batch,)`` tensor, the target of every row.
        method: ``integrated_gradients`` (captum's ``LayerIntegratedGradients``, Gauss-Legendre
            steps) or ``gradient_x_input`` (``LayerGradientXActivation``: the embedding times
            the gradient of the target with respect to it).
        baseline_ids: integrated gradients' baseline token ids, the shape of ``input_ids``.
        n_steps: integrated gradients' steps.
        internal_batch_size: rows per pass of the integrated gradients' steps.
        call_kw: extra keyword arguments of every model call.
    """
    import torch
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    getter = getattr(bundle.model, "get_input_embeddings", None)
    layer = getter() if callable(getter) else None
    if layer is None:
        raise UnsupportedModelError(
            f"{method} attributes to the input embeddings, and {type(bundle.model).__name__} "
            f"has none (get_input_embeddings() is None)"
        )
    names = [k for k in inputs if k != "input_ids"]
    extra_kw = dict(call_kw or {})

    def run(input_ids: Any, *extra: Any) -> Any:
        batch = {"input_ids": input_ids, **dict(zip(names, extra, strict=True))}
        return score(forward(bundle, batch, grad=True, **extra_kw))

    extra_args = tuple(inputs[k] for k in names)
    with hooked(bundle), torch.enable_grad():
        if method == "integrated_gradients":
            lig = LayerIntegratedGradients(run, layer)
            attr = lig.attribute(
                inputs["input_ids"],
                baselines=baseline_ids,
                additional_forward_args=extra_args or None,
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
            )
        elif method == "gradient_x_input":
            attr = LayerGradientXActivation(run, layer).attribute(
                inputs["input_ids"], additional_forward_args=extra_args or None
            )
        else:
            raise InputError(
                f"method must be 'integrated_gradients' or 'gradient_x_input', not {method!r}"
            )
    out: np.ndarray = attr[0].detach().double().cpu().numpy()
    return out


__all__ = [
    "MAX_ROWS",
    "PASS_SHARE",
    "embedding_attributions",
    "id_inputs",
    "last_logits_only",
    "pass_bytes",
    "rows_per_pass",
    "start_id",
]
