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
  that dequantised it); a missing, partial or corrupt entry is removed and rebuilt. A file in
  the entry that the manifest does not list makes it invalid too (``from_pretrained`` might
  load it unverified).
- Private: the cache folders are created ``0700`` whatever the umask, entries ``0700`` with
  ``0600`` files. As ssh and pip do, an entry (or the ``gguf`` folder) not owned by this user
  or writable by group or others is refused with a warning and rebuilt from the GGUF file; an
  unreadable entry is too. Where the cache cannot be used or rebuilt, the GGUF file is loaded
  directly.
- Clean: every lookup removes the temporary folders of writers that died (a killed first
  load leaves ~0.5 GB): a writer holds an exclusive ``flock`` on its folder while it builds,
  so a folder nobody holds is a dead writer's.

This module writes and checks folders; it never loads or runs a model
(:mod:`inspector.models.loading` does, and is the only module calling ``from_pretrained``).
The tests point ``INSPECTOR_CACHE_DIR`` at a temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InspectorWarning

#: Environment variable naming the cache folder (tests point it at a temporary folder).
ENV = "INSPECTOR_CACHE_DIR"
#: Bumped when the layout of an entry changes: older entries are rebuilt.
FORMAT = 1
MANIFEST = "inspector-cache.json"
_CHUNK = 1 << 22
#: The temporary folders :func:`store` makes (``tempfile.mkdtemp``'s random part): only folders
#: whose name proves they are ours are ever removed.
_TEMP = re.compile(r"^\.[0-9a-f]{16}\.[a-z0-9_]{8}\.tmp$")


class UnsafeCacheError(OSError):
    """The cache folder is not private to this user; it is not used (the GGUF loads directly)."""


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


def unsafe(path: Path, *, follow: bool = False, sticky_ok: bool = False) -> str | None:
    """Why ``path`` cannot be trusted, or ``None``: it must be owned by this user and writable by
    nobody else, as ssh and pip require (``follow``: a symbolic link to such a path is fine;
    ``sticky_ok``: a folder others may write to is fine when only owners may delete in it).

    On systems without user ids (Windows) nothing is checked.
    """
    if not hasattr(os, "geteuid"):  # pragma: no cover - Windows
        return None
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    me = os.geteuid()
    if st.st_uid != me and not (follow and st.st_uid == 0):
        return f"is owned by user id {st.st_uid}, not by you ({me})"
    writable = st.st_mode & 0o022
    if writable and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        who = "group and others" if writable == 0o022 else "group" if writable & 0o020 else "others"
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _problem(folder: Path) -> tuple[str, bool] | None:
    """``(why the entry cannot be used, whether to warn)``; ``None`` when it is intact.

    Damage a crash or a full disk explains is silent (the entry is rebuilt); an entry others
    could have written, or one this user cannot read, is warned about.
    """
    why = unsafe(folder)
    if why is not None:
        return f"the entry folder {why}", True
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return "no manifest (absent or never finished)", False
    why = unsafe(manifest)
    if why is not None:
        return f"{MANIFEST} {why}", True
    try:
        meta = json.loads(manifest.read_text(encoding="utf-8"))
        files: dict[str, Any] = dict(meta["files"])
    except PermissionError as exc:
        return f"{MANIFEST} cannot be read ({exc.strerror})", True
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable manifest", False
    for key, value in _versions().items():
        if str(meta.get(key)) != value:
            return f"made with {key} {meta.get(key)}, now {value}", False
    if not files:
        return "the manifest lists no files", False
    try:
        present = {p.name for p in folder.iterdir()} - {MANIFEST}
    except OSError as exc:
        return f"the entry folder cannot be listed ({exc.strerror})", True
    unlisted = sorted(present - set(files))
    if unlisted:  # transformers might load it, unverified
        return f"{unlisted[0]} is not in the manifest", False
    for name, expected in files.items():
        if not isinstance(name, str) or Path(name).name != name or not isinstance(expected, dict):
            return "the manifest names a file outside the entry", False
        path = folder / name
        try:
            st = os.lstat(path)
        except OSError:
            return f"{name} is missing", False
        if not stat.S_ISREG(st.st_mode):
            return f"{name} is not a regular file", True
        why = unsafe(path)
        if why is not None:
            return f"{name} {why}", True
        if st.st_size != expected.get("size"):
            return f"{name} has the wrong size", False
        try:
            digest = file_sha256(path)
        except OSError as exc:
            return f"{name} cannot be read ({exc.strerror})", True
        if digest != expected.get("sha256"):
            return f"{name} does not match its checksum", False
    return None


def check_entry(folder: Path) -> str | None:
    """Why the entry in ``folder`` cannot be used (``None``: it is complete, intact, private).

    Every file in the folder must be listed in the manifest with its size and SHA-256 (a file
    the manifest omits makes the entry invalid), be a regular file, and like the folder be
    owned by this user and writable by nobody else.
    """
    found = _problem(folder)
    return None if found is None else found[0]


def _warn(text: str) -> None:
    warnings.warn(" ".join(text.split()), InspectorWarning, stacklevel=4)


def _gguf_folder() -> Path:
    """The ``gguf`` folder of the cache, checked: :class:`UnsafeCacheError` when it (or the
    cache folder holding it) could have been written by another user."""
    root = cache_dir()
    folder = root / "gguf"
    why, where = None, root
    if root.exists():
        why = unsafe(root, follow=True, sticky_ok=True)
    if why is None and (folder.exists() or folder.is_symlink()):
        why, where = unsafe(folder), folder
    if why is not None:
        raise UnsafeCacheError(
            f"the weights cache folder {where} {why}; another user could replace what it holds, "
            f"so it is not used and the GGUF file is loaded directly (slower). Make it yours "
            f"and private (chmod 700), or set {ENV} to a folder of your own"
        )
    return folder


def lookup(key: str) -> Path | None:
    """The intact entry for ``key``, or ``None`` (a broken one is removed so it can be rebuilt).

    Removes the temporary folders of dead writers first. An entry others could have written,
    or one that cannot be read, is refused with an :class:`~inspector.errors.InspectorWarning`;
    so is a cache folder that is not private (then nothing is removed or built).
    """
    try:
        gguf = _gguf_folder()
    except UnsafeCacheError as exc:
        _warn(str(exc))
        return None
    _remove_stale(gguf)
    folder = gguf / key
    if not folder.exists() and not folder.is_symlink():
        return None
    found = _problem(folder)
    if found is None:
        return folder
    why, loud = found
    if loud:
        _warn(
            f"the weights cache entry {folder} is refused: {why}; it is rebuilt from the GGUF "
            f"file (or the GGUF file is loaded directly where it cannot be)"
        )
    _discard(folder)
    return None


def _discard(folder: Path) -> None:
    """Remove a broken entry (a symbolic link is unlinked, never followed)."""
    with contextlib.suppress(OSError):
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder)


def _private_dir(path: Path) -> None:
    """Create ``path`` (its parents as usual) with mode 0700 whatever the umask; an existing
    folder is left as it is (:func:`unsafe` judges it)."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return
    os.chmod(path, 0o700)  # mkdir's mode is masked by the umask; chmod's is not


@contextlib.contextmanager
def _held(folder: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` inside the block: the sign that its writer is
    alive (:func:`_remove_stale` removes only folders nobody holds)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: stale folders go by age
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_ino != os.stat(folder).st_ino:  # removed before we held it
            raise OSError(f"{folder} was removed while it was being created")
        yield
    finally:
        os.close(fd)


def store(key: str, write: Callable[[Path], None], source: str) -> Path:
    """Build the entry for ``key`` with ``write(folder)`` and move it into place atomically.

    ``write`` fills a temporary folder, held (:func:`_held`) while it is built; the manifest
    (sizes and checksums of what it wrote) is added last, modes are made private (0700 / 0600)
    and the folder renamed to its final name. When another process finished the same entry
    first, its entry is kept. Raises ``OSError`` (:class:`UnsafeCacheError` where the cache
    folder is not private) when the cache cannot be written.
    """
    _private_dir(cache_dir())
    gguf = _gguf_folder()
    _private_dir(gguf)
    gguf = _gguf_folder()
    _remove_stale(gguf)
    final = gguf / key
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=gguf))
    try:
        with _held(tmp):
            write(tmp)
            files = {
                p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)}
                for p in sorted(tmp.iterdir())
                if p.is_file()
            }
            meta = {**_versions(), "gguf_sha256": key, "source": source, "files": files}
            (tmp / MANIFEST).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            os.chmod(tmp, 0o700)
            for path in tmp.iterdir():
                os.chmod(path, 0o600)
            if final.exists() or final.is_symlink():  # a broken entry, or a race we lost
                if check_entry(final) is None:
                    shutil.rmtree(tmp, ignore_errors=True)
                    return final
                _discard(final)
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
    """Remove the temporary folders of writers that died (a killed first load).

    Only folders whose name :func:`store` made (``.<key>.<random>.tmp``), that this user owns
    and that no live writer holds (:func:`_held`) are removed; where ``flock`` does not exist,
    those older than ``age`` seconds are.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        fcntl = None  # type: ignore[assignment]
    try:
        candidates = [p for p in root.iterdir() if _TEMP.match(p.name)]
    except OSError:
        return
    for path in candidates:
        if unsafe(path) is not None or not path.is_dir():
            continue
        if fcntl is None:  # pragma: no cover - Windows
            import time

            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > age:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a live writer holds it
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


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
    "UnsafeCacheError",
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
    "unsafe",
]
