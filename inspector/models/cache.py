"""The weights cache: a dequantised GGUF checkpoint kept as an ordinary safetensors model folder.

Loading a quantised GGUF file (the embedded ``smollm2`` is 4-bit ``Q4_1``) makes transformers
dequantise every tensor and convert the tokenizer on every load (25-32 s). The first load writes
the result once to ``<cache>/gguf/<sha256 of the GGUF file>/`` (``config.json``,
``model.safetensors`` in float32, the tokenizer files, ``generation_config.json``) plus a
manifest, ``inspector-cache.json``, written last, holding each file's size and SHA-256; later
loads read that folder in a few seconds.

- Where: ``$INSPECTOR_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/inspector``, else
  ``~/.cache/inspector``. Clear it with ``rm -rf ~/.cache/inspector`` (or :func:`clear`).
- Atomic: an entry is built in a temporary folder beside it and renamed into place when
  complete, so a crash never leaves a half-written entry under the final name.
- Checked: a lookup re-hashes every file against the manifest (and the transformers version
  that dequantised it); a missing, partial or corrupt entry is removed and rebuilt.

This module writes and checks folders; it never loads or runs a model
(:mod:`inspector.models.loading` does, and is the only module calling ``from_pretrained``).
The tests point ``INSPECTOR_CACHE_DIR`` at a temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Environment variable naming the cache folder (tests point it at a temporary folder).
ENV = "INSPECTOR_CACHE_DIR"
#: Bumped when the layout of an entry changes: older entries are rebuilt.
FORMAT = 1
MANIFEST = "inspector-cache.json"
_CHUNK = 1 << 22


def cache_dir() -> Path:
    """The cache folder (it may not exist yet): ``$INSPECTOR_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/inspector``, else ``~/.cache/inspector``."""
    explicit = os.environ.get(ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "inspector"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (about 0.1 s for the 98 MB SmolLM2 GGUF)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def gguf_entry(key: str) -> Path:
    """The folder of the cache entry for a GGUF file whose SHA-256 is ``key``."""
    return cache_dir() / "gguf" / key


def _versions() -> dict[str, str]:
    import transformers

    return {"format": str(FORMAT), "transformers": str(transformers.__version__)}


def check_entry(folder: Path) -> str | None:
    """Why the entry in ``folder`` cannot be used (``None``: it is complete and intact)."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (absent or never finished)"
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        files: dict[str, Any] = dict(meta["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable manifest"
    for key, value in _versions().items():
        if str(meta.get(key)) != value:
            return f"made with {key} {meta.get(key)}, now {value}"
    if not files:
        return "the manifest lists no files"
    for name, expected in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != expected.get("size"):
            return f"{name} is missing or has the wrong size"
        if file_sha256(path) != expected.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def lookup(key: str) -> Path | None:
    """The intact entry for ``key``, or ``None`` (a broken one is removed so it can be rebuilt)."""
    folder = gguf_entry(key)
    if not folder.exists():
        return None
    if check_entry(folder) is None:
        return folder
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)
    return None


def store(key: str, write: Callable[[Path], None], source: str) -> Path:
    """Build the entry for ``key`` with ``write(folder)`` and move it into place atomically.

    ``write`` fills a temporary folder; the manifest (sizes and checksums of what it wrote) is
    added last and the folder renamed to its final name. When another process finished the same
    entry first, its entry is kept. Raises ``OSError`` when the cache cannot be written.
    """
    final = gguf_entry(key)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=final.parent))
    try:
        write(tmp)
        files = {
            p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
            for p in sorted(tmp.iterdir())
            if p.is_file()
        }
        meta = {**_versions(), "gguf_sha256": key, "source": source, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o755)
        for path in tmp.iterdir():
            os.chmod(path, 0o644)
        if final.exists():  # a broken entry another process left, or a race we lost
            if check_entry(final) is None:
                shutil.rmtree(tmp, ignore_errors=True)
                return final
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if check_entry(final) is not None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_folder(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write a GGUF-loaded model as an ordinary model folder: float32 ``model.safetensors``
    (tied weights once), ``config.json`` without the GGUF quantisation entry,
    ``generation_config.json`` and the tokenizer files (the chat template included)."""
    import copy

    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are no longer quantised
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)


def realign(model: Any) -> None:
    """Copy weights read from safetensors into freshly allocated memory.

    safetensors places tensors at 8-byte offsets; matrix kernels take other code paths on such
    memory, which changes float32 rounding (about 3e-7 in generation steps). Fresh copies make
    a cached load compute exactly what the GGUF load computes.
    """
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.data_ptr() % 64:
                param.data = param.data.clone()


def _remove_stale(root: Path, age: float = 3600.0) -> None:
    """Remove temporary folders that a killed process left behind (older than ``age`` s)."""
    import time

    for path in root.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > age:
                shutil.rmtree(path, ignore_errors=True)


#: Seconds per MB of GGUF file a first load takes (dequantise, convert the tokenizer, write and
#: check the cache entry): SmolLM2's 98 MB file took 19-57 s on 2 CPU cores, quiet to busy.
_FIRST_LOAD_S_PER_MB = (0.2, 0.6)


def first_load_note(name: str, path: str, gguf_file: str) -> str:
    """The one line a GGUF file's first load prints: what it does, about how long, once."""
    mb = os.path.getsize(path) / 1e6
    low, high = (mb * rate for rate in _FIRST_LOAD_S_PER_MB)
    size = f"{mb:.0f} MB" if mb >= 1 else "under 1 MB"
    how_long = "a few seconds" if high < 10 else f"about {low:.0f}-{high:.0f} s on 2 CPU cores"
    return (
        f"{name}: first load: dequantising {gguf_file} ({size}) once into the weights cache "
        f"{cache_dir()} ({how_long}); later loads read it in a few seconds"
    )


def clear() -> Path:
    """Delete every cached entry; returns the cache folder (which stays, empty)."""
    root = cache_dir()
    shutil.rmtree(root / "gguf", ignore_errors=True)
    return root


__all__ = [
    "ENV",
    "MANIFEST",
    "cache_dir",
    "check_entry",
    "clear",
    "file_sha256",
    "first_load_note",
    "gguf_entry",
    "lookup",
    "realign",
    "save_folder",
    "store",
]
