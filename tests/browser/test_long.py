"""The scan page at 8k tokens in headless Chromium: under 10 MB, drawn (its time is measured by
``make bench``: bench_long), a virtual token strip, the row picker repainting the text, no
network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inspector.render.long import scan_report

from factories import make_scan_data

pytestmark = pytest.mark.browser


def test_scan_page_at_8k_tokens_is_small_and_draws_bitmaps(opened: Any, tmp_path: Path) -> None:
    data = make_scan_data(8192, rows=(100, 4096, -1))
    path = scan_report(data).save(tmp_path / "scan.html")
    assert path.stat().st_size < 10e6
    o = opened(path, wait=False)
    page = o.page
    page.wait_for_selector("html[data-inspector-drawn]", timeout=60_000)
    page.wait_for_selector("[data-scan-drawn]", timeout=60_000)
    o.check_clean()
    # every head's pooled map is a bitmap: one <image> per head, no rect per cell
    assert page.locator('figure[data-figure^="scan-pooled-"] svg image').count() == 30 * 9
    # no rect per cell (32 x 32 = 1,024 cells a head): only frames and colour-bar steps
    assert page.locator('figure[data-figure^="scan-pooled-"] svg rect').count() < 30 * 9 * 100
    # the token strip holds only the lines in view, not 8,192 chips
    chips = page.locator(".ins-scan-tok")
    assert 50 < chips.count() < 2000
    # the chosen query position is shown and highlighted; its top spans are listed
    assert page.locator(".ins-scan-tok.ins-scan-query").get_attribute("data-pos") == "8191"
    assert page.locator(".ins-scan-spans li").count() >= 1
    assert page.locator(".ins-scan-spans li").first.inner_text().startswith("0 (")
    # picking another row repaints and scrolls the strip there
    page.select_option(".ins-scan-row", "4096")
    page.wait_for_selector('.ins-scan-tok.ins-scan-query[data-pos="4096"]', timeout=5_000)
    assert page.locator(".ins-scan-tok").count() < 2000
    # scrolling renders other lines, never all of them
    page.locator(".ins-scan-strip").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_selector('.ins-scan-tok[data-pos="0"]', timeout=5_000)
    assert page.locator(".ins-scan-tok").count() < 2000
    # a single head and the max over heads work too
    page.select_option(".ins-scan-head", "3")
    page.select_option(".ins-scan-head", "max")
    assert "largest weight" in page.locator(".ins-scan-status").inner_text()
    # hovering a pooled block names its positions and their text
    image = page.locator('figure[data-figure="scan-pooled-0"] svg image').first
    image.scroll_into_view_if_needed()
    box = image.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    hover = page.locator('figure[data-figure="scan-pooled-0"] .ins-scan-hover').inner_text()
    assert "queries 0–255" in hover and "keys 0–255" in hover and "<|im_start|>" in hover
    o.check_clean()
