"""Atomic file writing: a file, or a set of files, is either all new or left as it was.

Used by every exporter, report writer and checkpoint. Imports nothing else from the package.

Every write goes to a hidden temporary file beside its target, named
``.inspector-tmp-<16 random hex digits>-NAME`` (a name no file of yours has by accident), that
the writer holds an advisory lock on; it is renamed over the target only when complete. A set
of files (a scan's heads, rows and top-k tables; an atlas with its distances and report) is
written the same way: every temporary first, then all renamed together, the old files linked
aside until the last rename so that a failure puts every one back. A writer killed outright
(SIGKILL, a power cut) leaves its temporaries behind; the next write of the same target removes
those that no live writer holds, and nothing else. A rewritten file keeps the old file's
permission bits; a new one gets the process umask's (as ``open()`` would give it). A read-only
target (no write permission bit) is refused unless the caller passes ``force=True`` (CLI:
``--force``) or runs inside :func:`replacing_read_only`.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InputError

try:  # POSIX advisory locks tell a live writer's temporary from a dead one's
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale temporaries are left alone
    fcntl = None  # type: ignore[assignment]

#: Every temporary we create starts with this, then 16 random hex digits, ``-`` and the name.
TEMP_PREFIX = ".inspector-tmp-"
_TEMP = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{16}-")
#: Longest target name kept whole in a temporary's name (file names stop at 255 bytes).
_NAME_BYTES = 200

_FORCE: contextvars.ContextVar[bool] = contextvars.ContextVar("inspector_force", default=False)

PathLike = str | os.PathLike[str]


def check_writable(path: PathLike, *, force: bool = False) -> Path:
    """Fail early, before any model work, when ``path`` cannot be written (or is read-only
    and ``force`` is off)."""
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
    check_replaceable(target, force=force)
    return target


def check_replaceable(target: Path, *, force: bool = False) -> None:
    """Refuse to replace a read-only file (no write permission bit, or not writable by us)
    unless ``force`` (or :func:`replacing_read_only`)."""
    if force or _FORCE.get():
        return
    try:
        st = os.stat(target)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode):
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o222 == 0 or not os.access(target, os.W_OK):
        raise InputError(
            f"{target} is read-only (mode {mode:04o}), so it was left as it is; add --force "
            f"(Python: force=True, or run the call inside inspector.api.replacing_read_only()) "
            f"to replace it anyway, or choose another output path"
        )


@contextlib.contextmanager
def replacing_read_only(enabled: bool = True) -> Iterator[None]:
    """Inside this block, every write may replace a read-only file (the CLI's ``--force``)."""
    token = _FORCE.set(bool(enabled) or _FORCE.get())
    try:
        yield
    finally:
        _FORCE.reset(token)


def same_file(a: PathLike, b: PathLike) -> bool:
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


def _name_part(target_name: str) -> str:
    """``target_name`` as it appears in its temporaries' names (cut to fit 255 bytes)."""
    raw = target_name.encode("utf-8", "surrogateescape")
    if len(raw) <= _NAME_BYTES:
        return target_name
    return raw[:_NAME_BYTES].decode("utf-8", "ignore")


def temporary_name(target_name: str) -> str:
    """A fresh temporary name for ``target_name``: ``.inspector-tmp-<16 hex>-NAME``."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}-{_name_part(target_name)}"


def is_our_temporary(name: str, target_name: str) -> bool:
    """True only for names :func:`temporary_name` makes for ``target_name`` (our prefix, 16
    random hex digits, then the target's name), never for a file of the user's."""
    match = _TEMP.match(name)
    return match is not None and name[match.end() :] == _name_part(target_name)


def clear_stale_temporaries(target: PathLike) -> list[Path]:
    """Remove the temporaries of earlier, killed writes of ``target`` (no live writer holds them).

    Returns the removed paths. Only names :func:`is_our_temporary` accepts are considered, and
    a temporary that a running writer holds (its lock is taken) is left alone, so two processes
    writing the same file never delete each other's work.
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


def _names(paths: Sequence[Path]) -> str:
    """``a.parquet, a.rows.parquet and a.topk.parquet in /data`` (full paths if folders differ)."""
    folders = {p.parent for p in paths}
    one = len(folders) == 1 and len(paths) > 1
    shown = [p.name if one else str(p) for p in paths]
    joined = shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]
    return f"{joined} in {next(iter(folders))}" if one else joined


def write_error(target: Path | None, exc: OSError, group: Sequence[Path] = ()) -> InputError:
    """Our own error for an operating-system failure while writing ``target`` (one of
    ``group``, the set written together, which is left as it was; ``None``: which one of
    them is not known)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there or write to another disk (-o PATH)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "choose a folder you can write to (-o PATH)"
    else:
        advice = "check the disk and the path, or choose another one (-o PATH)"
    others = [p for p in group if p != target]
    if not others and target is not None:
        return InputError(f"could not write {target}: {reason}; {advice}; nothing was written")
    what = "these files" if target is None else target
    every = others if target is None else [target, *others]
    return InputError(
        f"could not write {what}: {reason}; {advice}; nothing was written: {_names(every)} "
        f"are all as they were"
    )


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create (0600, exclusive) and lock a fresh temporary beside ``target``."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        path = target.parent / temporary_name(target.name)
        try:
            fd = os.open(path, flags, 0o600)
        except FileExistsError:  # pragma: no cover - 64 random bits
            continue
        if fcntl is not None:  # held until the rename: "a live writer"; best effort (NFS)
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd, path
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))  # pragma: no cover


def _backup(target: Path) -> Path | None:
    """A hard link to the current ``target`` under a temporary name (``None``: no file)."""
    if not os.path.lexists(target):
        return None
    for _ in range(100):
        link = target.parent / temporary_name(target.name)
        try:
            os.link(target, link, follow_symlinks=False)
        except FileExistsError:  # pragma: no cover
            continue
        except OSError:  # no hard links here (some network and FUSE file systems): a copy
            shutil.copy2(target, link, follow_symlinks=False)
        return link
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))  # pragma: no cover


def _commit(pairs: Sequence[tuple[Path, Path]], remove: Sequence[Path]) -> None:
    """Rename every temporary over its target and remove ``remove``, all or none.

    One file: a single ``os.replace`` (atomic). More: each old file is first hard-linked aside,
    so if a later rename fails (or an interrupt arrives) the renamed ones are put back.
    """
    if len(pairs) == 1 and not remove:
        tmp, target = pairs[0]
        os.replace(tmp, target)
        return
    stale = [p for p in remove if os.path.lexists(p)]
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    try:
        for target in [t for _, t in pairs] + stale:
            backups[target] = _backup(target)
        for tmp, target in pairs:
            os.replace(tmp, target)
            done.append(target)
        for path in stale:
            os.unlink(path)
            done.append(path)
    except BaseException:
        for path in reversed(done):  # put back what was there
            with contextlib.suppress(OSError):
                old = backups.get(path)
                if old is not None:
                    os.replace(old, path)
                    backups[path] = None
                else:
                    os.unlink(path)
        raise
    finally:
        for old in backups.values():
            if old is not None:
                with contextlib.suppress(OSError):
                    os.unlink(old)


@contextlib.contextmanager
def atomic_paths(
    paths: Sequence[PathLike], *, remove: Sequence[PathLike] = (), force: bool = False
) -> Iterator[list[Path]]:
    """Yield one temporary path per target; when the block succeeds, all replace their targets
    together (and the files in ``remove``, stale members of the set, are deleted).

    A crash, Ctrl-C, SIGTERM (the CLI turns it into ``KeyboardInterrupt``) or exception inside
    the block, or a failed rename, leaves every target as it was and removes every temporary;
    an ``OSError`` (a full disk, a quota) becomes an :class:`~inspector.errors.InputError`
    naming the file and saying that none of the set was written. Stale temporaries of killed
    earlier writes of the targets are removed first. A read-only target is refused unless
    ``force``.
    """
    targets = [check_writable(p, force=force) for p in paths]
    resolved = [os.path.realpath(t) for t in targets]
    if len(set(resolved)) != len(resolved):
        raise InputError(f"{_names(targets)}: a set of outputs names one file twice")
    gone = [
        Path(p).expanduser()
        for p in remove
        if os.path.realpath(p) not in resolved and not Path(p).expanduser().is_dir()
    ]
    for path in gone:
        check_replaceable(path, force=force)
    for target in targets:
        clear_stale_temporaries(target)
    opened: list[tuple[int, Path]] = []
    current: Path | None = None
    try:
        for target in targets:
            current = target
            opened.append(_create_temporary(target))
        current = None  # the caller writes them: which one failed, only the error can say
        yield [tmp for _, tmp in opened]
        for (_, tmp), target in zip(opened, targets, strict=True):
            current = target
            os.chmod(tmp, output_mode(target))
        current = None
        _commit([(tmp, t) for (_, tmp), t in zip(opened, targets, strict=True)], gone)
    except BaseException as exc:
        for _, tmp in opened:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError):
            failed = _failed_target(exc, opened, targets, current)
            raise write_error(failed, exc, targets) from exc
        raise
    finally:
        for fd, _ in opened:
            os.close(fd)


def _failed_target(
    exc: OSError,
    opened: Sequence[tuple[int, Path]],
    targets: Sequence[Path],
    current: Path | None,
) -> Path | None:
    """The target whose write raised ``exc`` (by the temporary's name when the error has one)."""
    if len(targets) == 1:
        return targets[0]
    name = getattr(exc, "filename", None)
    for (_, tmp), target in zip(opened, targets, strict=False):
        if name is not None and os.fspath(name) in (str(tmp), str(target)):
            return target
    return current


@contextlib.contextmanager
def atomic_path(path: PathLike, *, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success (see
    :func:`atomic_paths`, of which this is the one-file case)."""
    with atomic_paths([path], force=force) as (tmp,):
        yield tmp


def write_text_atomic(path: PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the final path."""
    with atomic_path(path, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
