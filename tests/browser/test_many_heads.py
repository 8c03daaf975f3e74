"""Reports of models with many heads read in a browser: 72, 270 (SmolLM2's 30 x 9) and 576
(64 x 9) heads of tiny random LLaMAs, some heads made sinks (on a long special token as SmolLM2's
``<|im_start|>``, or on a newline, ``Ċ``) and some previous-token heads, so the roles differ. In
every figure: no text under 8 px and no two tick labels overlapping (bounding boxes, as drawn at
1280 px); the every-head table shows readable tokens, no ``nan`` and its whole role column; the
model view fits its column at 1280 and 1920 px (headless Chromium, offline)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import inspector
from inspector.capture.types import AttentionStack, Capture
from inspector.render import build_report

from factories import build_tiny_llama, bytelevel_tokenizer

pytestmark = pytest.mark.browser

TEXT = "<|endoftext|>\nThe cat sat on the mat.\nThe dog sat on the log, and a bird sang."

TABLE_CHECKS = """() => {
  const table = document.getElementById("head-metrics-table");
  const cells = [...table.querySelectorAll("tbody td")];
  const role = [...table.querySelectorAll("tbody td:last-child")];
  return {
    raw: cells.filter((c) => /[ĠĊ]/.test(c.textContent)).map((c) => c.textContent).slice(0, 5),
    nan: cells.filter((c) => c.textContent.trim() === "nan").length,
    dash: cells.filter((c) => c.textContent.trim() === "–").length,
    clipped: role.filter((c) => c.scrollWidth > c.clientWidth + 1).map((c) => c.textContent),
    sinks: cells.filter((c) => c.textContent === "sink ⏎").length,
  };
}"""


def _report(layers: int, folder: Path) -> Path:
    """A tiny LLaMA with ``layers`` x 9 heads; heads 0, 3, 6 of every layer made sinks (on the
    first token, ``<|endoftext|>``, in even layers, on the newline after it in odd ones), heads
    1, 4, 7 previous-token heads, the rest left as they are."""
    model, tok = build_tiny_llama(
        bytelevel_tokenizer(False), layers=layers, heads=9, kv_heads=3, head_dim=4
    )
    ins = inspector.load(model, tok).inspect(TEXT)
    stack = ins.capture.stacks["self"]
    assert stack.query.tokens[:2] == ("<|endoftext|>", "Ċ")
    w = np.array(stack.weights, dtype=np.float32)
    n = w.shape[-1]
    w[:, 0::3] *= 0.1
    w[0::2, 0::3, :, 0] += 0.9
    w[1::2, 0::3, 1:, 1] += 0.9
    w[1::2, 0::3, 0, 0] += 0.9
    previous = np.eye(n, k=-1, dtype=np.float32)
    previous[0, 0] = 1.0
    w[:, 1::3] = 0.2 * w[:, 1::3] + 0.8 * previous
    doctored = AttentionStack(
        w, stack.query, stack.key, causal=True, layers=stack.layers, heads=stack.heads
    )
    capture = Capture({"self": doctored}, ins.capture.metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # windowed views: their budget is tested elsewhere
        return build_report(capture).save(folder / f"heads-{layers * 9}.html")


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("many-heads")
    return {layers * 9: _report(layers, folder) for layers in (8, 30, 64)}


@pytest.mark.parametrize("n_heads", [72, 270, 576])
def test_figures_read_at_many_heads(
    reports: dict[int, Path], opened: Any, figure_problems: Any, n_heads: int
) -> None:
    o = opened(reports[n_heads], timeout=120)
    page = o.page
    got = figure_problems(page)
    assert got["figures"] >= 5
    assert got["small"] == [], got["small"][:5]
    assert got["overlaps"] == [], got["overlaps"][:5]
    # the roles grid writes the labels that fit and says how many it left out
    roles = page.locator('figure[data-figure="head-roles-self"] svg text').all_text_contents()
    written = roles.count("prev")
    note = [t for t in roles if "too small to read left out" in t]
    assert written == n_heads // 3 or note, (written, note)
    # the distance matrix: every head up to 300, named blocks beyond; never "token blocks"
    title = page.locator('figure[data-figure="head-distances-self"] svg').inner_html()
    assert "token blocks" not in title
    assert ("every head, in cluster order" in title) == (n_heads <= 300)
    # MDS: head names, no numbers on the axes to mistake them for
    mds = page.locator('figure[data-figure="head-mds-self"] svg')
    assert any(re.fullmatch(r"L\d+ H\d", t) for t in mds.locator("text").all_text_contents())
    assert all(not t.strip() for t in mds.locator(".tick text").all_text_contents())
    # the every-head table: readable tokens, no nan, the role column whole
    table = page.evaluate(TABLE_CHECKS)
    assert table["raw"] == [] and table["nan"] == 0 and table["dash"] > 0
    assert table["clipped"] == []
    assert table["sinks"] == n_heads // 6  # "sink ⏎", not "sink Ċ"
    o.check_clean()


@pytest.mark.parametrize("width", [1280, 1920])
def test_model_view_fits_its_column(reports: dict[int, Path], opened: Any, width: int) -> None:
    o = opened(reports[270], width=width, timeout=120)
    fit = o.page.evaluate(
        """() => {
          const section = document.querySelector("#model-view .ins-section-body");
          const svg = document.querySelector("#model-view [data-bv='vis'] svg");
          const vis = document.querySelector("#model-view [data-bv='vis']");
          const s = section.getBoundingClientRect(), v = svg.getBoundingClientRect();
          return {svg: v.width, right: v.right, column: s.right,
                  scroll: vis.scrollWidth - vis.clientWidth};
        }"""
    )
    assert fit["svg"] > 500
    assert fit["right"] <= fit["column"] + 1 and fit["scroll"] <= 0, fit
    o.check_clean()
