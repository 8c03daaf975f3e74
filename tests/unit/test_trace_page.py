"""The "why this token" page, from a hand-built route graph (no model): its first line answers
in words, every value reaches the scripts through JSON, hostile tokens stay text, the heatmap of
head attributions is a figure, and the graph tables export."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from inspector.errors import InputError
from inspector.render.trace import generation_trace_section, step_record, trace_context, trace_page

from factories import HOSTILE, figure_specs, make_routes, parse


def _data(html: str) -> dict[str, Any]:
    page = parse(html)
    found = [body for attrs, body in page.scripts if "ins-trace-data" in (attrs.get("class") or "")]
    assert len(found) == 1
    return json.loads(found[0])


def test_the_page_answers_first_and_embeds_its_graph() -> None:
    routes = make_routes(HOSTILE, layers=3, heads=4)
    html = trace_page(routes).html
    page = parse(html)
    text = " ".join(t.strip() for t in page.text if t.strip())
    # the h1, the navigation, the section title, then the answer
    answer = routes.answer()
    assert answer.startswith(repr(routes.token))
    assert "heads" in answer and "write it" in answer
    assert text.index(answer.split(":")[0]) < text.index("Which heads write it")
    data = _data(html)
    assert data["tokens"] == list(routes.tokens.readable)
    assert len(data["edges"]) == len(routes.edges) and len(data["nodes"]) == len(routes.nodes)
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["s"] in ids and e["t"] in ids for e in data["edges"])
    # every attention edge has its heads, and each head its row
    for e in data["edges"]:
        if e["block"] == "attention":
            heads = data["heads"][f"{e['layer']}:{e['sp']}:{e['tp']}"]
            assert heads and all(f"{e['layer']}:{e['tp']}:{h}" in data["rows"] for h, _w in heads)
    specs = figure_specs(html)
    assert "trace-heads" in specs
    grid = np.array(specs["trace-heads"]["panels"][0]["values"], dtype=float)
    assert grid.shape == (3, 4)


def test_hostile_tokens_stay_text() -> None:
    html = trace_page(make_routes(HOSTILE)).html
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x" not in html
    page = parse(html)
    assert not any(tag == "img" for tag, _ in page.tags)


def test_long_inputs_paint_only_the_heavy_tokens() -> None:
    routes = make_routes(5000, layers=2, heads=2, fan=2)
    ctx = trace_context(routes)
    painted = ctx["data"]["painted"]
    assert len(painted) < 5000 and painted == sorted(painted)
    assert len(ctx["data"]["per_token"]) == len(painted)


def test_graph_tables_and_errors(tmp_path: Any) -> None:
    import pandas as pd

    routes = make_routes(12)
    g = routes.graph
    assert routes.output_node in g and g.number_of_edges() <= len(routes.edges)
    scores = routes.token_scores()
    assert scores.shape == (12,) and (scores >= 0).all()
    path = routes.to_parquet(tmp_path / "heads.parquet", what="heads")
    assert len(pd.read_parquet(path)) == len(routes.heads)
    with pytest.raises(Exception, match="no longer holds the forward pass"):
        routes.attention_contributions(0, 3)
    with pytest.raises(InputError):
        trace_page("not routes")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\.html"):
        routes.report(tmp_path / "page.txt")


def test_generation_section_lists_every_step() -> None:
    routes = make_routes(10)
    frame = routes.attribution.frame
    rec = step_record(0, frame, routes.attribution.per_token, list(routes.tokens.readable))
    build = generation_trace_section([rec, {**rec, "step": 1}])
    section = build(None)
    assert section is not None and section.id == "generation-why"
    html = str(section.render())
    assert html.count("<tr>") == 3  # the header and two steps
    assert generation_trace_section([])(None) is None
