"""Run a loaded model on a batch of inputs and hand back one verified capture per input.

Inputs are tokenized one by one with :func:`inspector.capture.tokenize.encode` (exactly as a
single capture does), padded on the right into one batch and run with an ``attention_mask``
(:func:`~inspector.capture.tokenize.model_inputs`); the recorder copies every layer into one
``(batch, layer, head, query, key)`` buffer while the forward runs, and each input's unpadded
block is then cut out, so padded rows and columns never reach a statistic.

:func:`plan_batches` bounds what one pass holds: a batch whose estimate
(:func:`batch_bytes`) does not fit a share of the memory budget is split into smaller batches
of similar lengths, and a single text that cannot fit alone is refused before anything runs.

It never computes statistics; :mod:`inspector.corpus` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ResourceError
from ..models.loading import ModelBundle
from . import memory as _memory
from .memory import MemoryLimit
from .run import bundle_metadata, out_of_memory_advice, record, stack_indexes
from .tokenize import Encoded, decoder_tokens, encode, model_inputs
from .types import ROW_SUM_TOLERANCE, AttentionStack, Capture, Tokens

#: Share of the budget one batch may take (the model, the aggregates and Python hold the rest).
BATCH_SHARE = 0.5
#: A batch estimated above this share of the budget is risky: checkpoint before it.
RISKY_SHARE = 0.25


def batch_bytes(bundle: ModelBundle, batch: int, width: int, longest: int | None = None) -> int:
    """Estimated peak bytes of :func:`forward_batch` on ``batch`` inputs padded to ``width``.

    The recorder's ``(batch, layer, head, width, width)`` buffer and the per-input copies cut
    from it, the eager forward's transient (``batch x heads x width²`` scores and softmax),
    and the statistics of one input at a time (a few copies of its weights).
    """
    n_l, n_h = bundle.n_layers, bundle.n_heads
    kinds = 3 if bundle.architecture == "encoder-decoder" else 1
    longest = width if longest is None else longest
    kept = 2 * batch * _memory.attention_bytes(n_l, n_h, width, width) * kinds
    forward = _memory.forward_bytes(
        _memory.model_dims(bundle.model),
        n_heads=n_h,
        shapes={"self": (batch * width, width)},
        model_itemsize=_memory.itemsize(bundle.dtype),
        logits_rows=batch,
    )
    stats = 3 * _memory.attention_bytes(n_l, n_h, longest, longest)
    return int(kept + forward + stats)


@dataclass(frozen=True)
class BatchPlan:
    """Groups of input indexes to run as one pass each, with their estimates and the budget."""

    groups: tuple[tuple[int, ...], ...]
    costs: tuple[int, ...]
    budget: _memory.Budget

    @property
    def risky(self) -> bool:
        """True when a group takes more than :data:`RISKY_SHARE` of the budget."""
        return any(c > RISKY_SHARE * self.budget.bytes for c in self.costs)


def plan_batches(
    bundle: ModelBundle,
    lengths: Sequence[int],
    *,
    max_memory: MemoryLimit | None = None,
    budget: _memory.Budget | None = None,
) -> BatchPlan:
    """Split inputs of ``lengths`` tokens into passes that each fit :data:`BATCH_SHARE` of the
    budget: all at once when they fit (the order kept), else sorted by length and grouped
    greedily, so a 1,400-token outlier runs with its peers instead of widening every row.

    Raises:
        ResourceError: one input alone does not fit (say which, and what to do).
    """
    budget = budget or _memory.memory_budget(max_memory)
    limit = BATCH_SHARE * budget.bytes
    n = len(lengths)
    if n == 0:
        return BatchPlan((), (), budget)
    whole = batch_bytes(bundle, n, max(lengths))
    if whole <= limit:
        return BatchPlan((tuple(range(n)),), (whole,), budget)
    order = sorted(range(n), key=lambda i: (lengths[i], i))
    groups: list[tuple[int, ...]] = []
    costs: list[int] = []
    current: list[int] = []
    for i in order:
        cost = batch_bytes(bundle, len(current) + 1, lengths[i])
        if current and cost > limit:
            groups.append(tuple(current))
            costs.append(batch_bytes(bundle, len(current), lengths[current[-1]]))
            current = []
            cost = batch_bytes(bundle, 1, lengths[i])
        if not current and cost > limit:
            raise ResourceError(
                f"one text of {lengths[i]:,} tokens needs about {_memory.format_bytes(cost)} to "
                f"measure, more than half of the {budget}; nothing of this batch was run. "
                f"{_memory.ADVICE['atlas']}"
            )
        current.append(i)
    groups.append(tuple(current))
    costs.append(batch_bytes(bundle, len(current), lengths[current[-1]]))
    return BatchPlan(tuple(groups), tuple(costs), budget)


@out_of_memory_advice(_memory.ADVICE["atlas"])
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
    layers, heads = stack_indexes(bundle, kinds)
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


__all__ = ["BatchPlan", "batch_bytes", "capture_batch", "forward_batch", "plan_batches"]
