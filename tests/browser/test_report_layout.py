"""The report as a reader meets it: long inputs within the drawing budget, header-safe anchors,
unique element ids, distinct head colours, no console noise (headless Chromium, offline)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from inspector.render import build_report
from inspector.render.budget import VIEW_LINES, PageBudgetWarning

from factories import make_capture

pytestmark = pytest.mark.browser

DUPLICATE_IDS = """() => {
  const seen = {};
  document.querySelectorAll('[id]').forEach(e => { seen[e.id] = (seen[e.id] || 0) + 1; });
  return Object.keys(seen).filter(k => seen[k] > 1);
}"""


def _long_text(model: Any, n_tokens: int) -> str:
    words = ["the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired"]
    out: list[str] = []
    while len(model.tokenizer(" ".join(out))["input_ids"]) < n_tokens + 1:
        out.append(words[len(out) % len(words)])
    return " ".join(out[:-1])


@pytest.mark.slow
def test_minilm_full_report_at_512_tokens_draws_within_its_drawing_budget(
    minilm: Any, opened: Any, tmp_path: Path
) -> None:
    ins = minilm.inspect(_long_text(minilm, 520), truncation=True)
    assert len(ins.tokens) == 512
    with pytest.warns(PageBudgetWarning, match="tokens at a time"):
        report = ins.report()
    path = report.save(tmp_path / "long.html")
    o = opened(path, timeout=120)  # its draw time is measured by make bench (bench_report)
    page = o.page
    # everything, views included, is drawn once data-inspector-drawn is set
    for view in ("head-view", "model-view"):
        assert page.get_attribute(f"#{view} .ins-bertviz", "data-drawn") == "1"
        lines = page.locator(f"#{view} svg line").count()
        assert 0 < lines <= VIEW_LINES * 1.6, (view, lines)
        assert page.locator(f"#{view} .ins-window-note").is_visible()
    assert page.get_attribute("html", "data-figures-drawn") == "5"
    # moving the head view's window redraws it on other tokens
    first = page.locator("#head-view svg text").first.text_content()
    assert first == "[CLS]"
    page.locator('#head-view button.ins-window-move[data-step="1"]').click()
    page.wait_for_function(
        "() => document.querySelector('#head-view svg text').textContent !== '[CLS]'"
    )
    assert page.locator("#head-view input.ins-window-start").input_value() != "0"
    # the zoom reads a head from the 512 x 512 stack
    grid = page.locator('figure[data-figure="head-grid-self"] svg')
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    scale = box["width"] / float(grid.get_attribute("width"))
    page.mouse.click(box["x"] + 44 * scale, box["y"] + 64 * scale)
    page.locator(".ins-zoom-box svg image").wait_for()
    assert page.evaluate(DUPLICATE_IDS) == []
    o.check_clean()
    assert o.logs == []


@pytest.mark.parametrize("width", [1280, 800])
def test_headings_land_below_the_sticky_header(opened: Any, tmp_path: Path, width: int) -> None:
    path = build_report(make_capture()).save(tmp_path / "r.html")
    o = opened(path, width=width)
    page = o.page
    links = page.locator("header.ins-header nav a")
    assert links.count() >= 5
    for i in range(links.count()):
        link = links.nth(i)
        target = str(link.get_attribute("href"))
        link.click()
        page.wait_for_timeout(50)
        header = page.locator("header.ins-header").bounding_box()
        heading = page.locator(f"{target} h2").bounding_box()
        bottom = page.evaluate("document.documentElement.scrollHeight - window.innerHeight")
        at_end = page.evaluate("window.scrollY") >= bottom - 1
        assert heading["y"] >= header["y"] + header["height"] or at_end, (width, target)
        assert heading["y"] >= 0
    # a collapsed section opens when the navigation goes there
    page.locator("button.ins-collapse-all[data-action=collapse]").click()
    assert not page.locator("#head-grid .ins-section-body").is_visible()
    page.locator('header.ins-header nav a[href="#head-grid"]').click()
    assert page.locator("#head-grid .ins-section-body").is_visible()
    o.check_clean()


def test_no_duplicate_ids_distinct_head_colours_and_quiet_console(
    opened: Any, tmp_path: Path
) -> None:
    cap = make_capture(layers=2, heads=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PageBudgetWarning)  # a small page warns of nothing
        path = build_report(cap).save(tmp_path / "r.html")
    o = opened(path)
    page = o.page
    assert page.evaluate(DUPLICATE_IDS) == []
    assert page.locator('[data-bv="vis"]').count() == 2
    # one colour per head in the head view (bertviz repeats d3's 10 colours; ours do not)
    fills = page.evaluate(
        '() => [...document.querySelectorAll(\'#head-view svg rect[width="20"][height="20"]\')]'
        ".map(r => r.getAttribute('fill'))"
    )
    assert len(fills) == 12 and len(set(fills)) == 12, fills
    o.check_clean()
    assert o.logs == [], f"bertviz's console lines reached the console: {o.logs}"
