"""Kernel-enforced memory limits for the tests: a fresh memory cgroup (v1 or v2) and a child
process run inside it.

A cgroup's limit is enforced lazily, page by page, exactly as in a container: a process that
allocates past it is killed (exit 137, no message). An address-space limit (RLIMIT_AS) would
fail the allocation at once instead, so it does not test the same thing. Where no cgroup can
be created here (not root, no delegated memory controller) :func:`memory_cgroup` skips the test
with the reason.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_IDS = itertools.count()
#: The CLI, run by :func:`run_in` when no other code is given.
CLI = "from inspector.cli import main; raise SystemExit(main())"


def _make(limit: int) -> Path | None:
    """A fresh memory cgroup with ``limit`` bytes (and no swap), or ``None`` where none can be
    made here."""
    v1 = Path("/sys/fs/cgroup/memory")
    name = f"inspector-test-{os.getpid()}-{next(_IDS)}"
    if (v1 / "memory.limit_in_bytes").exists() and os.access(v1, os.W_OK):
        folder = v1 / name
        folder.mkdir()
        (folder / "memory.limit_in_bytes").write_text(str(limit))
        if (folder / "memory.memsw.limit_in_bytes").exists():
            (folder / "memory.memsw.limit_in_bytes").write_text(str(limit))
        return folder
    for v2 in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        controllers = v2 / "cgroup.controllers"
        if controllers.exists() and "memory" in controllers.read_text() and os.access(v2, os.W_OK):
            folder = v2 / name
            folder.mkdir()
            (folder / "memory.max").write_text(str(limit))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            return folder
    return None


@contextlib.contextmanager
def memory_cgroup(limit: int) -> Iterator[Path]:
    """A fresh memory cgroup of ``limit`` bytes for the block (removed after it); skips the test
    where none can be created."""
    try:
        folder = _make(limit)
    except OSError as exc:
        pytest.skip(f"cannot create a memory cgroup here ({exc})")
    if folder is None:
        pytest.skip("no writable memory cgroup (v1 or v2) here; RLIMIT_AS would not be lazy")
    try:
        yield folder
    finally:
        for _ in range(50):  # the last process may take a moment to leave it
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def run_in(
    folder: Path, argv: list[str], *, code: str = CLI, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code argv...`` (default: the CLI) as a process of the cgroup ``folder``:
    a shell writes its own pid to ``cgroup.procs`` and then becomes Python."""
    procs = folder / "cgroup.procs"
    cmd = ["sh", "-c", f'echo $$ > "{procs}" && exec "$0" "$@"', sys.executable, "-c", code]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run(
        cmd + argv, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


def peak_bytes(folder: Path) -> int | None:
    """The most memory the cgroup ``folder`` has held (page cache included), where the kernel
    says (v1 ``memory.max_usage_in_bytes``, v2 ``memory.peak``)."""
    for name in ("memory.max_usage_in_bytes", "memory.peak"):
        try:
            return int((folder / name).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return None


def killed(done: subprocess.CompletedProcess[str]) -> bool:
    """Whether the kernel killed the process (SIGKILL: the memory limit)."""
    return done.returncode in (-9, 137)


__all__ = ["CLI", "REPO", "killed", "memory_cgroup", "peak_bytes", "run_in"]
