"""Headless Chromium for the browser tier: Debian's chromium driven by Playwright, offline.

Needs Debian's chromium (``make browser``) and the Python ``playwright`` package; the tests are
skipped when either is missing. ``playwright install`` is never needed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run `make browser`")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    """A page opened from file:// with the network cut off; records what went wrong."""

    def __init__(
        self, browser: Any, path: Path, *, wait: bool = True, width: int = 1280, timeout: int = 60
    ) -> None:
        self.context = browser.new_context(
            accept_downloads=True, viewport={"width": width, "height": 900}
        )
        self.page = self.context.new_page()
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.logs: list[str] = []
        self.page.route("**/*", self._route)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", self._dialog)
        self.page.goto(path.resolve().as_uri())
        if wait:
            self.page.wait_for_selector("html[data-inspector-drawn]", timeout=timeout * 1000)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(msg.text)
        else:
            self.logs.append(msg.text)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def check_clean(self) -> None:
        assert self.blocked == [], f"requests left the page: {self.blocked}"
        assert self.errors == [], f"console errors: {self.errors}"
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"

    def close(self) -> None:
        self.context.close()


#: Per figure (an SVG drawn by figures.js or scan-maps.js): texts under 8 px as drawn (font size
#: times the SVG's scale on the page), and pairs of tick labels whose boxes overlap.
FIGURE_PROBLEMS = """() => {
  const small = [], overlaps = [];
  const overlap = (a, b) =>
    Math.max(0, Math.min(a.right, b.right) - Math.max(a.left, b.left)) *
    Math.max(0, Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top));
  const svgs = document.querySelectorAll(
    "figure.ins-fig svg.ins-fig-svg, figure.ins-scan-maps svg.ins-fig-svg");
  svgs.forEach((svg) => {
    const name = svg.closest("figure").getAttribute("data-figure");
    const scale = svg.getBoundingClientRect().width / Number(svg.getAttribute("width"));
    svg.querySelectorAll("text").forEach((t) => {
      const px = parseFloat(getComputedStyle(t).fontSize) * scale;
      if (t.textContent.trim() && px < 8 - 1e-6) small.push([name, t.textContent, px]);
    });
    svg.querySelectorAll("g").forEach((axis) => {
      const ticks = [...axis.querySelectorAll(":scope > g.tick > text")]
        .filter((t) => t.textContent.trim());
      const boxes = ticks.map((t) => t.getBoundingClientRect());
      for (let i = 0; i < boxes.length; i++) {
        for (let j = i + 1; j < boxes.length; j++) {
          if (overlap(boxes[i], boxes[j]) > 0.5) {
            overlaps.push([name, ticks[i].textContent, ticks[j].textContent]);
          }
        }
      }
    });
  });
  return {small, overlaps, figures: svgs.length};
}"""


@pytest.fixture
def figure_problems() -> Any:
    """``check(page)``: the page's figures' texts under 8 px and overlapping tick labels."""
    return lambda page: page.evaluate(FIGURE_PROBLEMS)


@pytest.fixture
def opened(browser: Any) -> Iterator[Any]:
    pages: list[Opened] = []

    def open_(path: Path, *, wait: bool = True, width: int = 1280, timeout: int = 60) -> Opened:
        page = Opened(browser, path, wait=wait, width=width, timeout=timeout)
        pages.append(page)
        return page

    yield open_
    for p in pages:
        p.close()
