"""Failure behaviour: unsafe checkpoints, threads, memory, interrupted writes, model state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import inspector
from inspector._io import atomic_path, write_text_atomic
from inspector.errors import InputError, ModelLoadError


def test_non_transformer_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError):
        inspector.load(str(tmp_path))


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old complete report")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half a rep")
        raise KeyboardInterrupt
    assert target.read_text() == "old complete report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_killed_mid_write_never_truncates(tmp_path):
    """SIGKILL while a report is being written: the target stays absent or complete."""
    target = tmp_path / "big.html"
    target.write_text("previous")
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from inspector._io import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "w") as f:
                for i in range(10_000):
                    f.write("x" * 1000)
                    f.flush()
                    if i == 100:
                        print("WRITING", flush=True)
                        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "WRITING"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert target.read_text() == "previous"
    partial = [p for p in tmp_path.iterdir() if p.name != "big.html"]
    assert all(
        p.name.startswith(".inspector-tmp-") and p.name.endswith("-big.html") for p in partial
    )


def test_unwritable_destinations(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create the folder"):
        write_text_atomic(blocker / "sub" / "r.html", "data")
    with pytest.raises(InputError, match="is a folder"):
        write_text_atomic(tmp_path, "data")
    with pytest.raises(InputError):
        write_text_atomic("/proc/inspector-test/r.html", "data")


def test_full_disk(tmp_path, monkeypatch):
    import errno

    target = tmp_path / "r.html"

    def full(self, *_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(InputError, match="No space left"):
        write_text_atomic(target, "data")
    assert list(tmp_path.iterdir()) == []
