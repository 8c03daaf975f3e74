"""Report size, build time and draw time on MiniLM against bertviz's own head_view.

For one sentence at about 32, 128 and 512 tokens: our report's size / bertviz
``head_view(html_action="return")`` HTML size (goal <= 1/20 at 128 tokens; 512-token report
< 40 MB), report build time / bertviz build time (goal <= 1/5), and the time until the report has
drawn in headless Chromium (goal < 3 s at 128 tokens; "drawn" = data decoded, eager bertviz
views, head grid and tables done; views over ``LAZY_LINES`` lines wait for a click).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "because",
    "it",
    "was",
    "tired",
    "and",
    "the",
    "dog",
    "watched",
    "it",
    "from",
    "the",
    "old",
    "wooden",
    "door",
    "while",
    "rain",
    "fell",
    "softly",
    "over",
    "the",
    "quiet",
    "town",
]


def _sentence(model: Any, n_tokens: int) -> str:
    words: list[str] = []
    while True:
        words.append(WORDS[len(words) % len(WORDS)])
        if len(model.tokenizer(" ".join(words))["input_ids"]) >= n_tokens:
            return " ".join(words[:-1]) + "."


def _bertviz_html(ins: Any) -> tuple[int, float]:
    import torch
    from bertviz import head_view

    start = time.perf_counter()
    attention = [torch.from_numpy(ins.attention[i][None].copy()) for i in range(len(ins.layers))]
    html = head_view(attention, ins.tokens, html_action="return").data
    return len(html.encode()), time.perf_counter() - start


def _draw_seconds(path: Path) -> float | None:
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
        page.wait_for_selector("html[data-inspector-drawn]", timeout=300_000)
        seconds = time.perf_counter() - start
        browser.close()
    return seconds


def main() -> str:
    import inspector

    model = inspector.load("minilm")
    rows = [
        "| tokens | report MB | bertviz MB | size ratio | report s | bertviz s | time ratio "
        "| drawn in Chromium s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in (32, 128, 512):
            ins = model.inspect(_sentence(model, n))
            start = time.perf_counter()
            report = ins.report()
            build = time.perf_counter() - start
            path = report.save(Path(tmp) / f"r{n}.html")
            size = path.stat().st_size
            bv_size, bv_time = _bertviz_html(ins)
            drawn = _draw_seconds(path)
            rows.append(
                f"| {len(ins.tokens)} | {size / 1e6:.2f} | {bv_size / 1e6:.1f} | "
                f"1/{bv_size / size:.0f} | {build:.2f} | {bv_time:.2f} | 1/{bv_time / build:.1f} | "
                f"{'n/a' if drawn is None else f'{drawn:.2f}'} |"
            )
    return "\n".join(rows)


if __name__ == "__main__":
    print(main())
