"""Views and reports: parsed HTML, determinism, size, compact data, encoder-decoder, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from markupsafe import Markup

from inspector.errors import InputError
from inspector.render import (
    Section,
    build_report,
    decode_weights,
    encode_weights,
    head_view,
    max_abs_error,
    model_view,
)
from inspector.render._assets import D3_FILE, JQUERY_FILE, bertviz_js, static_text
from inspector.render.encode import decode_float16, encode_float16

from factories import HOSTILE, figure_specs, make_capture, page_data, parse


@pytest.mark.parametrize("precision", ["uint8", "uint16"])
def test_encoding_round_trips_within_stated_precision(precision: str) -> None:
    cap = make_capture()
    w = cap.stacks["self"].weights
    enc = encode_weights(w, precision)
    assert enc["shape"] == list(w.shape)
    back = decode_weights(json.loads(json.dumps(enc)))
    assert np.abs(back - w).max() <= max_abs_error(precision) + 1e-7


def test_float16_vectors_round_trip() -> None:
    v = np.random.default_rng(1).normal(size=(2, 3, 4, 8)).astype(np.float32)
    assert np.allclose(decode_float16(encode_float16(v)), v, rtol=1e-3, atol=1e-3)


def test_unknown_precision_is_an_input_error() -> None:
    with pytest.raises(InputError, match="precision"):
        encode_weights(np.zeros((1, 1, 1, 1)), "float8")


def test_report_is_self_contained_and_sectioned() -> None:
    cap = make_capture()
    html = build_report(cap).html
    page = parse(html)
    ids = [a.get("id") for t, a in page.tags if t == "section"]
    assert ids == ["overview", "head-view", "model-view", "head-grid", "head-metrics", "data"]
    for tag, attrs in page.tags:
        assert not attrs.get("src", "").startswith(("http", "//")), (tag, attrs)
        if tag == "script":
            assert "src" not in attrs
        if tag == "link":
            pytest.fail("stylesheets must be inlined")
    # bertviz's JS is embedded unchanged, once per view kind, next to the bundled libraries,
    # inside a function whose `console` drops its log lines
    bodies = [body.strip() for _, body in page.scripts]
    for view in ("head", "model"):
        holding = [b for b in bodies if bertviz_js(view).strip() in b]
        assert len(holding) == 1
        assert holding[0].startswith("(function (console) {")
        assert holding[0].endswith("})(inspector.quietConsole);")
    assert bodies.count(static_text(D3_FILE).strip()) == 1
    assert bodies.count(static_text(JQUERY_FILE).strip()) == 1


def test_page_states_precision_and_embeds_data_once() -> None:
    cap = make_capture()
    html = build_report(cap).html
    data = page_data(html)
    assert data["precision"]["dtype"] == "uint8"
    assert "uint8" in html and "0.002" in html
    assert list(data["stacks"]) == ["self"]
    chunks = data["stacks"]["self"]["chunks"]  # one zlib stream per layer
    assert len(chunks) == len(cap.stacks["self"].layers)
    assert all(html.count(blob) == 1 for blob in chunks)
    assert data["stacks"]["self"]["eager"] is True and "thumbs" not in data["stacks"]["self"]
    back = decode_weights(data["stacks"]["self"])
    assert np.abs(back - cap.stacks["self"].weights).max() <= max_abs_error("uint8") + 1e-7
    assert [v["kind"] for v in data["views"]] == ["head", "model"]


def test_hostile_text_is_escaped_in_markup_and_data() -> None:
    text = " ".join(HOSTILE)
    html = build_report(make_capture(text=text)).html
    page = parse(html)
    visible = "".join(page.text)
    for token in HOSTILE:
        assert token in visible  # shown literally (autoescaped, decoded back by the parser)
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    for _attrs, body in page.scripts:
        assert "alert(1)</script>" not in body.lower()
    assert not any(t == "img" and a.get("src") == "x" for t, a in page.tags)
    data = page_data(html)
    assert data["stacks"]["self"]["query_tokens"] == HOSTILE
    # template syntax in the input is not evaluated
    assert "{{ 7*7 }}" in visible and "<bdi>49</bdi>" not in html


def test_report_is_deterministic(tmp_path: Path) -> None:
    cap = make_capture()
    a = build_report(cap).save(tmp_path / "a.html").read_bytes()
    b = build_report(make_capture()).save(tmp_path / "b.html").read_bytes()
    assert a == b


def test_report_is_small() -> None:
    html = build_report(make_capture()).html
    assert len(html.encode()) < 700_000  # ~330 kB of d3 + jQuery + bertviz; data is tiny


def test_figures_are_data_with_png_and_svg_buttons() -> None:
    html = build_report(make_capture()).html
    page = parse(html)
    specs = figure_specs(html)
    assert list(specs) == [
        "head-grid-self", "head-roles-self", "head-metrics-self", "head-distances-self",
        "head-mds-self",
    ]  # fmt: skip
    assert sum(1 for t, a in page.tags if t == "figure" and "ins-fig" in str(a.get("class"))) == 5
    # the head grid reads the embedded attention: no values inline
    assert specs["head-grid-self"]["panels"] == [
        {"kind": "grid", "stack": "self", "norm": "head", "cmap": "blues"}
    ]
    saves = [a for t, a in page.tags if t == "button" and a.get("class") == "ins-fig-save"]
    assert sorted(str(a["data-filename"]) for a in saves) == sorted(
        f"{name}.{ext}" for name in specs for ext in ("png", "svg")
    )
    assert not any(t == "img" for t, _ in page.tags)  # no pre-rendered images any more
    assert "data:image/png;base64" not in html
    # one heatmap per metric, labelled by layer and head, values rounded to 4 digits
    panels = specs["head-metrics-self"]["panels"]
    titles = [p["title"] for p in panels]
    assert {"entropy (nats)", "max weight", "to previous", "sink share"} <= set(titles)
    for p in panels:
        assert p["kind"] == "heatmap" and p["rows"] == ["0", "1"] and p["cols"] == ["0", "1", "2"]
        for v in (x for row in p["values"] for x in row if x is not None):
            assert len(f"{abs(v):.10g}".replace(".", "").lstrip("0")) <= 4
    mds = specs["head-mds-self"]["panels"][0]
    assert mds["labels"] == ["L0 H0", "L0 H1", "L0 H2", "L1 H0", "L1 H1", "L1 H2"]
    dist = specs["head-distances-self"]["panels"][0]
    assert dist["cmap"] == "magma_r" and sorted(dist["rows"]) == sorted(dist["cols"])
    roles = specs["head-roles-self"]["panels"][0]
    assert roles["colors"] and roles["legend"]
    # the sortable table of every head, with its CSV download
    buttons = [
        (a.get("data-download"), a.get("data-target")) for t, a in page.tags if t == "button"
    ]
    assert ("frame", None) in buttons and ("table", "head-metrics-table") in buttons
    tables = [a for t, a in page.tags if t == "table" and "ins-metrics" in str(a.get("class"))]
    assert len(tables) == 1


def test_figure_helpers_round_and_validate() -> None:
    from inspector.render.figures import FigureSpec, heatmap, rounded, scatter

    got = rounded([[0.123456, float("nan")], [-0.0, 12345.678]])
    assert got == [[0.1235, None], [0.0, 12350.0]]
    assert rounded(np.float32(1 / 3)) == 0.3333
    p = heatmap(np.array([[-2.0, 1.0]]), rows=["r"], cols=["a", "b" * 40], cmap="rdbu")
    assert (p["vmin"], p["vmax"]) == (-2.0, 2.0) and p["cols"][1].endswith("…")
    assert p["annotate"] and not p["canvas"]
    assert heatmap(np.zeros((80, 80)), rows=range(80), cols=range(80))["canvas"]
    with pytest.raises(InputError, match="does not match"):
        heatmap([[1.0, 2.0]], rows=["a", "b"], cols=["x", "y"])
    with pytest.raises(InputError, match="colour map"):
        heatmap([[1.0]], rows=["a"], cols=["x"], cmap="jet")
    with pytest.raises(InputError, match="same length"):
        scatter([0.0], [1.0, 2.0], labels=["a"])
    with pytest.raises(InputError, match="figure name"):
        FigureSpec("bad name", "t", (p,))
    with pytest.raises(InputError, match="no panels"):
        FigureSpec("x", "t", ())


def test_sentence_pair_gives_bertviz_filters() -> None:
    cap = make_capture(["[CLS]", "a", "b", "[SEP]", "c", "d", "[SEP]"], pair_start=4)
    data = page_data(head_view(cap).html)
    names = [p["name"] for p in data["views"][0]["parts"]]
    assert names[0] == "All" and "Sentence A -> Sentence B" in names and len(names) == 5
    single = page_data(head_view(cap, sentence_b_start=None).html)
    assert len(single["views"][0]["parts"]) == 1


def test_view_options_pass_through() -> None:
    cap = make_capture(layers=3, heads=4)
    spec = page_data(head_view(cap, layer=2, heads=[1, 3], include_layers=[0, 2]).html)["views"][0]
    assert spec["params"] == {
        "default_filter": "0",
        "layer": 2,
        "heads": [1, 3],
        "include_layers": [0, 2],
    }
    assert spec["layer_positions"] == [0, 2]
    mv = page_data(model_view(cap, include_heads=[0, 2], display_mode="dark").html)["views"][0]
    assert mv["params"]["include_heads"] == [0, 2] and mv["params"]["display_mode"] == "dark"
    assert mv["params"]["total_heads"] == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"include_layers": [7]}, "include_layers"),
        ({"layer": 5}, "layer 5"),
        ({"heads": [9]}, "heads"),
        ({"kind": "cross"}, "no 'cross'"),
        ({"sentence_b_start": 99}, "sentence_b_start"),
    ],
)
def test_view_errors_say_what_to_fix(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        head_view(make_capture(), **kwargs)


def test_model_view_rejects_unknown_display_mode() -> None:
    with pytest.raises(InputError, match="display_mode"):
        model_view(make_capture(), display_mode="sepia")


def test_rendered_html_protocols(tmp_path: Path) -> None:
    view = head_view(make_capture())
    frame = view._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "<script" not in frame
    assert view.__html__() == frame
    out = view.save(tmp_path / "sub" / "v.html")
    assert out.read_text(encoding="utf-8") == view.html


def test_extra_sections_plug_in() -> None:
    def extra(ctx: Any) -> Section:
        return Section("extra", "Extra <b>", html=Markup("<p class='x'>hi</p>"))

    report = build_report(make_capture(), extra_sections=[extra])
    page = parse(report.html)
    assert [a.get("id") for t, a in page.tags if t == "section"][-1] == "extra"
    assert "Extra &lt;b&gt;" in report.html
    with pytest.raises(InputError, match="id"):
        build_report(make_capture(), extra_sections=[extra, extra])
    with pytest.raises(InputError, match="Markup"):
        Section("bad", "Bad", html="<p>raw</p>")  # type: ignore[arg-type]
