"""Shared timing helper for the benchmarks."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
