"""Reports and views in real headless Chromium, with every network request blocked.

Needs Debian's chromium (``make browser``) and the Python ``playwright`` package; skipped when
either is missing. ``playwright install`` is never needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from inspector.render import build_report, head_view, model_view

from factories import HOSTILE, make_capture

pytestmark = pytest.mark.browser


def _visible_text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def test_minilm_report_draws_offline(minilm: Any, opened: Any, tmp_path: Path) -> None:
    ins = minilm.inspect("The cat sat on the mat because it was tired.", "It did not move.")
    path = ins.report(tmp_path / "cat.html").save(tmp_path / "cat.html")
    o = opened(path)
    page = o.page
    # bertviz views drew their SVG lines
    assert page.locator("#head-view svg line").count() > 0
    assert page.locator("#model-view svg line").count() > 0
    # every token of the input is visible
    strip = page.locator("#overview .ins-tokens").first
    assert strip.is_visible()
    shown = strip.inner_text()
    for tok in ins.tokens:
        assert tok in shown
    # the head grid drew every head (one figure, one bitmap); hover reads a weight with the
    # readable and raw tokens; a click opens the head enlarged, in view, with a colour bar
    grid = page.locator('figure[data-figure="head-grid-self"]')
    assert grid.get_attribute("data-drawn") == "1" and grid.get_attribute("data-norm") == "head"
    svg = grid.locator("svg")
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    scale = box["width"] / float(svg.get_attribute("width"))
    at = (box["x"] + 44 * scale, box["y"] + 64 * scale)  # inside head 0.0 (title 24, top 30)
    page.mouse.move(*at)
    tip = page.locator(".ins-tip")
    assert tip.is_visible() and "layer 0, head 0" in tip.inner_text()
    page.mouse.click(*at)
    zoom = page.locator(".ins-zoom-box")
    zoom.locator("svg").wait_for()
    zb = zoom.bounding_box()
    assert zb["y"] >= 0 and zb["y"] + 40 < 900 and zb["x"] + zb["width"] <= 1280  # in view
    assert zoom.locator("svg .tick").count() > 5  # the colour bar's axis and the token axes
    page.locator(".ins-zoom-close").click()
    # switching the grid to one shared scale redraws it and says so
    grid.locator("select.ins-fig-scale").select_option("fixed")
    assert grid.get_attribute("data-norm") == "fixed"
    # the head metrics & roles figures drew as SVG: a heatmap per metric, roles, distances, MDS
    assert page.get_attribute("html", "data-figures-drawn") == "5"  # with the head grid
    heatmaps = page.locator('#head-metrics figure[data-figure="head-metrics-self"] svg')
    assert heatmaps.locator("rect").count() > 72
    mds_svg = page.locator('#head-metrics figure[data-figure="head-mds-self"] svg')
    assert mds_svg.locator("circle").count() == 72
    labels = mds_svg.locator("text").all_text_contents()
    assert sum(bool(re.fullmatch(r"L\d+ H\d+", t)) for t in labels) >= 30  # heads, not numbers
    _check_labels_do_not_overlap(page, mds_svg)
    _check_figure_downloads(page, "#head-metrics", tmp_path)
    # downloads produce files
    for selector, suffix in [
        ('button[data-download="frame"]', ".csv"),
        ('button[data-target="head-metrics-table"]', ".csv"),
        ('figure[data-figure="head-grid-self"] button[data-format="png"]', ".png"),
    ]:
        with page.expect_download() as info:
            page.locator(selector).first.click()
        target = tmp_path / ("dl" + suffix)
        info.value.save_as(target)
        assert target.stat().st_size > 100, selector
    csv = (tmp_path / "dl.csv").read_text(encoding="utf-8")  # the metrics CSV, saved last
    assert csv.startswith("kind,layer,head,")
    # sorting the metrics table
    header = page.locator("table.ins-metrics th").nth(3)
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    o.check_clean()
    assert o.logs == [], f"the page logged to the console: {o.logs}"


def _check_labels_do_not_overlap(page: Any, svg: Any) -> None:
    boxes = page.evaluate(
        """(svg) => [...svg.querySelectorAll('text')]
            .filter(t => !t.closest('.tick') && /^\\d+\\.\\d+$/.test(t.textContent))
            .map(t => { const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; })
        """,
        svg.element_handle(),
    )
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
            assert not (overlap[0] > 0.5 and overlap[1] > 0.5), (a, b)


def _check_figure_downloads(page: Any, scope: str, tmp_path: Path) -> None:
    """Every figure in ``scope`` offers SVG (a standalone <svg> document) and PNG (real PNG)."""
    figures = page.locator(f"{scope} figure.ins-fig")
    assert figures.count() > 0
    for i in range(figures.count()):
        fig = figures.nth(i)
        name = fig.get_attribute("data-figure")
        assert fig.locator("svg.ins-fig-svg").count() == 1, name
        for fmt in ("svg", "png"):
            with page.expect_download() as info:
                fig.locator(f'button.ins-fig-save[data-format="{fmt}"]').click()
            assert info.value.suggested_filename == f"{name}.{fmt}"
            target = tmp_path / f"{name}.{fmt}"
            info.value.save_as(target)
            data = target.read_bytes()
            if fmt == "png":
                assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, name
            else:
                text = data.decode("utf-8")
                root = text.split("?>", 1)[-1].lstrip()
                assert root.startswith('<svg xmlns="http://www.w3.org/2000/svg"'), text[:200]
                assert "<rect" in text and text.rstrip().endswith("</svg>")


def test_figures_draw_hover_and_download(opened: Any, tmp_path: Path) -> None:
    from markupsafe import Markup

    from inspector.render import Section
    from inspector.render.figures import FIGURE_SCRIPTS, FigureSpec, heatmap

    big = np.random.default_rng(0).random((90, 90))
    spec = FigureSpec(
        "big-map",
        "a 90 x 90 map, painted on a canvas",
        (heatmap(big, rows=[f"q{i}" for i in range(90)], cols=[f"k{i}" for i in range(90)]),),
    )

    def big_section(ctx: Any) -> Section:
        from inspector.render._assets import environment

        html = environment().get_template("sections/_figures.html.j2").render(figures=[spec])
        return Section("big", "Big", html=Markup(html), scripts=FIGURE_SCRIPTS)

    cap = make_capture(["[CLS]", "a", "b", "c", "[SEP]"])
    path = build_report(cap, extra_sections=[big_section]).save(tmp_path / "f.html")
    o = opened(path)
    page = o.page
    assert page.get_attribute("html", "data-figures-drawn") == "6"
    # small heatmaps: one rect per cell, values written in the cells, a colour scale
    heatmaps = page.locator('figure[data-figure="head-metrics-self"] svg')
    assert heatmaps.locator("rect").count() >= 12 * 6
    assert heatmaps.locator("text", has_text="0.").count() > 0
    # the big map is one bitmap inside the SVG, with thinned labels
    big_svg = page.locator('figure[data-figure="big-map"] svg')
    assert big_svg.locator("image").count() == 1
    assert 0 < big_svg.locator("text", has_text="q").count() < 90
    # hovering a cell shows its labels and value
    big_svg.locator("image").scroll_into_view_if_needed()
    box = big_svg.locator("image").bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    tip = page.locator(".ins-tip")
    assert tip.is_visible() and "q0" in tip.inner_text() and "k0" in tip.inner_text()
    _check_figure_downloads(page, "main", tmp_path)
    o.check_clean()


def test_frame_csv_matches_embedded_data(opened: Any, tmp_path: Path) -> None:
    cap = make_capture(["[CLS]", "a", "b,c", '"q"', "[SEP]"])
    path = build_report(cap).save(tmp_path / "r.html")
    o = opened(path)
    with o.page.expect_download() as info:
        o.page.locator('button[data-download="frame"]').click()
    info.value.save_as(tmp_path / "frame.csv")
    import pandas as pd

    frame = pd.read_csv(tmp_path / "frame.csv", keep_default_na=False)
    assert len(frame) == 2 * 3 * 5 * 5
    assert set(frame["key_token"]) == {"[CLS]", "a", "b,c", '"q"', "[SEP]"}
    w = cap.stacks["self"].weights
    got = frame.sort_values(["layer", "head", "query_pos", "key_pos"])["weight"].to_numpy()
    assert abs(got - w.ravel()).max() <= 0.5 / 255 + 1e-4
    o.check_clean()


@pytest.mark.parametrize("kind", ["gpt2", "t5", "bart"])
def test_tiny_family_reports_draw(
    tiny: dict[str, Any], kind: str, opened: Any, tmp_path: Path
) -> None:
    ins = tiny[kind].inspect("The cat sat on the mat.")
    path = ins.report(tmp_path / f"{kind}.html").save(tmp_path / f"{kind}.html")
    o = opened(path)
    assert o.page.locator("#head-view svg line").count() > 0
    for grid in o.page.locator('figure[data-figure^="head-grid-"]').all():
        assert grid.get_attribute("data-drawn") == "1"
    if kind == "gpt2":  # byte-level BPE: the views show readable tokens, not Ġ markers
        words = o.page.locator("#head-view svg text").all_text_contents()
        assert any(w.startswith("␣") for w in words) and not any("Ġ" in w for w in words)
    if kind != "gpt2":  # encoder-decoder: the filter switches between encoder/decoder/cross
        o.page.select_option('#head-view select[data-bv="filter"]', "2")
        assert o.page.locator("#head-view svg line").count() > 0
    o.check_clean()


def test_hostile_text_never_runs(opened: Any, tmp_path: Path) -> None:
    text = " ".join(HOSTILE) + " ' \\ \" <b>bold</b>"
    cap = make_capture(text=text)
    paths = [
        build_report(cap).save(tmp_path / "r.html"),
        head_view(cap).save(tmp_path / "h.html"),
        model_view(cap).save(tmp_path / "m.html"),
    ]
    o = opened(paths[0])
    page = o.page
    shown = _visible_text(page, "#overview")
    assert text in shown
    for tok in HOSTILE:
        assert tok in shown
    head_svg = page.locator("#head-view svg").first.text_content()
    assert "</script><script>alert(1)</script>" in head_svg
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("#overview b").count() == 0
    # hover every token of the head view and the grid: nothing executes
    page.locator("#head-view svg text").nth(1).hover()
    page.wait_for_timeout(200)
    o.check_clean()
    for p in paths[1:]:
        other = opened(p)
        assert other.page.locator("svg line").count() > 0
        other.page.wait_for_timeout(200)
        other.check_clean()


def test_view_in_an_iframe_like_jupyter(opened: Any, tmp_path: Path) -> None:
    view = head_view(make_capture())
    host = tmp_path / "host.html"
    host.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>"
        + view._repr_html_()
        + "</body></html>",
        encoding="utf-8",
    )
    o = opened(host, wait=False)
    frame = o.page.frames[1]
    frame.wait_for_selector("html[data-inspector-drawn]", timeout=30_000)
    assert frame.locator("svg line").count() > 0
    o.check_clean()
