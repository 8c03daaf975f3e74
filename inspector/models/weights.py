"""What a checkpoint must satisfy to be loaded: safe weights, every weight present, a real device.

* :func:`weights_format`: decides ``use_safetensors`` from the file ``from_pretrained`` will
  load (``model.safetensors`` or its shard index), so a stray ``*.safetensors`` never lets a
  ``pytorch_model.bin`` beside it unpickle without ``allow_pickle``.
* :func:`check_loading_info`: refuses missing, unexpected or wrongly shaped transformer weights
  (they would be initialised at random: different attention on every load) and tolerates, with
  a warning, only task-head weights (:data:`~inspector.models.families.HEAD_MODULES`).
* :func:`check_device`: refuses a device torch does not know or this machine does not have.

Used by :mod:`.loading`; nothing here loads or runs a model.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InputError, InspectorWarning, ModelLoadError
from .checks import first_line
from .families import is_head_weight

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

#: The safetensors checkpoints ``from_pretrained`` loads from a folder (single file or shards).
SAFETENSORS_NAMES = ("model.safetensors", "model.safetensors.index.json")


def weights_format(name: str, folder: str, allow_pickle: bool) -> bool:
    """``use_safetensors`` for loading ``folder``: decided from the file transformers will load.

    A folder with ``model.safetensors`` (or its shard index) loads it, with pickles refused by
    ``use_safetensors=True``; other ``*.safetensors`` files are not what transformers loads, so
    they do not make a ``pytorch_model.bin`` beside them safe. Pickle-only checkpoints need
    ``allow_pickle`` (unpickling can run code).
    """
    files = set(os.listdir(folder))
    if any(n in files for n in SAFETENSORS_NAMES):
        return True
    stray = sorted(f for f in files if f.endswith(".safetensors"))
    pickles = sorted(f for f in files if f.endswith(_PICKLE_SUFFIXES))
    if pickles and not allow_pickle:
        note = (
            f" ({', '.join(stray[:3])} is not a checkpoint transformers loads: it loads "
            f"{' or '.join(SAFETENSORS_NAMES)})"
            if stray
            else ""
        )
        raise ModelLoadError(
            f"{name}: its weights are pickle files ({', '.join(pickles[:3])}) and no "
            f"model.safetensors exists{note}; unpickling a file from an untrusted source can "
            f"run arbitrary code. Convert it to safetensors, or pass allow_pickle=True (CLI: "
            f"--allow-pickle) if you trust its source"
        )
    if not pickles:
        raise ModelLoadError(
            f"{name}: {folder!r} has a config but no weights ({' or '.join(SAFETENSORS_NAMES)}); "
            f"is this a transformer checkpoint folder?"
        )
    return False


def check_device(device: Any) -> None:
    """Refuse, before loading, a device torch does not know or this machine does not have."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(
            f"unknown device {device!r} ({first_line(exc)}); use e.g. 'cpu' or 'cuda'"
        ) from exc
    backend = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None)}.get(dev.type)
    if dev.type == "xpu":
        backend = getattr(torch, "xpu", None)
    if backend is None and dev.type in ("cuda", "mps", "xpu"):
        available = False
    elif backend is not None:
        available = bool(backend.is_available())
    else:
        return
    if not available:
        raise InputError(
            f"device {device!r}: this machine has no {dev.type} device that torch "
            f"{torch.__version__} can use; use device='cpu' (CLI: --device cpu) or leave it out"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(
            f"device {device!r}: there are only {torch.cuda.device_count()} CUDA device(s) "
            f"(cuda:0..cuda:{torch.cuda.device_count() - 1}); pick one of them"
        )


def _layer_groups(keys: Sequence[str]) -> str:
    """``encoder.layer.1.* (16 weights)``, grouped by the numbered block they belong to."""
    groups: dict[str, int] = {}
    for key in keys:
        m = re.match(r"^(.*?\.\d+)\.", key)
        group = f"{m.group(1)}.*" if m else key
        groups[group] = groups.get(group, 0) + 1
    shown = [f"{g} ({n} weight{'s' if n > 1 else ''})" for g, n in list(groups.items())[:4]]
    more = f" and {len(groups) - 4} more" if len(groups) > 4 else ""
    return ", ".join(shown) + more


def check_loading_info(name: str, source: str, info: Mapping[str, Any]) -> list[str]:
    """Refuse missing or unexpected transformer weights; return the tolerated head weights.

    Weights of a task head (:data:`~inspector.models.families.HEAD_MODULES`: pooler, LM head,
    classifier) may be missing or unused: attention does not depend on them, and a warning says
    which were initialised at random. Any other missing weight would be initialised at random
    (different attention on every load); any other unexpected one means the checkpoint is for
    another architecture or depth. Both raise :class:`ModelLoadError`.
    """
    missing = sorted(str(k) for k in info.get("missing_keys") or ())
    unexpected = sorted(str(k) for k in info.get("unexpected_keys") or ())
    mismatched = [
        str(k[0] if isinstance(k, tuple | list) else k) for k in info.get("mismatched_keys") or ()
    ]
    core_missing = [k for k in missing if not is_head_weight(k)]
    core_unexpected = [k for k in unexpected if not is_head_weight(k)]
    if core_missing or mismatched:
        keys = core_missing or mismatched
        what = "lacks" if core_missing else "has wrongly shaped"
        raise ModelLoadError(
            f"{name}: the checkpoint in {source!r} {what} {len(keys)} weight(s) of the "
            f"transformer itself: {_layer_groups(keys)}; they would be initialised at random, "
            f"so attention would change on every load. Use a complete checkpoint (or the config "
            f"it was saved with)"
        )
    if core_unexpected:
        raise ModelLoadError(
            f"{name}: the checkpoint in {source!r} has {len(core_unexpected)} weight(s) the "
            f"model built from its config.json does not use: {_layer_groups(core_unexpected)}; "
            f"it was saved from another architecture or depth. Check config.json against the "
            f"weights"
        )
    random_heads = [k for k in missing if is_head_weight(k)]
    if random_heads:
        warnings.warn(
            f"{name}: {len(random_heads)} task-head weight(s) are not in the checkpoint and were "
            f"initialised at random ({_layer_groups(random_heads)}); attention is unaffected, "
            f"but that head's outputs (predictions, explain targets) are not meaningful",
            InspectorWarning,
            stacklevel=3,
        )
    return random_heads


__all__ = [
    "SAFETENSORS_NAMES",
    "check_device",
    "check_loading_info",
    "weights_format",
]
