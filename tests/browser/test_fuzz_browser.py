"""Fuzzing the report with hostile tokens, confirmed in real Chromium.

Every case puts hostile strings into both the input text and the token strings (a capture built
directly from numpy, as a tokenizer could produce them). The page must show them literally, run
none of them, send no request, and keep its layout usable (no token blows up the page width)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inspector.render import build_report

from factories import make_capture

pytestmark = pytest.mark.browser


ATTACKS = [
    "</script><script>alert(1)</script>",
    "<script>alert(2)</script>",
    '"><img src=x onerror=alert(3)>',
    "<svg onload=alert(4)>",
    "<iframe src=javascript:alert(5)>",
    "javascript:alert(6)",
    "<a href='http://example.com/x'>link</a>",
    "<img src='http://127.0.0.2/beacon.png'>",
    "<link rel=stylesheet href='http://example.com/s.css'>",
    "<style>body{background:url(http://example.com/bg.png)}</style>",
    "x;background:url(http://example.com/a.png)",
    "{{ 7*7 }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "${alert(7)}",
    "`${alert(8)}`",
    "'; alert(9); '",
    '"); alert(10); ("',
    "\\u003cscript\\u003ealert(11)\\u003c/script\\u003e",
    "<!--",
    "]]>",
    "&lt;script&gt;alert(12)&lt;/script&gt;",
    "<base href='http://example.com/'>",
    "<meta http-equiv=refresh content='0;url=http://example.com'>",
    "<form action=http://example.com><input name=q></form>",
    "</textarea><script>alert(13)</script>",
    "\u202eRTL override\u202c",
    "مرحبا بالعالم",
    "🐈‍⬛🏳️‍🌈",
    "\x00\x1b[31mansi",
    "W" * 400,  # a very long token
]


def _cases() -> list[list[str]]:
    """Each case: [CLS] + a few attacks + [SEP], so each page holds several at once."""
    step = 5
    return [["[CLS]", *ATTACKS[i : i + step], "[SEP]"] for i in range(0, len(ATTACKS), step)]


@pytest.mark.parametrize("tokens", _cases(), ids=lambda t: f"{len(t) - 2}-attacks")
def test_hostile_tokens_never_run(opened: Any, tmp_path: Path, tokens: list[str]) -> None:
    text = " ".join(tokens[1:-1])
    cap = make_capture(tokens, text=text)
    path = build_report(cap).save(tmp_path / "fuzz.html")
    o = opened(path)
    page = o.page
    page.wait_for_timeout(300)
    # hover the head view and the grid, where tooltips render tokens
    for locator in ("#head-view svg text", "figure[data-figure=head-grid-self] svg"):
        items = page.locator(locator)
        if items.count():
            items.nth(min(1, items.count() - 1)).hover()
            page.wait_for_timeout(100)
    o.check_clean()  # no request left the page, no console error, no dialog

    def printable(s: str) -> str:
        return "".join(c for c in s if c.isprintable())

    shown = printable(page.locator("#overview").inner_text())
    for tok in tokens[1:-1]:
        assert printable(tok)[:60] in shown
    assert page.locator("img[src='x'], iframe, form, base, meta[http-equiv]").count() == 0
    assert page.evaluate("() => window.__pwned === undefined")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280 * 1.5, f"a token broke the layout: page is {width}px wide"
