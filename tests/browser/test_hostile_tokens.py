"""Tokens that close attributes or scripts, in every kind of page, in real Chromium (issue 18).

The pages of :func:`factories.hostile_pages` (report, explain report, generation report,
compare, atlas and scan pages from tiny models whose tokenizers hold the added tokens of
``ATTRIBUTE_ATTACKS``) are loaded, hovered token by token, swept with the mouse and tabbed
through: no dialog may open, no request leave, no console error appear.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from factories import ATTRIBUTE_ATTACKS, PAGE_KINDS, hostile_pages

pytestmark = pytest.mark.browser

#: Where tokens are drawn with tooltips or handlers: hovered one by one.
HOVERED = ".ins-tok:visible, .ins-gen-input:visible, svg text:visible, .ins-scan-strip span"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile_pages(tmp_path_factory.mktemp("hostile-browser"))


@pytest.mark.parametrize("kind", PAGE_KINDS)
def test_token_attacks_never_run(opened: Any, pages: dict[str, Path], kind: str) -> None:
    o = opened(pages[kind])
    page = o.page
    page.wait_for_timeout(200)  # an autofocus'd onfocus= would fire on load
    items = page.locator(HOVERED)
    for i in range(min(items.count(), 24)):
        item = items.nth(i)
        try:
            item.scroll_into_view_if_needed(timeout=500)
            item.hover(timeout=500)
        except Exception:  # hidden by layout (a collapsed table): the sweep below covers it
            continue
    height = int(page.evaluate("() => document.documentElement.scrollHeight"))
    for top in range(0, height, 700):  # sweep the whole page with the mouse
        page.evaluate(f"() => window.scrollTo(0, {top})")
        for y in range(10, 900, 60):
            page.mouse.move(20 + (y * 7) % 1200, y)
    for _ in range(30):  # focus moves through everything focusable
        page.keyboard.press("Tab")
    page.wait_for_timeout(200)
    o.check_clean()  # no dialog, no request, no console error
    made = page.evaluate(
        "() => document.querySelectorAll('[onfocus], [onmouseover], [autofocus]').length"
    )
    assert made == 0
    if kind != "atlas":  # the atlas page shows statistics, not tokens
        shown = page.evaluate("() => document.body.innerText")
        data = page.evaluate(
            "() => Array.from(document.querySelectorAll('script[type=\"application/json\"]'))"
            ".map(s => s.textContent).join('')"
        )
        for attack in ATTRIBUTE_ATTACKS:
            assert attack in shown or attack in data.encode().decode("unicode_escape")
