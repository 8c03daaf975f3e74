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
import pandas as pd
import pytest

import inspector
from inspector.capture.types import AttentionStack, Capture
from inspector.explain.result import Explanation
from inspector.render import build_report
from inspector.render.sections.explain import explain_section

from factories import build_tiny_llama, bytelevel_tokenizer

pytestmark = pytest.mark.browser

TEXT = "<|endoftext|>\nThe cat sat on the mat.\nThe dog sat on the log, and a bird sang."

TABLE_CHECKS = """() => {
  const table = document.getElementById("head-metrics-table");
  const cells = [...table.querySelectorAll("tbody td")];
  const heads = [...table.querySelectorAll("thead th")];
  const column = heads.findIndex((th) => th.textContent === "role");
  const role = [...table.querySelectorAll("tbody tr")].map((tr) => tr.cells[column]);
  const view = table.parentElement.getBoundingClientRect();
  return {
    hidden: role.filter((c) => c.getBoundingClientRect().right > view.right + 1).length,
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
        report = build_report(capture, extra_sections=[explain_section(_explanation(doctored))])
        return report.save(folder / f"heads-{layers * 9}.html")


def _explanation(stack: AttentionStack) -> Explanation:
    """A "what mattered" summary of the doctored stack (no model run): importance falls with
    the head's index, the top heads are 0.1, 0.3 (sinks) and 0.2, 0.4, and every sink head is
    flagged, the most important ones the least overstated."""
    n_l, n_h = len(stack.layers), len(stack.heads)
    index = pd.MultiIndex.from_product([stack.layers, stack.heads], names=["layer", "head"])
    importance = np.linspace(1.0, 0.0, n_l * n_h)
    top = [(0, 1), (0, 3), (0, 2), (0, 4)]
    for rank, (layer, head) in enumerate(top):
        importance[layer * n_h + head] = 2.0 - rank * 0.1
    frame = pd.DataFrame({"importance": importance, "delta": -importance}, index=index)
    sinks = [
        (lh, 0.31 if lh == (0, 3) else 0.9 - 0.5 * i / (n_l * n_h))
        for i, lh in enumerate(index)
        if lh[1] % 3 == 0
    ]
    table = pd.DataFrame(
        [(layer, head, 0, "<|endoftext|>", raw, 0.1) for (layer, head), raw in sinks],
        columns=["layer", "head", "key_pos", "key_token", "raw_share", "norm_share"],
    )
    w = np.asarray(stack.weights, dtype=np.float64)
    return Explanation(
        tokens=stack.query, layer=0, raw=w[0].mean(0), norm=w[0].mean(0), rollout=w[-1].mean(0),
        importance=frame, top_heads=top, top_maps=[w[layer, head] for layer, head in top],
        sinks=table.set_index(["layer", "head"]), target="the next token",
    )  # fmt: skip


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
    assert table["clipped"] == [] and table["hidden"] == 0  # the role column whole, in view
    assert table["sinks"] == n_heads // 6  # "sink ⏎", not "sink Ċ"
    # what mattered: the top heads numbered in the importance map, and the sink head the warning
    # names (#2, layer 0 head 3) is in the table under it
    importance = page.locator('figure[data-figure="head-importance"] svg text').all_text_contents()
    assert {"1", "2", "3", "4"} <= set(importance)
    warning = page.locator("#what-mattered .ins-warning").inner_text()
    assert "#2 (layer 0, head 3)" in warning
    rows = page.locator("#what-mattered table.ins-explain-sinks tbody tr").all_inner_texts()
    assert any(r.split("\t")[:2] == ["0", "3"] for r in rows), rows
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
