"""Views and reports: parsed HTML, determinism, size, compact data, encoder-decoder, errors."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from markupsafe import Markup

from inspector.capture import AttentionStack, Capture, Tokens
from inspector.errors import InputError, UnsupportedModelError
from inspector.render import (
    Section,
    build_report,
    decode_weights,
    encode_weights,
    head_view,
    max_abs_error,
    model_view,
    neuron_view,
)
from inspector.render._assets import D3_FILE, JQUERY_FILE, bertviz_js, static_text
from inspector.render.encode import decode_float16, encode_float16

HOSTILE = [
    "[CLS]",
    "</script><script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    'it\'s "quoted"',
    "back\\slash",
    "שלום",
    "🐈‍⬛",
    "{{ 7*7 }}",
    "[SEP]",
]


def make_tokens(tokens: list[str], pair_start: int | None = None, text: str = "") -> Tokens:
    n = len(tokens)
    seq = np.zeros(n, dtype=np.int8)
    if pair_start is not None:
        seq[pair_start:] = 1
    special = np.array([t in ("[CLS]", "[SEP]") for t in tokens])
    seq[special] = -1
    return Tokens(
        tuple(tokens),
        np.arange(n, dtype=np.int64),
        special,
        np.where(special, -1, np.arange(n)).astype(np.int32),
        seq,
        np.full((n, 2), -1, dtype=np.int32),
        (text or " ".join(tokens),),
    )


def make_capture(
    tokens: list[str] = HOSTILE,
    *,
    layers: int = 2,
    heads: int = 3,
    pair_start: int | None = None,
    seed: int = 0,
    text: str = "",
) -> Capture:
    rng = np.random.default_rng(seed)
    w = rng.random((layers, heads, len(tokens), len(tokens))) ** 4
    w = (w / w.sum(-1, keepdims=True)).astype(np.float32)
    toks = make_tokens(tokens, pair_start, text)
    meta = {"model_name": "toy", "n_layers": layers, "n_heads": heads, "text": toks.texts[0]}
    return Capture({"self": AttentionStack(w, toks, toks)}, meta)


class _Page(HTMLParser):
    """Collects what the tests look at: tags with attributes, script bodies, text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._in: tuple[dict[str, str | None], list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = (dict(attrs), [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in is not None:
            self.scripts.append((self._in[0], "".join(self._in[1])))
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in is not None:
            self._in[1].append(data)
        else:
            self.text.append(data)


def parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def page_data(html: str) -> dict[str, Any]:
    page = parse(html)
    blobs = [body for attrs, body in page.scripts if attrs.get("id") == "inspector-data"]
    assert len(blobs) == 1
    return json.loads(blobs[0])


# --------------------------------------------------------------------------- encoding


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


# --------------------------------------------------------------------------- report structure


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
    # bertviz's JS is embedded unchanged, once per view kind, next to the bundled libraries
    bodies = [body.strip() for _, body in page.scripts]
    assert bodies.count(bertviz_js("head").strip()) == 1
    assert bodies.count(bertviz_js("model").strip()) == 1
    assert bodies.count(static_text(D3_FILE).strip()) == 1
    assert bodies.count(static_text(JQUERY_FILE).strip()) == 1


def test_page_states_precision_and_embeds_data_once() -> None:
    cap = make_capture()
    html = build_report(cap).html
    data = page_data(html)
    assert data["precision"]["dtype"] == "uint8"
    assert "uint8" in html and "0.002" in html
    assert list(data["stacks"]) == ["self"]
    blob = data["stacks"]["self"]["data"]
    assert html.count(blob) == 1
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


def figure_specs(html: str) -> dict[str, dict[str, Any]]:
    """The figure data of a page (``figure.ins-fig`` > ``script.ins-fig-data``), by name."""
    page = parse(html)
    specs = [
        json.loads(body) for attrs, body in page.scripts if attrs.get("class") == "ins-fig-data"
    ]
    return {spec["name"]: spec for spec in specs}


def test_figures_are_data_with_png_and_svg_buttons() -> None:
    html = build_report(make_capture()).html
    page = parse(html)
    specs = figure_specs(html)
    assert list(specs) == [
        "head-roles-self", "head-metrics-self", "head-distances-self", "head-mds-self",
    ]  # fmt: skip
    assert sum(1 for t, a in page.tags if t == "figure" and "ins-fig" in str(a.get("class"))) == 4
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
    assert mds["labels"] == ["0.0", "0.1", "0.2", "1.0", "1.1", "1.2"]
    dist = specs["head-distances-self"]["panels"][0]
    assert dist["cmap"] == "magma_r" and sorted(dist["rows"]) == sorted(dist["cols"])
    roles = specs["head-roles-self"]["panels"][0]
    assert roles["colors"] and roles["legend"]
    # the sortable table of every head, with its CSV download
    buttons = [a.get("data-download") for t, a in page.tags if t == "button"]
    assert "frame" in buttons and "metrics" in buttons
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


# --------------------------------------------------------------------------- real (tiny) models


@pytest.mark.parametrize("kind", ["bert", "gpt2", "t5", "bart"])
def test_every_tiny_family_reports(tiny: dict[str, Any], kind: str, tmp_path: Path) -> None:
    ins = tiny[kind].inspect("The cat sat on the mat.")
    report = ins.report(tmp_path / f"{kind}.html")
    data = page_data(report.html)
    expected = ["encoder", "decoder", "cross"] if kind in ("t5", "bart") else ["self"]
    assert sorted(data["stacks"]) == sorted(expected)  # tojson sorts keys
    for name, stack in ins.capture.stacks.items():
        back = decode_weights(data["stacks"][name])
        assert np.abs(back - stack.weights).max() <= max_abs_error("uint8") + 1e-7
    page = parse(report.html)
    grids = [a for t, a in page.tags if t == "canvas" and "ins-grid-canvas" in str(a.get("class"))]
    assert len(grids) == len(expected)


def test_encoder_decoder_views(tiny: dict[str, Any]) -> None:
    ins = tiny["t5"].inspect("The cat sat.", target="A dog.")
    parts = page_data(ins.head_view().html)["views"][0]["parts"]
    assert [p["name"] for p in parts] == ["Encoder", "Decoder", "Cross"]
    cross = parts[2]
    assert len(cross["left_text"]) == len(ins.decoder.tokens)
    assert len(cross["right_text"]) == len(ins.encoder.tokens)
    only = page_data(ins.cross.model_view().html)["views"][0]["parts"]
    assert [p["name"] for p in only] == ["Cross"]


def test_pair_report_from_model(tiny: dict[str, Any]) -> None:
    ins = tiny["bert"].inspect("The cat sat.", "The dog barked.")
    spec = page_data(ins.report().html)["views"][0]
    assert len(spec["parts"]) == 5


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_neuron_view_recomputes_the_captured_attention(tiny: dict[str, Any], kind: str) -> None:
    ins = tiny[kind].inspect("The cat sat on the mat.")
    data = page_data(ins.neuron_view(layer=1, head=0).html)
    (spec,) = data["views"]
    assert spec["kind"] == "neuron" and spec["params"]["bidirectional"] is (kind == "bert")
    q = decode_float16(data["vectors"][spec["id"]]["queries"])
    assert q.shape[:3] == ins.attention.shape[:3]


def test_neuron_view_unsupported(tiny: dict[str, Any]) -> None:
    ins = tiny["t5"].inspect("The cat sat.")
    with pytest.raises(UnsupportedModelError, match="BERT, RoBERTa and GPT-2"):
        ins.neuron_view()
    with pytest.raises(InputError, match="ModelBundle"):
        neuron_view(None, ins.capture)  # type: ignore[arg-type]


@pytest.mark.slow
def test_neuron_view_minilm_offline(minilm: Any) -> None:
    view = minilm.inspect("The cat sat on the mat.", "It slept.").neuron_view()
    data = page_data(view.html)
    assert [p["key"] for p in data["views"][0]["parts"]] == ["all", "aa", "bb", "ab", "ba"]


def test_cli_report(tiny_dirs: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    from inspector.cli import main

    out = tmp_path / "r" / "cat.html"
    assert (
        main(["report", str(tiny_dirs["bert"]), "The cat sat.", "--pair", "A dog.", "-o", str(out)])
        == 0
    )
    assert "sections" in capsys.readouterr().out
    assert len(page_data(out.read_text(encoding="utf-8"))["views"][0]["parts"]) == 5
    assert main(["report", str(tiny_dirs["bert"]), "x", "-o", str(tmp_path / "x.txt")]) == 2
    assert "html" in capsys.readouterr().err
