"""The scan page at 8k tokens in headless Chromium: under 10 MB and under 8,000 px tall at
1280 px, every head at a glance, one grid of pooled maps whose head a click enlarges at the
stated resolution, readable tokens in every table and chip, a virtual token strip whose pieces
join into words, the row picker repainting the text, no network. The scan is synthetic (a
SmolLM2-shaped 30 x 9-head scan of 8,192 tokens built by ``factories.make_scan_data``, no model)
and the page is the real page code; its draw time is measured by ``make bench`` (bench_long)."""

from __future__ import annotations

import base64
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from inspector.render.scan_choice import scan_report

from factories import make_scan_data

pytestmark = pytest.mark.browser

RAW_PIECES = """() => [...document.querySelectorAll("td, .ins-scan-tok, .ins-tok, option")]
  .map((e) => e.textContent).filter((t) => /[ĠĊ]/.test(t)).slice(0, 5)"""


def _png_size(href: str) -> tuple[int, int]:
    png = base64.b64decode(href.split(",", 1)[1])
    return struct.unpack(">II", png[16:24])


@pytest.fixture(scope="module")
def page_8k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_scan_data(8192, rows=(100, 4096, -1))
    return scan_report(data).save(tmp_path_factory.mktemp("scan") / "scan.html")


def test_scan_page_at_8k_tokens_fits_and_tells_heads_apart(page_8k: Path, opened: Any) -> None:
    assert page_8k.stat().st_size < 10e6
    o = opened(page_8k, wait=False)
    page = o.page
    page.wait_for_selector("html[data-inspector-drawn]", timeout=60_000)
    page.wait_for_selector("[data-scan-drawn]", timeout=60_000)
    o.check_clean()
    height = page.evaluate("document.documentElement.scrollHeight")
    assert height < 8000, height
    # heads at a glance: one small chart per head (and a key), sink and local shares
    glance = page.locator('figure[data-figure="scan-glance"] svg')
    assert glance.locator('path[fill="#1f77b4"]').count() == 30 * 9 + 1
    assert glance.locator("text", has_text="share on the first 4 tokens").count() == 1
    assert glance.bounding_box()["height"] < 900  # one screen
    # every head's pooled map in one grid: one bitmap, not a panel per head
    grid = page.locator("figure.ins-scan-maps[data-drawn] svg")
    assert grid.locator("image").count() == 1 and grid.locator("rect").count() < 30 * 9 + 200
    assert page.get_attribute("figure.ins-scan-maps", "data-norm") == "log"
    # no raw byte-level piece (Ġthe, Ċ) in any table cell, chip or picker
    assert page.evaluate(RAW_PIECES) == []
    o.check_clean()


def test_enlarged_head_draws_at_the_stated_resolution(page_8k: Path, opened: Any) -> None:
    o = opened(page_8k)
    page = o.page
    page.wait_for_selector("figure.ins-scan-maps[data-drawn]")
    intro = page.locator("#pooled .ins-help").inner_text()
    stated = re.search(r"enlarge it at (\d+) x (\d+) blocks of (\d+) tokens", intro)
    assert stated, intro
    side, block = int(stated.group(1)), int(stated.group(3))
    assert side * block >= 8192 > (side - 1) * block
    svg = page.locator("figure.ins-scan-maps svg")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    scale = box["width"] / float(svg.get_attribute("width"))
    # hovering a thumbnail names its positions and shows their text, pieces joined
    label = svg.locator("text", has_text=re.compile(r"^L3$")).first.bounding_box()
    x, y = label["x"] + label["width"] + 20 * scale, label["y"] + label["height"] / 2
    page.mouse.move(x, y)
    hover = page.locator("figure.ins-scan-maps .ins-scan-hover").inner_text()
    assert "layer 3, head 0: queries" in hover and "Hilliard" in hover, hover
    page.mouse.click(x, y)
    zoom = page.locator(".ins-zoom-box")
    zoom.wait_for()
    assert zoom.get_attribute("data-bins") == f"{side}x{side}"
    title = zoom.locator(".ins-zoom-title").inner_text()
    assert f"{side} x {side} blocks of {block} tokens" in title
    image = zoom.locator("svg image")
    href = image.get_attribute("href") or image.get_attribute("xlink:href")
    assert _png_size(href) == (side, side)  # one pixel per block, as stated
    assert image.bounding_box()["width"] >= 2 * side * 0.9  # drawn at 2+ px a block
    # another scale repaints the grid and the enlarged head
    page.select_option("figure.ins-scan-maps select.ins-fig-scale", "row")
    assert page.get_attribute("figure.ins-scan-maps", "data-norm") == "row"
    assert "share of the row's largest block" in zoom.locator(".ins-zoom-title").inner_text()
    page.keyboard.press("Escape")
    assert zoom.is_hidden()
    o.check_clean()


@pytest.mark.parametrize(("layers", "heads"), [(8, 9), (30, 9), (64, 9)])
def test_scan_figures_read_at_many_heads(
    opened: Any, figure_problems: Any, tmp_path: Path, layers: int, heads: int
) -> None:
    data = make_scan_data(2048, layers=layers, heads=heads, rows=(-1,), pool=128)
    o = opened(scan_report(data).save(tmp_path / "scan.html"))
    page = o.page
    page.wait_for_selector("figure.ins-scan-maps[data-drawn]")
    got = figure_problems(page)
    assert got["figures"] >= 4  # at a glance, pooled maps, sinks, sink curve
    assert got["small"] == [], got["small"][:5]
    assert got["overlaps"] == [], got["overlaps"][:5]
    # every head has its chart and its thumbnail, each layer its label
    glance = page.locator('figure[data-figure="scan-glance"] svg')
    assert glance.locator('path[fill="#1f77b4"]').count() == layers * heads + 1
    labels = page.locator("figure.ins-scan-maps svg text").all_text_contents()
    assert {f"L{i}" for i in range(layers)} <= set(labels)
    o.check_clean()


def test_row_explorer_reads_as_text(page_8k: Path, opened: Any) -> None:
    o = opened(page_8k)
    page = o.page
    page.wait_for_selector("[data-scan-drawn]", timeout=60_000)
    # the token strip holds only the lines in view, not 8,192 chips
    chips = page.locator(".ins-scan-tok")
    assert 50 < chips.count() < 2000
    # word pieces join without gaps: "␣H" "illi" "ard" read " Hilliard"
    line = page.locator(".ins-scan-line").last.inner_text()
    assert "Hilliard" in line and "H illi" not in line and "␣" not in line
    gap = page.evaluate(
        """() => { const a = document.querySelector('.ins-scan-tok[data-pos="8"]'),
                         b = document.querySelector('.ins-scan-tok[data-pos="9"]');
                   return a && b ? b.getBoundingClientRect().left - a.getBoundingClientRect().right
                                 : null; }"""
    )
    assert gap is None or abs(gap) < 0.5
    # the chosen query position is shown and highlighted; its top spans are listed
    assert page.locator(".ins-scan-tok.ins-scan-query").get_attribute("data-pos") == "8191"
    assert page.locator(".ins-scan-spans li").count() >= 1
    # picking another row repaints and scrolls the strip there
    page.select_option(".ins-scan-row", "4096")
    page.wait_for_selector('.ins-scan-tok.ins-scan-query[data-pos="4096"]', timeout=5_000)
    assert page.locator(".ins-scan-tok").count() < 2000
    page.locator(".ins-scan-strip").evaluate("el => { el.scrollTop = 0; }")
    page.wait_for_selector('.ins-scan-tok[data-pos="0"]', timeout=5_000)
    assert page.locator(".ins-scan-tok").count() < 2000
    # a single head and the max over heads work too
    page.select_option(".ins-scan-head", "3")
    page.select_option(".ins-scan-head", "max")
    assert "largest weight" in page.locator(".ins-scan-status").inner_text()
    o.check_clean()
