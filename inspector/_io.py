"""Atomic file writing: a file is either its complete new content or left as it was.

Used by every exporter and report writer. Imports nothing else from the package.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail early, before any model work, when ``path`` cannot be written."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputError(f"{target} is a folder; give a file name such as {target / 'out.html'}")
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {parent}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write to {parent}: permission denied; choose another -o path")
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A crash, Ctrl-C or exception inside the block leaves ``path`` untouched and removes the
    temporary file.
    """
    target = check_writable(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"could not write {path}: {exc.strerror or exc}") from exc
    return Path(path)
