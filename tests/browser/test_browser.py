"""Reports and views in real headless Chromium, with every network request blocked.

Needs Debian's chromium (``make browser``) and the Python ``playwright`` package; skipped when
either is missing. ``playwright install`` is never needed."""

from __future__ import annotations

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
    # the head grid drew every head
    canvas = page.locator("canvas.ins-grid-canvas")
    assert canvas.get_attribute("data-drawn-cells") == str(6 * 12)
    # hover shows a value with token labels; a click zooms
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 24)
    tip = page.locator(".ins-tooltip")
    assert tip.is_visible() and "layer 0, head 0" in tip.inner_text()
    page.mouse.click(box["x"] + 40, box["y"] + 24)
    assert page.locator(".ins-zoom").is_visible()
    # the head metrics & roles figures drew as SVG: a heatmap per metric, roles, distances, MDS
    assert page.get_attribute("html", "data-figures-drawn") == "4"
    heatmaps = page.locator('#head-metrics figure[data-figure="head-metrics-self"] svg')
    assert heatmaps.locator("rect").count() > 72
    mds_svg = page.locator('#head-metrics figure[data-figure="head-mds-self"] svg')
    assert mds_svg.locator("circle").count() == 72
    mds = mds_svg.locator("text").all_text_contents()
    assert "0.0" in mds and "5.11" in mds  # points labelled L.H
    _check_figure_downloads(page, "#head-metrics", tmp_path)
    # downloads produce files
    for selector, suffix in [
        ('button[data-download="frame"]', ".csv"),
        ('button[data-target="head-metrics-table"]', ".csv"),
        ("button.ins-grid-png", ".png"),
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
    assert page.get_attribute("html", "data-figures-drawn") == "5"
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
    tip = page.locator(".ins-fig-tip")
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
    for canvas in o.page.locator("canvas.ins-grid-canvas").all():
        assert canvas.get_attribute("data-drawn-cells") == "4"
    if kind != "gpt2":  # encoder-decoder: the filter switches between encoder/decoder/cross
        o.page.select_option("#head-view select#filter", "2")
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
