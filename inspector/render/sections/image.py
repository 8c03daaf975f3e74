"""The report's image section: a vision transformer's attention laid over the image it saw.

For a capture of an image (:func:`inspector.capture.vision.capture_image`) it shows the image as
the model saw it (after its processor resized and cropped it), attention rollout from ``[CLS]``
over it (Abnar & Zuidema's original use of rollout), and every head's map: the attention of
``[CLS]`` to each patch (models without a ``[CLS]`` token, SigLIP: the attention each patch
receives, averaged over all queries). Maps are made here as PNG images with Pillow and embedded as
``data:`` URLs, so the page needs no network and no script to draw them: the rollout overlay is
one composited picture; each head's map is a small RGBA heat map at patch resolution, laid over
one shared copy of the image by the stylesheet. Each map is coloured relative to its own largest
value (given in its tooltip).

Returns ``None`` for captures of text. Nothing here runs a model.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from ...capture.types import AttentionStack, Capture
from ...explain.flow import rollout
from ..section import ReportContext, Section, styled_section

#: The long side of the displayed image and rollout overlay, in pixels.
DISPLAY_SIZE = 320
#: Opacity of the heat maps over the image.
HEAT_ALPHA = 0.6
#: Colour stops of the heat maps (matplotlib's "inferno", dark to bright).
INFERNO = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64
)


def colormap(values: np.ndarray) -> np.ndarray:
    """``values`` in [0, 1] to uint8 RGB along :data:`INFERNO`, shape ``values.shape + (3,)``."""
    x = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(INFERNO) - 1)
    lo = np.minimum(np.floor(x).astype(int), len(INFERNO) - 2)
    t = (x - lo)[..., None]
    rgb = INFERNO[lo] * (1 - t) + INFERNO[lo + 1] * t
    out: np.ndarray = np.round(rgb).astype(np.uint8)
    return out


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of a uint8 ``(h, w, 3|4)`` array (Pillow)."""
    from PIL import Image

    mode = "RGBA" if pixels.shape[-1] == 4 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode).save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def patch_maps(stack: AttentionStack, n_prefix: int, grid: tuple[int, int]) -> np.ndarray:
    """Each head's attention over the patches, ``(layer, head, rows, cols)``: the ``[CLS]``
    row (the first query) when there are prefix tokens, else the mean over all query rows."""
    rows, cols = grid
    w = stack.weights[..., n_prefix : n_prefix + rows * cols].astype(np.float64)
    w = w[:, :, 0] if n_prefix else w.mean(axis=2)
    return w.reshape(*w.shape[:2], rows, cols)


def rollout_map(stack: AttentionStack, n_prefix: int, grid: tuple[int, int]) -> np.ndarray:
    """Attention rollout over all captured layers, as :func:`patch_maps` reads one head."""
    rows, cols = grid
    roll = rollout(stack)[:, n_prefix : n_prefix + rows * cols]
    line = roll[0] if n_prefix else roll.mean(axis=0)
    return np.asarray(line, dtype=np.float64).reshape(rows, cols)


def _scaled(values: np.ndarray) -> np.ndarray:
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)


def _upscale(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` with its long side ``size`` pixels (Pillow, bicubic)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / max(h, w)
    shape = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(shape, Image.Resampling.BICUBIC))


def overlay(image: np.ndarray, values: np.ndarray, *, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """``image`` (uint8 RGB) with the patch map ``values`` (``(rows, cols)``, scaled to its own
    maximum) laid over it: each patch a block of one colour, blended at ``alpha``."""
    from PIL import Image

    heat = colormap(_scaled(values))
    h, w = image.shape[:2]
    blocks = np.asarray(Image.fromarray(heat).resize((w, h), Image.Resampling.NEAREST))
    mixed = image.astype(np.float64) * (1 - alpha) + blocks.astype(np.float64) * alpha
    out: np.ndarray = np.round(mixed).astype(np.uint8)
    return out


def heat_rgba(values: np.ndarray, *, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """The patch map as an RGBA image at patch resolution (one pixel a patch)."""
    rgb = colormap(_scaled(values))
    a = np.full((*values.shape, 1), round(alpha * 255), dtype=np.uint8)
    return np.concatenate([rgb, a], axis=-1)


def image_context(capture: Capture) -> dict[str, Any] | None:
    """The template values of the image section, or ``None`` for a capture without an image."""
    if capture.image is None or "self" not in capture.stacks:
        return None
    meta = capture.metadata
    stack = capture.stacks["self"]
    grid = (int(meta["image_grid"][0]), int(meta["image_grid"][1]))
    n_prefix = int(meta.get("image_prefix", 0))
    image = capture.image
    shown = _upscale(image, DISPLAY_SIZE)
    roll = rollout_map(stack, n_prefix, grid)
    maps = patch_maps(stack, n_prefix, grid)
    heads = [
        [
            {
                "layer": layer,
                "head": head,
                "max": float(maps[li, hi].max()),
                "png": png_data_url(heat_rgba(maps[li, hi])),
            }
            for hi, head in enumerate(stack.heads)
        ]
        for li, layer in enumerate(stack.layers)
    ]
    query = stack.query.tokens[0] if n_prefix else "every token (mean)"
    return {
        "image": png_data_url(shown),
        "rollout": png_data_url(overlay(shown, roll)),
        "rollout_max": float(roll.max()),
        "heads": heads,
        "grid": list(grid),
        "query": query,
        "seen": [int(image.shape[1]), int(image.shape[0])],
        "shown": [int(shown.shape[1]), int(shown.shape[0])],
        "n_layers": len(stack.layers),
        "aspect": image.shape[1] / image.shape[0],
    }


def image_section(ctx: ReportContext) -> Section | None:
    """The image section of the default report (``None`` for text)."""
    return styled_section("image", "Attention on the image", image_context(ctx.capture))


__all__ = [
    "colormap",
    "heat_rgba",
    "image_context",
    "image_section",
    "overlay",
    "patch_maps",
    "png_data_url",
    "rollout_map",
]
