"""Run a vision transformer on one image and keep its verified attention.

The image counterpart of :func:`inspector.capture.run.capture`: the image becomes tokens and
pixel values through the one input path (:func:`inspector.capture.tokenize.encode_image`), the
model runs through :func:`inspector.capture.run.record` (hooks on its attention modules), and the
capture keeps the image the model saw, so that reports can lay each head's attention over it.
"""

from __future__ import annotations

from typing import Any

from ..models.loading import ModelBundle
from . import memory as _memory
from .inputs import made_metadata
from .memory import MemoryLimit
from .options import ALL, Selection
from .run import capture_estimate, out_of_memory_hint, record
from .tokenize import encode_image, encoded_inputs
from .types import ROW_SUM_TOLERANCE, AttentionStack, Capture, storage_dtype


@out_of_memory_hint
def capture_image(
    bundle: ModelBundle,
    image: Any,
    *,
    select: Selection = ALL,
    dtype: str | None = None,
    max_memory: MemoryLimit | None = None,
) -> Capture:
    """Run ``bundle``'s vision transformer on ``image`` and return its verified attention.

    Args:
        image: a PIL image, or an array ``(h, w)`` / ``(h, w, 3|4)`` (uint8, or float in [0, 1]);
            the model's image processor resizes and normalises it.
        select: keep only these layers and heads (:class:`~.options.Selection`).
        dtype: storage of the weights, ``"float32"`` (default) or ``"float16"``.
        max_memory: the memory budget (default: what is free now); refused with
            ``ResourceError`` before the model runs when the capture would not fit (an image
            larger than :data:`~inspector.capture.image.MAX_PIXELS` is downscaled first).

    Returns:
        A :class:`Capture` with one ``"self"`` stack over ``[CLS]`` (and other prefix tokens)
        and the ``patch r,c`` tokens; ``image`` is the ``(h, w, 3)`` uint8 image the model saw.

    Example:
        >>> cap = capture_image(bundle, Image.open("cat.png"))  # doctest: +SKIP
        >>> cap.stacks["self"].query.tokens[:3]  # doctest: +SKIP
        ('[CLS]', 'patch 0,0', 'patch 0,1')
    """
    encoded = encode_image(bundle, image)
    layer_idx, head_idx = select.resolve(bundle.n_layers, bundle.n_heads)
    store = storage_dtype(dtype)
    n = len(encoded)
    with _memory.preflight(
        bundle.lock,
        lambda: capture_estimate(bundle, n, select=select, dtype=store, max_memory=max_memory),
        _memory.ADVICE["inspect"],
    ):
        arrays = record(
            bundle,
            encoded_inputs(bundle, encoded),
            {"self": (n, n)},
            layer_idx,
            head_idx,
            dtype=store,
        )
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
    stack = AttentionStack(
        arrays["self"][0],
        encoded.tokens,
        encoded.tokens,
        "self",
        False,
        layer_idx,
        head_idx,
        tolerance,
    )
    facts = {
        "input": "image",
        "image_grid": list(encoded.grid),
        "image_prefix": encoded.n_prefix,
        "image_size": [int(encoded.image.shape[0]), int(encoded.image.shape[1])],
    }
    meta = made_metadata(bundle, encoded.text, store, facts)
    return Capture({"self": stack}, meta, image=encoded.image)


__all__ = ["capture_image"]
