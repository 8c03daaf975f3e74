"""Run a loaded model on a batch of inputs and hand back one verified capture per input.

Inputs are tokenized one by one with :func:`inspector.capture.tokenize.encode` (exactly as a
single capture does), padded on the right into one batch and run with an ``attention_mask``
(:func:`~inspector.capture.tokenize.model_inputs`); the recorder copies every layer into one
``(batch, layer, head, query, key)`` buffer while the forward runs, and each input's unpadded
block is then cut out, so padded rows and columns never reach a statistic.

It never computes statistics; :mod:`inspector.corpus` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..models.loading import ModelBundle
from .run import bundle_metadata, out_of_memory_hint, record, stack_indexes
from .tokenize import Encoded, decoder_tokens, encode, model_inputs
from .types import ROW_SUM_TOLERANCE, AttentionStack, Capture, Tokens


@out_of_memory_hint
def forward_batch(
    bundle: ModelBundle, encoded: Sequence[Encoded], *, verify: bool = True
) -> list[Capture]:
    """Run one right-padded batch and return one capture per input, padding cut away.

    Args:
        bundle: a loaded model.
        encoded: inputs from :func:`~inspector.capture.tokenize.encode`.
        verify: check each block (finite, rows sum to 1, causal) like a single capture does.

    Returns:
        Captures equal (within float tolerance) to running each input alone: ``"self"`` stacks
        for self-attention models, ``"encoder"``/``"decoder"``/``"cross"`` for encoder-decoders
        (the decoder runs its start token only, as :func:`~inspector.capture.run.capture` does
        without a target).
    """
    if not encoded:
        return []
    inputs = model_inputs(bundle, [e.tokens for e in encoded])
    lengths = [len(e) for e in encoded]
    width = max(lengths)
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3) if verify else float("inf")
    meta = bundle_metadata(bundle)
    kinds = (
        ("encoder", "decoder", "cross") if bundle.architecture == "encoder-decoder" else ("self",)
    )
    layers, heads = stack_indexes(bundle, kinds, None, None)
    batch = len(encoded)

    def stack(w: np.ndarray, q: Tokens, k: Tokens, kind: str, causal: bool) -> AttentionStack:
        w = np.ascontiguousarray(w)
        return AttentionStack(w, q, k, kind, causal, layers[kind], heads[kind], tolerance)

    captures: list[Capture] = []
    if bundle.architecture == "encoder-decoder":
        dec = decoder_tokens(bundle, None)
        inputs["decoder_input_ids"] = model_inputs(bundle, [dec] * batch)["input_ids"]
        d = len(dec)
        shapes = {"encoder": (width, width), "decoder": (d, d), "cross": (d, width)}
        arrays = record(bundle, inputs, shapes, layers, heads, batch=batch)
        for i, e in enumerate(encoded):
            n = lengths[i]
            stacks = {
                "encoder": stack(
                    arrays["encoder"][i, :, :, :n, :n], e.tokens, e.tokens, "encoder", False
                ),
                "decoder": stack(arrays["decoder"][i], dec, dec, "decoder", True),
                "cross": stack(arrays["cross"][i, :, :, :, :n], dec, e.tokens, "cross", False),
            }
            captures.append(Capture(stacks, _meta(meta, e)))
        return captures

    weights = record(bundle, inputs, {"self": (width, width)}, layers, heads, batch=batch)["self"]
    causal = bundle.architecture == "decoder"
    for i, e in enumerate(encoded):
        n = lengths[i]
        s = stack(weights[i, :, :, :n, :n], e.tokens, e.tokens, "self", causal)
        captures.append(Capture({"self": s}, _meta(meta, e)))
    return captures


def _meta(base: dict[str, object], e: Encoded) -> dict[str, object]:
    meta = dict(base)
    meta.update(
        text=e.text, text_pair=None, target=None, truncated=e.truncated, storage_dtype="float32"
    )
    return meta


def capture_batch(
    bundle: ModelBundle,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    truncation: bool = False,
) -> list[Capture]:
    """Tokenize ``texts``, run them as one padded batch, return one capture per text.

    Example:
        >>> caps = capture_batch(bundle, ["The cat sat.", "A much longer sentence here."])
        ... # doctest: +SKIP
        >>> [c.stacks["self"].weights.shape for c in caps]  # doctest: +SKIP
        [(6, 12, 6, 6), (6, 12, 8, 8)]
    """
    encoded = [encode(bundle, t, max_length=max_length, truncation=truncation) for t in texts]
    return forward_batch(bundle, encoded)


__all__ = ["capture_batch", "forward_batch"]
