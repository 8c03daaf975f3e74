"""Checks of what a caller asked to load, and of why a load failed: dtypes, GGUF files, paths,
an unreachable hub. Used by :mod:`.loading`; nothing here loads or runs a model.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from ..errors import InputError, ModelLoadError


def check_gguf(name: str, folder: str, gguf_file: str) -> None:
    if not os.path.isfile(os.path.join(folder, gguf_file)):
        found = sorted(f for f in os.listdir(folder) if f.lower().endswith(".gguf"))
        raise ModelLoadError(
            f"{name}: no GGUF file {gguf_file!r} in {folder!r}; GGUF files there: "
            f"{', '.join(found) or 'none'}"
        )
    missing = [pkg for pkg in ("gguf", "accelerate") if importlib.util.find_spec(pkg) is None]
    if missing:
        raise ModelLoadError(
            f"{name}: loading a GGUF checkpoint needs the package(s) {', '.join(missing)}: run "
            f"`pip install 'attention-inspector[gguf]'` (make install does this)"
        )


def looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") > 1)


def parse_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None:
        return dtype
    value = (
        dtype
        if isinstance(dtype, torch.dtype)
        else getattr(torch, str(dtype).replace("torch.", ""), None)
    )
    if not isinstance(value, torch.dtype):
        raise InputError(
            f"dtype={dtype!r} is not a torch dtype; use 'float32', 'float16' or 'bfloat16'"
        )
    if not value.is_floating_point:
        raise InputError(
            f"dtype={dtype!r} is not a floating-point dtype, so the model cannot run in it; use "
            f"'float32', 'float16' or 'bfloat16' (quantised checkpoints such as GGUF files are "
            f"dequantised on load)"
        )
    return value


#: Exceptions (by class name) that mean the hub was not reachable, not that the id is wrong.
_OFFLINE_ERRORS = {
    "OfflineModeIsEnabled",
    "LocalEntryNotFoundError",
    "ConnectionError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectTimeoutError",
    "NewConnectionError",
    "NameResolutionError",
}


def hub_unreachable(exc: BaseException) -> bool:
    """True when loading failed because the hub could not be reached (offline, no network)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in _OFFLINE_ERRORS or "couldn't connect" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def folder_name(hub_id: str) -> str:
    return hub_id.rstrip("/").rsplit("/", 1)[-1] or "model"


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


__all__ = [
    "check_gguf",
    "first_line",
    "folder_name",
    "hub_unreachable",
    "looks_like_path",
    "parse_dtype",
]
