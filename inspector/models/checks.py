"""Checks of what a caller asked to load, and of why a load failed: dtypes, GGUF files, paths,
an unreachable hub. Used by :mod:`.loading`; nothing here loads or runs a model.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import socket
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import InputError, ModelLoadError

if TYPE_CHECKING:
    import torch


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


def parse_dtype(dtype: object) -> torch.dtype | None:
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


def near_name(name: str, names: Sequence[str]) -> str | None:
    """The one of ``names`` that ``name`` looks like a typo of (``minilmm`` -> ``minilm``), or
    ``None``. Hub ids with an owner (``org/model``) are never typos of a short name."""
    if "/" in name or name in names:
        return None
    close = difflib.get_close_matches(name.lower(), list(names), n=1, cutoff=0.75)
    return close[0] if close else None


#: Seconds the hub probe may take before the hub counts as unreachable.
HUB_PROBE_SECONDS = 0.8
_TRUE = {"1", "on", "yes", "true"}


#: The last probe's answer by (host, port): (when, reachable), reused for HUB_PROBE_MEMORY s.
_PROBED: dict[tuple[str, int], tuple[float, bool]] = {}
HUB_PROBE_MEMORY = 30.0


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face hub can be reached, decided in at most ``timeout`` seconds.

    ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set: no. Otherwise a TCP connection to the
    hub's host (``HF_ENDPOINT``, default huggingface.co), name lookup included, in a daemon thread
    that is waited for at most ``timeout`` s: without network, transformers' own retries take
    half a minute to give up. Behind an HTTP proxy the probe cannot tell, so the answer is yes.
    An answer is reused for :data:`HUB_PROBE_MEMORY` seconds.
    """
    if any(
        os.environ.get(v, "").strip().lower() in _TRUE
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    when, known = _PROBED.get((host, port), (-math.inf, False))
    if time.monotonic() - when < HUB_PROBE_MEMORY:
        return known
    answer: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            answer.append(True)
        except Exception:  # best effort: anything but a connection is "unreachable"
            answer.append(False)

    worker = threading.Thread(target=probe, name="inspector-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    reachable = bool(answer and answer[0])
    _PROBED[(host, port)] = (time.monotonic(), reachable)
    return reachable


def in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face hub cache holds ``repo_id``'s ``config.json`` (so it
    loads without the network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub would refuse (spaces, ...): not cached
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
    "hub_reachable",
    "hub_unreachable",
    "in_hub_cache",
    "looks_like_path",
    "near_name",
    "parse_dtype",
]
