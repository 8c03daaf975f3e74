"""Images as tokens: a vision transformer's input through its own image processor.

The sibling of :mod:`.tokenize` for vision models (ViT, DeiT, CLIP's and SigLIP's vision towers),
used by that one path (:func:`inspector.capture.tokenize.encode_image`). The model's image
processor resizes, crops and normalises the image; the tokens are the model's own sequence: its
prefix tokens (``[CLS]``, DeiT's ``[DIST]``, register tokens), read from the embedding module's
parameters, then one ``patch r,c`` per patch in row-major order. The image the model saw (after
resizing and cropping, before normalisation) is kept as ``uint8`` RGB so that reports can lay
attention over it.

Processors only; nothing here runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..models.loading import ModelBundle
from .types import Tokens


@dataclass(frozen=True, eq=False)
class EncodedImage:
    """One image as a vision transformer reads it.

    Attributes:
        tokens: prefix tokens then ``patch r,c`` tokens.
        pixel_values: the processor's ``(1, 3, height, width)`` tensor.
        image: ``(height, width, 3)`` uint8: what the model saw, before normalisation.
        grid: ``(rows, cols)`` of patches.
        n_prefix: tokens before the first patch.
        text: a description of the input (``"image 640x480 -> 224x224"``).
    """

    tokens: Tokens
    pixel_values: Any
    image: np.ndarray
    grid: tuple[int, int]
    n_prefix: int
    text: str

    def __len__(self) -> int:
        return len(self.tokens)


def is_image(value: Any) -> bool:
    """True for a PIL image or an array shaped like one (``(h, w)``, ``(h, w, 3|4)``)."""
    if type(value).__module__.startswith("PIL.") and hasattr(value, "convert"):
        return True
    return isinstance(value, np.ndarray) and (
        value.ndim == 2 or (value.ndim == 3 and value.shape[-1] in (1, 3, 4))
    )


def _as_pil(image: Any) -> Any:
    from PIL import Image

    if not isinstance(image, np.ndarray):
        return image.convert("RGB")
    arr = image
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.size == 0 or min(arr.shape[:2]) < 1:
        raise InputError(f"the image is empty (shape {image.shape})")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("the image has NaN or infinite values")
        if arr.min() < 0 or arr.max() > 1:
            raise InputError(
                "a float image must hold values in [0, 1]; give uint8 (0..255) or a PIL image"
            )
        arr = np.round(arr * 255)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"an image array must be uint8 or float in [0, 1], not {arr.dtype}")
    elif arr.min() < 0 or arr.max() > 255:
        raise InputError("an integer image must hold values in 0..255")
    return Image.fromarray(arr.astype(np.uint8)).convert("RGB")


def prefix_tokens(model: Any) -> list[str]:
    """The tokens a vision transformer puts before its patches, read from its embeddings:
    ``cls_token`` / ``class_embedding`` → ``[CLS]``, ``distillation_token`` → ``[DIST]``,
    ``register_tokens`` → ``[REG i]``."""
    for module in model.modules():
        names = []
        if getattr(module, "cls_token", None) is not None or (
            getattr(module, "class_embedding", None) is not None
        ):
            names.append("[CLS]")
        if getattr(module, "distillation_token", None) is not None:
            names.append("[DIST]")
        registers = getattr(module, "register_tokens", None)
        if registers is not None and hasattr(registers, "shape"):
            names += [f"[REG {i}]" for i in range(int(registers.shape[-2]))]
        if names or hasattr(module, "patch_embeddings") or hasattr(module, "patch_embedding"):
            return names
    return []


def patch_size(model: Any) -> tuple[int, int]:
    """The model's patch size ``(height, width)`` from its config."""
    cfg = model.config
    value = getattr(cfg, "patch_size", None)
    if value is None and hasattr(cfg, "vision_config"):
        value = getattr(cfg.vision_config, "patch_size", None)
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise InputError(f"{type(model).__name__}: its config names no patch_size")


def encode_image(bundle: ModelBundle, image: Any) -> EncodedImage:
    """Run ``bundle``'s image processor on ``image`` and name the tokens the model will see.

    Args:
        image: a PIL image, or an array ``(h, w)`` / ``(h, w, 3|4)`` of uint8 or float in [0, 1].
    """
    if bundle.modality != "image":
        raise InputError(f"{bundle.name} reads text, not images; pass a string")
    if not is_image(image):
        raise InputError(
            f"expected a PIL image or an (h, w, 3) array, not {type(image).__name__}"
            + (f" of shape {image.shape}" if isinstance(image, np.ndarray) else "")
        )
    pil = _as_pil(image)
    processor = bundle.tokenizer
    pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
    if pixels.ndim != 4 or pixels.shape[0] != 1:
        raise InputError(
            f"the image processor returned pixel_values of shape {tuple(pixels.shape)}"
        )
    _, _, height, width = pixels.shape
    ph, pw = patch_size(bundle.model)
    rows, cols = height // ph, width // pw
    prefix = prefix_tokens(bundle.model)
    names = prefix + [f"patch {r},{c}" for r in range(rows) for c in range(cols)]
    n = len(names)
    special = np.zeros(n, dtype=bool)
    special[: len(prefix)] = True
    text = f"image {pil.width}x{pil.height} -> {width}x{height}"
    words = np.where(special, -1, np.arange(n) - len(prefix)).astype(np.int32)
    tokens = Tokens(
        tokens=tuple(names),
        ids=np.arange(n, dtype=np.int64),  # positions: no two patches are "the same token"
        special=special,
        word_ids=words,
        sequence_ids=np.where(special, -1, 0).astype(np.int8),
        offsets=np.full((n, 2), -1, dtype=np.int32),
        texts=(text,),
        readable=tuple(names),
    )
    device = next(bundle.model.parameters()).device
    dtype = next(bundle.model.parameters()).dtype
    return EncodedImage(
        tokens,
        pixels.to(device=device, dtype=dtype),
        _seen(pixels[0].float().cpu().numpy(), processor),
        (rows, cols),
        len(prefix),
        text,
    )


def _seen(pixels: np.ndarray, processor: Any) -> np.ndarray:
    """``(3, h, w)`` normalised pixels back to ``(h, w, 3)`` uint8 (undo normalise and rescale)."""
    x = pixels.astype(np.float64)
    if getattr(processor, "do_normalize", True):
        mean = np.asarray(getattr(processor, "image_mean", 0.0), dtype=np.float64).reshape(-1, 1, 1)
        std = np.asarray(getattr(processor, "image_std", 1.0), dtype=np.float64).reshape(-1, 1, 1)
        x = x * std + mean
    if getattr(processor, "do_rescale", True):
        x = x / float(getattr(processor, "rescale_factor", 1 / 255))
    out: np.ndarray = np.clip(np.round(x), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    return out


__all__ = ["EncodedImage", "encode_image", "is_image", "patch_size", "prefix_tokens"]
