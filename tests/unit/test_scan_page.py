"""The scan page's data (no browser): heads at a glance, the pooled maps' 8-bit log codes and
their resolution, readable tokens, labels that say what they are; and the many-head charts of the
report (head names, distance blocks, roles, the "what mattered" sink table)."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from inspector.analysis.scan import scan_capture
from inspector.capture.types import AttentionStack, Capture
from inspector.explain.result import Explanation
from inspector.render.charts import (
    DISTANCE_HEADS,
    distance_figure,
    embedding_figure,
    head_label,
    roles_figure,
)
from inspector.render.scan_choice import scan_report
from inspector.render.sections.explain import explain_context
from inspector.render.sections.scan_maps import (
    LOCAL_DISTANCE,
    LOG_DECADES,
    THUMB_POOL,
    distance_labels,
    glance_figure,
    log_codes,
    pooled_maps,
    repool,
    zoom_side,
)

from factories import figure_specs, make_scan_data, make_tokens, parse, random_weights


def _decode(part: dict[str, Any]) -> np.ndarray:
    """The page's decoding of a set of pooled maps (what scan-maps.js computes)."""
    codes = np.frombuffer(zlib.decompress(base64.b64decode(part["data"])), np.uint8)
    codes = codes.reshape(part["shape"]).astype(np.float64)
    lo = np.asarray(part["lo"])[..., None, None]
    hi = np.asarray(part["hi"])[..., None, None]
    return np.where(codes == 0, 0.0, 10 ** (lo + (codes - 1) / 254 * (hi - lo)))


def test_log_codes_round_trip_within_three_percent_and_keep_zeros():
    rng = np.random.default_rng(0)
    maps = 10 ** rng.uniform(-5, -1, (2, 3, 16, 16)) * np.tri(16)
    maps[0, 0, 5, 2] = 1e-12  # far below the head's range: stored as its floor
    codes, lo, hi = log_codes(maps)
    assert codes.dtype == np.uint8 and (codes[maps == 0] == 0).all()
    assert (hi - lo <= LOG_DECADES + 1e-9).all()
    back = _decode({"data": base64.b64encode(zlib.compress(codes.tobytes())).decode(),
                    "shape": list(codes.shape), "lo": lo.tolist(), "hi": hi.tolist()})  # fmt: skip
    inside = (maps > 0) & (maps >= 10 ** lo[..., None, None])
    np.testing.assert_allclose(back[inside], maps[inside], rtol=0.03)
    assert back[0, 0, 5, 2] == pytest.approx(10 ** lo[0, 0], rel=1e-6)
    assert (back[maps == 0] == 0).all()


def test_zoom_side_is_the_scans_bins_within_the_page_budget():
    data = make_scan_data(1024, layers=2, heads=3, pool=64)
    assert zoom_side(data.stack()) == 64  # 6 heads at the scan's own 64 x 64
    big = make_scan_data(2048, layers=30, heads=9, pool=256).stack()
    assert zoom_side(big, cells=30 * 9 * 256 * 256) == 256
    assert zoom_side(big) == 128  # 270 heads at 256 x 256 would not fit: merged 2 x 2
    assert zoom_side(big, cells=1) == THUMB_POOL


def test_pooled_maps_decode_to_the_block_means_the_page_states():
    s = make_scan_data(2048, layers=2, heads=3, pool=256).stack()
    maps = pooled_maps(s, cells=6 * 128 * 128)
    assert maps["scan_bins"] == [256, 256] and maps["causal"] is True
    for name, side in (("thumb", THUMB_POOL), ("zoom", 128)):
        part = maps[name]
        assert part["shape"] == [2, 3, side, side]
        want, rows, cols = repool(s.pooled_mean, s.pool_rows, s.pool_cols, side)
        assert part["rows"] == rows.tolist() and part["cols"] == cols.tolist()
        got = _decode(part)
        seen = want > 10 ** np.asarray(part["lo"])[..., None, None]
        np.testing.assert_allclose(got[seen], want[seen], rtol=0.03)
        assert (got[want == 0] == 0).all()


def test_glance_figure_is_sink_share_local_share_and_distance_profile():
    s = make_scan_data(4096, layers=3, heads=4, pool=64).stack()
    fig = glance_figure(s)
    assert fig is not None
    prof, sink, local = fig.data()["panels"]
    assert prof["kind"] == "profiles" and prof["bins"][:4] == ["0", "1", "2–3", "4–7"]
    assert prof["bins"][-1] == "2048–4095"
    assert np.asarray(prof["profile"]).shape == (3, 4, 13)
    np.testing.assert_allclose(prof["sink"], s.first_share.mean(-1), atol=1e-3)
    np.testing.assert_allclose(sink["values"], s.first_share.mean(-1), atol=1e-3)
    near = s.distance_edges[1:] <= LOCAL_DISTANCE
    np.testing.assert_allclose(local["values"], s.distance_mass[..., near].sum(-1), rtol=1e-3)
    assert local["title"] == f"share at distance 0–{LOCAL_DISTANCE - 1}"
    assert distance_labels(np.array([0, 1, 2, 4, 5])) == ["0", "1", "2–3", "4"]


def test_glance_figure_from_a_real_accumulator_and_none_without_distances():
    toks = make_tokens(40)
    w = random_weights(2, 2, 40, seed=3, causal=True, sharp=3.0)
    cap = Capture({"self": AttentionStack(w, toks, toks, causal=True)}, {"model_name": "toy"})
    s = scan_capture(cap, pool=8).stack()
    fig = glance_figure(s)
    assert fig is not None
    prof = fig.data()["panels"][0]
    total = np.asarray(prof["profile"]).sum(-1) + np.asarray(prof["sink"])
    np.testing.assert_allclose(total, 1.0, atol=3e-3)  # each head: all of its attention
    from dataclasses import replace

    assert glance_figure(replace(s, distance_edges=None, distance_mass=None)) is None


def test_scan_page_says_what_it_shows_in_readable_tokens():
    data = make_scan_data(2048, layers=4, heads=3, rows=(100, -1), pool=256)
    report = scan_report(data)
    assert [s.id for s in report.sections] == ["overview", "rows", "pooled", "sinks", "heads"]
    html = report.html
    page = parse(html)
    # the facts say what they are
    assert "query positions with an exact row" in html and "100, 2,047 (of 0–2,047)" in html
    assert "256 x 256 blocks of 8 tokens a side per head" in html
    # no raw byte-level piece in any table cell, in the tokens the strip draws, or in the data
    cells = [c.split("</td>")[0] for c in html.split("<td")[1:]]
    assert cells and not any("Ġ" in c or "Ċ" in c for c in cells)
    tokens = json.loads(next(b for a, b in page.scripts if a.get("id") == "scan-tokens"))
    assert "␣H" in tokens["tokens"] and "⏎" in tokens["tokens"]
    assert not any("Ġ" in t or "Ċ" in t for t in tokens["tokens"])
    # heads at a glance, and the pooled maps at the resolution the intro states
    assert figure_specs(html)["scan-glance"]["panels"][0]["kind"] == "profiles"
    maps = json.loads(next(b for a, b in page.scripts if a.get("class") == "ins-scan-maps-data"))
    z = maps["zoom"]["shape"]
    assert z == [4, 3, 256, 256]  # 12 heads fit at the scan's own resolution
    assert f"enlarge it at {z[2]} x {z[3]} blocks of 8 tokens" in html
    assert "merged to fit the page" not in html
    # the old page drew a panel per head
    assert not any(name.startswith("scan-pooled-") for name in figure_specs(html))


def test_nan_cells_show_a_dash_and_sort_last():
    data = make_scan_data(512, layers=2, heads=2, pool=32)  # to_next is NaN, as for a decoder
    html = scan_report(data).html
    assert ">nan<" not in html
    dash = '<td data-value="" class="ins-na" title="no value: not defined for this row">–</td>'
    assert dash in html


# ------------------------------------------------------------------------------ many-head charts


def _distances(n_layers: int, n_heads: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n_layers * n_heads, 3))
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1))
    index = pd.MultiIndex.from_product([range(n_layers), range(n_heads)], names=["layer", "head"])
    return pd.DataFrame(d, index=index, columns=index)


def test_head_names_never_read_as_numbers():
    assert head_label(29, 4) == "L29 H4"
    dist = _distances(8, 9)
    panel = distance_figure(dist).data()["panels"][0]
    assert len(panel["rows"]) == 72 and all(r.startswith("L") and " H" in r for r in panel["rows"])
    emb = pd.DataFrame({"x": np.arange(72.0), "y": np.arange(72.0)}, index=dist.index)
    scatter = embedding_figure(emb).data()["panels"][0]
    assert scatter["labels"][:2] == ["L0 H0", "L0 H1"] and scatter["ticks"] is False


@pytest.mark.parametrize(("layers", "blocked"), [(30, False), (64, True)])
def test_distance_matrix_draws_every_head_or_says_how_it_averaged(layers, blocked):
    dist = _distances(layers, 9)
    panel = distance_figure(dist).data()["panels"][0]
    n = layers * 9
    if not blocked:
        assert n <= DISTANCE_HEADS and len(panel["rows"]) == n
        assert panel["title"] == "every head, in cluster order" and "raw_rows" not in panel
        return
    assert n > DISTANCE_HEADS
    assert len(panel["rows"]) == 288 and panel["rows"][0].endswith(" +1")
    assert "averaged in blocks of 2" in panel["title"] and "576 heads" in panel["title"]
    members = panel["raw_rows"][0].split(", ")
    assert len(members) == 2 and members[0] == panel["rows"][0][: -len(" +1")]
    assert "token" not in panel["title"]  # head blocks are not "token blocks"


@pytest.mark.parametrize(("layers", "cell"), [(8, 28), (30, 28), (64, 14)])
def test_roles_grid_cells_fit_a_screen_and_every_label_is_sent(layers, cell):
    index = pd.MultiIndex.from_product([range(layers), range(9)], names=["layer", "head"])
    role = np.where(np.arange(len(index)) % 3 == 0, "sink", "previous")
    label = np.where(role == "sink", "sink <|im_start|>", "previous")
    roles = pd.DataFrame({"role": role, "label": label}, index=index)
    panel = roles_figure(roles).data()["panels"][0]
    assert panel["size"] == cell * max(layers, 9)
    assert len(panel["text"]) == layers * 9  # figures.js writes those that fit at 8 px
    assert panel["text"][0][2] == "sink\n<|im_start|>"


def test_what_mattered_table_lists_every_head_the_warning_names():
    index = pd.MultiIndex.from_product([range(4), range(4)], names=["layer", "head"])
    importance = pd.DataFrame(
        {"importance": np.linspace(1, 0, 16), "delta": np.linspace(-1, 0, 16)}, index=index
    )
    # 12 sink heads; the most important head (0, 0) is the least overstated of them
    sinks = pd.DataFrame(
        {
            "layer": [i // 4 for i in range(4, 16)],
            "head": [i % 4 for i in range(4, 16)],
            "key_pos": 0,
            "key_token": "Ċ",
            "raw_share": np.linspace(0.9, 0.5, 12),
            "norm_share": 0.1,
        }
    )
    sinks.loc[len(sinks)] = [0, 0, 0, "Ċ", 0.31, 0.3]
    toks = make_tokens(["Ċ", "a", "b"])
    expl = Explanation(
        tokens=toks, layer=0, raw=np.eye(3), norm=np.eye(3), rollout=np.eye(3),
        importance=importance, top_heads=[(0, 0), (0, 1)], top_maps=[np.eye(3), np.eye(3)],
        sinks=sinks.set_index(["layer", "head"]), target="the next token",
    )  # fmt: skip
    ctx = explain_context(expl)
    assert ctx["top_sinks"] == [{"rank": 1, "layer": 0, "head": 0}]
    listed = [(r["layer"], r["head"]) for r in ctx["sinks"]]
    assert (0, 0) in listed and len(listed) == 11  # the 10 most overstated, and the warned one
    assert {r["token"] for r in ctx["sinks"]} == {"⏎"}  # readable, not Ċ
