"""Shared helpers for the benchmarks: timing, child scripts, the Chromium draw time."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

#: Set by :func:`in_process` (the smoke mode): child scripts run in this process.
_IN_PROCESS = [False]


@contextlib.contextmanager
def in_process() -> Iterator[None]:
    """Run every child script of :func:`run_script` in this process instead of a fresh
    interpreter: the same code without the seconds each start-up costs (the smoke mode, whose
    numbers mean nothing anyway)."""
    _IN_PROCESS.append(True)
    try:
        yield
    finally:
        _IN_PROCESS.pop()


def run_script(
    code: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code args...`` (``env``: its whole environment) and return what it
    printed; inside :func:`in_process`, run it here with ``sys.argv`` and ``os.environ`` set."""
    if not _IN_PROCESS[-1]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=None if env is None else dict(env),
            cwd=cwd,
            capture_output=True,
            text=True,
        )
    saved_argv, saved_env = sys.argv, dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    code_rc = 0
    try:
        sys.argv = ["-c", *args]
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(code, "<bench child>", "exec"), {"__name__": "__main__"})
    except BaseException:  # a failing child: its traceback, as a subprocess would print it
        err.write(traceback.format_exc())
        code_rc = 1
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["-c", *args], code_rc, out.getvalue(), err.getvalue())


def checked(done: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a child script that must have succeeded (its stderr's tail otherwise)."""
    if done.returncode != 0:
        raise RuntimeError(f"a benchmark's child script failed: {done.stderr[-2000:]}")
    return done.stdout


#: Python source for a benchmark's child process (``python -c``): ``measure(fn)`` runs ``fn``
#: once while a thread polls the process's RSS every millisecond and returns ``(result,
#: seconds, peak RSS added in bytes)``.
MEASURE_SOURCE = r"""
import threading as _threading, time as _time
import psutil as _psutil
def measure(fn):
    proc = _psutil.Process()
    peak = [0]
    done = _threading.Event()
    def poll():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            _time.sleep(0.001)
    before = proc.memory_info().rss
    thread = _threading.Thread(target=poll)
    thread.start()
    start = _time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = _time.perf_counter() - start
        done.set()
        thread.join()
    return result, seconds, max(peak[0], proc.memory_info().rss) - before
"""


def best_time(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` runs of ``fn`` in seconds: robust to a busy machine."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def draw_seconds(path: Path, *selectors: str) -> float | None:
    """Seconds from opening ``path`` in headless Chromium until ``html[data-inspector-drawn]``
    and every other selector in ``selectors`` are present (None without Chromium/Playwright)."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        page = browser.new_page()
        page.route(
            "**/*",
            lambda r: (
                r.continue_()
                if r.request.url.startswith(("file:", "data:", "blob:"))
                else r.abort()
            ),
        )
        start = time.perf_counter()
        page.goto(path.as_uri(), wait_until="commit")
        for selector in ("html[data-inspector-drawn]", *selectors):
            page.wait_for_selector(selector, timeout=300_000)
        seconds = time.perf_counter() - start
        browser.close()
    return seconds
