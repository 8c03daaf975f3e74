"""Images as tokens: a vision transformer's input through its own image processor.

The sibling of :mod:`.tokenize` for vision models (ViT, DeiT, CLIP's and SigLIP's vision towers),
used by that one path (:func:`inspector.capture.tokenize.encode_image`). The model's image
processor resizes, crops and normalises the image; the tokens are the model's own sequence: its
prefix tokens (``[CLS]``, DeiT's ``[DIST]``, register tokens), read from the embedding module's
parameters, then one ``patch r,c`` per patch in row-major order. The image the model saw (after
resizing and cropping, before normalisation) is kept as ``uint8`` RGB so that reports can lay
attention over it.

Every input is converted explicitly, the same way whether it comes as a PIL image or as an
array (:func:`to_rgb`): 8-bit data as it is, 16-bit data (PIL ``I;16``, ``uint16`` arrays)
scaled from 0..65535, floats (PIL ``F``, float arrays) from [0, 1]; PIL's colour modes are
converted by Pillow; anything else is refused with an :class:`~inspector.errors.InputError`.
An image of more than :data:`MAX_PIXELS` pixels is downscaled first, with a warning: an image
processor holds several float copies of what it is given (5.8 GB for 20000 x 20000) and resizes
it to a few hundred pixels anyway.

Processors only; nothing here runs the model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, InspectorWarning
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


#: Images with more pixels are downscaled (aspect ratio kept) before the image processor.
MAX_PIXELS = 4096 * 4096
#: PIL modes Pillow converts to RGB itself (an alpha channel is dropped, as for an (h, w, 4)
#: array; premultiplied ``RGBa`` is unpremultiplied).
PIL_CONVERTED = frozenset(
    {"1", "L", "P", "PA", "LA", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
)
#: PIL modes read as numbers and scaled as arrays are: ``I;16*`` (16-bit), ``I`` (32-bit
#: integers: how Pillow opens some 16-bit files; 16-bit when a value exceeds 255), ``F``.
PIL_NUMERIC = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N", "F"})


def _reduction(height: int, width: int) -> int:
    """The integer factor that brings ``height x width`` to at most :data:`MAX_PIXELS`."""
    pixels = height * width
    return 1 if pixels <= MAX_PIXELS else math.ceil(math.sqrt(pixels / MAX_PIXELS))


def _box_reduce(arr: np.ndarray, k: int) -> np.ndarray:
    """Mean of every ``k x k`` block (float32), a band of ``k`` rows at a time: never a float
    copy of the whole image. Up to ``k - 1`` edge rows and columns are dropped."""
    rows, cols = arr.shape[0] // k, arr.shape[1] // k
    out = np.empty((rows, cols, *arr.shape[2:]), dtype=np.float32)
    for i in range(rows):
        band = arr[i * k : (i + 1) * k, : cols * k].astype(np.float32)
        out[i] = band.reshape(k, cols, k, *arr.shape[2:]).mean(axis=(0, 2))
    return out


def _scale(arr: np.ndarray, what: str, sixteen_bit: bool = False) -> float:
    """The factor taking ``arr``'s values to 0..255, after checking them (min/max only: no
    full-size temporary). ``sixteen_bit``: integers above 255 are 16-bit data (PIL mode I)."""
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "b":
        return 255.0
    if kind not in "uif":
        raise InputError(
            f"{what} must hold uint8, uint16 or float in [0, 1] values, not {arr.dtype}"
        )
    lo, hi = arr.min(), arr.max()
    if kind == "f":
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{what} has NaN or infinite values")
        if lo < 0 or hi > 1:
            raise InputError(
                f"{what} holds floats from {float(lo):.4g} to {float(hi):.4g}; a float image must "
                f"hold values in [0, 1]: divide by its maximum, or give uint8 (0..255)"
            )
        return 255.0
    if kind == "u" and size == 2:
        return 255.0 / 65535.0
    if lo < 0 or hi > (65535 if sixteen_bit else 255):
        raise InputError(
            f"{what} holds integers from {int(lo)} to {int(hi)}; an integer image must hold "
            f"values in 0..255 (uint16 arrays: 0..65535); scale it into that range first"
        )
    return 255.0 / 65535.0 if hi > 255 else 1.0


def _numbers_to_rgb(arr: np.ndarray, what: str, sixteen_bit: bool = False) -> tuple[Any, int]:
    """An array of pixel values (see :func:`_scale`) as an RGB PIL image, reduced by the
    factor returned beside it (1: not reduced)."""
    from PIL import Image

    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.size == 0 or min(arr.shape[:2]) < 1:
        raise InputError(f"the image is empty (shape {arr.shape})")
    factor = _scale(arr, what, sixteen_bit)
    k = _reduction(*arr.shape[:2])
    if k > 1:  # in place on the reduced copy: one float array of at most MAX_PIXELS
        out = _box_reduce(arr, k)
        out *= np.float32(factor)
        np.round(out, out=out)
    elif factor == 1.0:
        out = arr
    else:
        out = np.round(arr * factor)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)).convert("RGB"), k


def to_rgb(image: Any) -> tuple[Any, int]:
    """``image`` (a PIL image, or an array ``(h, w)`` / ``(h, w, 1|3|4)``) as an RGB PIL image,
    and the factor it was downscaled by (1: not) to stay within :data:`MAX_PIXELS`.

    Arrays: ``uint8`` (and other integers in 0..255) as they are, ``uint16`` scaled from
    0..65535, floats from [0, 1], ``bool`` as 0 / 255. PIL images: the :data:`PIL_CONVERTED`
    modes through Pillow, the :data:`PIL_NUMERIC` modes as the arrays they hold. Raises
    :class:`InputError` for any other mode or value range.
    """
    if isinstance(image, np.ndarray):
        return _numbers_to_rgb(image, "an image array")
    mode = str(getattr(image, "mode", ""))
    width, height = image.size
    if width < 1 or height < 1:
        raise InputError(f"the image is empty ({width}x{height})")
    if mode in PIL_NUMERIC:
        return _numbers_to_rgb(np.asarray(image), f"a PIL image of mode {mode}", mode == "I")
    if mode not in PIL_CONVERTED:
        raise InputError(
            f"PIL images of mode {mode!r} are not supported (supported: "
            f"{', '.join(sorted(PIL_CONVERTED | PIL_NUMERIC))}); convert it first, e.g. "
            f"image.convert('RGB')"
        )
    k = _reduction(height, width)
    if k > 1:
        from PIL import Image

        image = image.resize(
            (max(1, width // k), max(1, height // k)), Image.Resampling.LANCZOS, reducing_gap=2.0
        )
    if mode == "P" and "transparency" in getattr(image, "info", {}):
        image = image.convert("RGBA")  # Pillow warns when a palette's transparency is dropped
    return image.convert("RGB"), k


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
        image: a PIL image, or an array ``(h, w)`` / ``(h, w, 3|4)`` of uint8, uint16 or float
            in [0, 1] (:func:`to_rgb`); larger than :data:`MAX_PIXELS`, it is downscaled first
            (an :class:`~inspector.errors.InspectorWarning` says so).
    """
    if bundle.modality != "image":
        raise InputError(f"{bundle.name} reads text, not images; pass a string")
    if not is_image(image):
        raise InputError(
            f"expected a PIL image or an (h, w, 3) array, not {type(image).__name__}"
            + (f" of shape {image.shape}" if isinstance(image, np.ndarray) else "")
        )
    original = image.shape[1::-1] if isinstance(image, np.ndarray) else tuple(image.size)
    pil, k = to_rgb(image)
    if k > 1:
        warnings.warn(
            f"the image is {original[0]}x{original[1]} pixels; it was downscaled to "
            f"{pil.width}x{pil.height} before the image processor (which resizes it to a few "
            f"hundred pixels anyway), to bound the memory it takes",
            InspectorWarning,
            stacklevel=3,
        )
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
    shrunk = f" (downscaled to {pil.width}x{pil.height})" if k > 1 else ""
    text = f"image {original[0]}x{original[1]}{shrunk} -> {width}x{height}"
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


__all__ = [
    "MAX_PIXELS",
    "PIL_CONVERTED",
    "PIL_NUMERIC",
    "EncodedImage",
    "encode_image",
    "is_image",
    "patch_size",
    "prefix_tokens",
    "to_rgb",
]
