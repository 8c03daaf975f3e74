"""The "why this token" page in headless Chromium, network blocked: the route graph draws,
attention edges open their heads and rows, nodes show their lens, the text is painted.

A tiny GPT-2 traced for real, and a hand-built route graph over 512 tokens (the draw time)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch

import inspector
from inspector.render.trace import trace_page

from factories import FAMILY_TEXT, HOSTILE, build_family, make_routes

pytestmark = pytest.mark.browser


def _check_graph(o: Any, n_edges: int, n_nodes: int) -> None:
    page = o.page
    assert page.locator("#why svg path.ins-trace-edge").count() == n_edges
    assert page.locator("#why svg circle[data-node]").count() == n_nodes
    edge = page.locator('#why path.ins-trace-edge[data-block="attention"]').first
    edge.dispatch_event("click")
    assert "ins-selected" in (edge.get_attribute("class") or "")
    bars = page.locator("#why .ins-trace-bars g[data-head]")
    assert bars.count() >= 1
    row = page.locator("#why .ins-trace-row span[data-pos]")
    assert row.count() >= 1
    first = row.first.get_attribute("style") or ""
    assert "background" in first
    bars.first.dispatch_event("click")
    assert page.locator("#why .ins-trace-row").count() == 1  # the row replaced, not added
    node = page.locator("#why circle[data-node]").last  # the prediction, at the top
    node.scroll_into_view_if_needed()
    node.hover(force=True)
    tip = page.locator(".ins-tip")
    assert tip.is_visible() and "rank" in tip.inner_text()
    painted = page.locator("#why [data-trace-text] span[data-pos]")
    assert painted.count() > 0
    o.check_clean()


def test_traced_tiny_model_page_draws_and_answers(opened: Any, tmp_path: Path) -> None:
    model, tok = build_family("gpt2")
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(("attn.c_proj", "mlp.c_proj")):
                module.weight.mul_(20.0)
    m = inspector.load((model, tok))
    routes = m.inspect(FAMILY_TEXT).explain.information_flow(threshold=0.02)
    path = tmp_path / "trace.html"
    routes.report(path)
    o = opened(path)
    assert o.page.locator("#why .ins-answer").inner_text() == routes.answer()
    _check_graph(o, len(routes.edges), len(routes.nodes))


def test_512_token_page_draws_in_under_3_seconds(opened: Any, tmp_path: Path) -> None:
    routes = make_routes([HOSTILE[i % len(HOSTILE)] for i in range(512)], layers=30, heads=9,
                         fan=3)  # fmt: skip
    path = tmp_path / "long.html"
    trace_page(routes, path)
    start = time.perf_counter()
    o = opened(path)
    took = time.perf_counter() - start
    assert took < 3.0, f"drawn in {took:.2f} s"
    _check_graph(o, len(routes.edges), len(routes.nodes))
    # hostile tokens are text: no alert ran, no element was injected
    assert o.page.locator("#why img").count() == 0


def test_encoder_route_page_draws_without_a_lens(opened: Any, tmp_path: Path) -> None:
    model, tok = build_family("bert")
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.value.weight.mul_(8.0)
            layer.attention.output.dense.weight.mul_(12.0)
    m = inspector.load((model, tok))
    routes = m.inspect(FAMILY_TEXT).explain.information_flow(threshold=0.02)
    path = tmp_path / "route.html"
    routes.report(path)
    o = opened(path)
    page = o.page
    assert page.locator("#route .ins-answer").inner_text() == routes.answer()
    assert page.locator("#route svg path.ins-trace-edge").count() == len(routes.edges)
    assert (
        page.locator('#route path.ins-trace-edge[data-block="pool"]').count()
        == (routes.edges["block"] == "pool").sum()
    )
    edge = page.locator('#route path.ins-trace-edge[data-block="attention"]').first
    edge.dispatch_event("click")
    assert page.locator("#route .ins-trace-bars g[data-head]").count() >= 1
    node = page.locator('#route circle[data-node="X0_2"]')
    node.scroll_into_view_if_needed()
    node.hover(force=True)
    tip = page.locator(".ins-tip")
    assert tip.is_visible() and "pos 2" in tip.inner_text() and "rank" not in tip.inner_text()
    top = page.locator('#route circle[data-node="E"]')
    top.hover(force=True)
    assert "mean-pooled" in page.locator(".ins-tip").inner_text()
    assert page.locator("#route [data-trace-text] span[data-pos]").count() == len(routes.tokens)
    # WordPiece tokens carry no space mark: the painted text puts one before each new word
    painted = page.locator("#route [data-trace-text]").first.inner_text()
    words = [t for t in routes.tokens.tokens if not t.startswith("[")]
    assert f"{words[0]} {words[1]}" in painted, painted
    o.check_clean()
