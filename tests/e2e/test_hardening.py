"""Failure behaviour: unsafe checkpoints, threads, memory, interrupted writes, model state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


@pytest.mark.slow
def test_out_of_memory_under_a_real_limit(tmp_path):
    """A subprocess with a capped address space gets the advice, not a crash."""
    code = textwrap.dedent(
        """
        import resource, sys
        import inspector
        m = inspector.load("minilm")
        m.inspect("warm up")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (used + 40 * 2**20, hard))
        try:
            m.inspect(" ".join(["word"] * 500))
        except inspector.ResourceError as exc:
            print("ADVICE", exc)
            sys.exit(3)
        print("NO ERROR")
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 3, out.stdout + out.stderr[-2000:]
    assert "layers=" in out.stdout and "float16" in out.stdout
