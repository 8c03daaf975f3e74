"""Atomic file writing: a file is either its complete new content or left as it was.

Used by every exporter, report writer and checkpoint. Imports nothing else from the package.

Every write goes to a hidden temporary file beside the target (``.NAME.XXXXXXXX.tmp``) that the
writer holds an advisory lock on, and is renamed over the target only when complete. A writer
killed outright (SIGKILL, a power cut) leaves its temporary behind; the next write of the same
target removes every such file that no live writer holds. A rewritten file keeps the old file's
permission bits; a new one gets the process umask's (as ``open()`` would give it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

try:  # POSIX advisory locks tell a live writer's temporary from a dead one's
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temporaries are left alone
    fcntl = None  # type: ignore[assignment]

#: The random middle part of our temporary names (``tempfile.mkstemp``'s alphabet).
_RANDOM = re.compile(r"[A-Za-z0-9_]+")


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


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """True when ``a`` and ``b`` name one file (through links too), existing or not."""
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    with contextlib.suppress(OSError):
        if pa.exists() and pb.exists():
            return os.path.samefile(pa, pb)
    return os.path.realpath(pa) == os.path.realpath(pb)


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would race other threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # pragma: no cover - no /proc: the classic set-and-restore
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def output_mode(target: Path) -> int:
    """Permission bits for ``target``: the existing file's, else ``0o666`` less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def is_our_temporary(name: str, target_name: str) -> bool:
    """True for ``.TARGET.XXXXXXXX.tmp``, the temporary names :func:`atomic_path` uses."""
    prefix = f".{target_name}."
    if not (name.startswith(prefix) and name.endswith(".tmp")):
        return False
    return _RANDOM.fullmatch(name[len(prefix) : -len(".tmp")]) is not None


def clear_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries of earlier, killed writes of ``target`` (no live writer holds them).

    Returns the removed paths. A temporary that a running writer holds (its lock is taken) is
    left alone, so two processes writing the same file never delete each other's work.
    """
    if fcntl is None:  # pragma: no cover
        return []
    target = Path(target)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not is_our_temporary(entry.name, target.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed


def write_error(target: Path, exc: OSError) -> InputError:
    """Our own error for an operating-system failure while writing ``target``."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there or write to another disk (-o PATH)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "choose a folder you can write to (-o PATH)"
    else:
        advice = "check the disk and the path, or choose another one (-o PATH)"
    return InputError(f"could not write {target}: {reason}; {advice}; nothing was written")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    A crash, Ctrl-C, SIGTERM (the CLI turns it into ``KeyboardInterrupt``) or exception inside
    the block leaves ``path`` untouched and removes the temporary file; an ``OSError`` (a full
    disk, a quota) becomes an :class:`~inspector.errors.InputError` naming the file. Stale
    temporaries of killed earlier writes of ``path`` are removed first.
    """
    target = check_writable(path)
    clear_stale_temporaries(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise write_error(target, exc) from exc
    tmp_path = Path(tmp)
    try:
        if fcntl is not None:  # held until the rename: "a live writer"; best effort (NFS)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield tmp_path
        os.chmod(tmp_path, output_mode(target))
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(exc, OSError):
            raise write_error(target, exc) from exc
        raise
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
