"""Information flow routes (the ``information_flow`` explainer) equal a direct implementation.

The reference below is written from the definitions alone (llm-transparency-tool's
``get_contributions`` / ``apply_threshold_and_renormalize`` / ``build_full_graph`` /
``build_paths_to_predictions``): the full ``pos x key x head x hidden`` decomposition from the
model's own eager attention, the values read here from each family's projection, the residual
stream from hooks on the blocks; the whole graph, then the walk with networkx. Tiny GPT-2
(LayerNorm with biases), LLaMA (grouped-query attention) and GPT-NeoX (parallel attention and
MLP, fused per-head qkv), their output projections scaled up so that attention and MLP edges
survive the threshold.
"""

from __future__ import annotations

import re
from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

import inspector
from inspector.errors import InputError, UnsupportedModelError
from inspector.explain.registry import ExplainRequest, get_explainer

from factories import (
    FAMILY_OUTPUTS,
    FAMILY_SOURCE,
    FAMILY_TARGET,
    FAMILY_TEXT,
    build_family,
    eager_attention,
    keep_hooks,
)

EPS = 1e-5


def _values_gpt2(out: torch.Tensor, n_heads: int) -> torch.Tensor:
    d = out.shape[-1] // 3
    return out[..., 2 * d :].reshape(out.shape[0], n_heads, -1)


def _values_llama(out: torch.Tensor, n_heads: int) -> torch.Tensor:
    v = out.reshape(out.shape[0], -1, 8)  # head_dim 8
    return v.repeat_interleave(n_heads // v.shape[1], dim=1)


def _values_neox(out: torch.Tensor, n_heads: int) -> torch.Tensor:
    return out.reshape(out.shape[0], n_heads, 3, -1)[:, :, 2]


#: the tests' own statement of each family: blocks, value source, how values sit in it, MLP out
SPECS = {
    "gpt2": (r"transformer\.h\.\d+$", r"attn\.c_attn$", _values_gpt2, r"mlp\.c_proj$"),
    "llama": (r"model\.layers\.\d+$", r"self_attn\.v_proj$", _values_llama, r"mlp\.down_proj$"),
    "gpt_neox": (
        r"gpt_neox\.layers\.\d+$",
        r"attention\.query_key_value$",
        _values_neox,
        r"mlp\.dense_4h_to_h$",
    ),
}

_MODELS: dict[str, Any] = {}


def _model(model_type: str) -> Any:
    if model_type not in _MODELS:
        model, tok = build_family(model_type)
        out_re = re.compile(FAMILY_OUTPUTS[model_type]["self"])
        mlp_re = re.compile(SPECS[model_type][3])
        with torch.no_grad():
            for name, module in model.named_modules():
                if out_re.search(name) or mlp_re.search(name):
                    module.weight.mul_(20.0)
        _MODELS[model_type] = inspector.load((model, tok))
    return _MODELS[model_type]


def _read(m: Any, ids: torch.Tensor, model_type: str) -> dict[str, Any]:
    """Block inputs / outputs, attention outputs, values and eager weights, by hooks here."""
    model = m.bundle.model
    block_re, value_re, _split, _mlp = SPECS[model_type]
    out_re = re.compile(FAMILY_OUTPUTS[model_type]["self"])
    kept: dict[str, list[torch.Tensor]] = {"in": [], "out": [], "y": [], "v": []}

    pre, post = keep_hooks(kept)

    handles = []
    for name, module in model.named_modules():
        if re.search(block_re, name):
            handles.append(module.register_forward_pre_hook(pre("in"), with_kwargs=True))
            handles.append(module.register_forward_hook(post("out")))
        elif out_re.search(name):
            handles.append(module.register_forward_hook(post("y")))
        elif re.search(value_re, name):
            handles.append(module.register_forward_hook(post("v")))
    kept["alpha"] = eager_attention(model, ids, handles)
    return kept


def _w_o(m: Any, model_type: str) -> list[torch.Tensor]:
    """``(head, head_dim, hidden)`` per layer, from the output projections' weights."""
    out_re = re.compile(FAMILY_OUTPUTS[model_type]["self"])
    found = []
    for name, module in m.bundle.model.named_modules():
        if out_re.search(name):
            w = module.weight.double()
            w = w if type(module).__name__ == "Conv1D" else w.T  # (heads * d, hidden)
            found.append(w.reshape(m.bundle.n_heads, -1, w.shape[-1]))
    return found


def _contrib(parts: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    c = (whole.abs().sum(-1) - (whole - parts).abs().sum(-1)).clamp(min=EPS)
    return c / c.sum(0, keepdim=True)


def _renorm(blocks: torch.Tensor, res: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
    blocks = blocks * (blocks > t)
    res = res * (res > t)
    denom = res + blocks.sum(dim=tuple(range(1, blocks.dim())))
    return blocks / denom.reshape(-1, *([1] * (blocks.dim() - 1))), res / denom


def _reference(m: Any, ins: Any, model_type: str, threshold: float) -> dict[str, Any]:
    """The whole contribution graph and the walk, straight from the definitions."""
    ids = torch.tensor(ins.capture.stacks["self"].query.ids)
    kept = _read(m, ids, model_type)
    w_o = _w_o(m, model_type)
    split = SPECS[model_type][2]
    n_layers, n = len(w_o), len(ids)
    g = nx.DiGraph()
    attn_raw = []

    def add(u: str, v: str, w: float) -> None:
        if g.has_edge(u, v):
            g[u][v]["weight"] += w
        else:
            g.add_edge(u, v, weight=w)

    for li in range(n_layers):
        x, out, y = kept["in"][li], kept["out"][li], kept["y"][li]
        mid = x + y
        v = split(kept["v"][li], m.bundle.n_heads)  # (key, head, d)
        dec = torch.einsum("hqk,khd,hdm->kqhm", kept["alpha"][li], v, w_o[li])
        flat = torch.cat([dec.permute(0, 2, 1, 3).reshape(-1, n, dec.shape[-1]), x[None]])
        c = _contrib(flat, mid)  # (key * head + 1, q)
        c_attn = c[:-1].reshape(n, -1, n).permute(2, 0, 1)  # (q, key, head)
        c_res = c[-1]
        attn_raw.append((c_attn, c_res))
        c_attn, c_res = _renorm(c_attn, c_res, threshold)
        c_ffn = _contrib(torch.stack([out - mid, mid]), out)
        c_mlp, c_r = _renorm(c_ffn[0][:, None], c_ffn[1], threshold)
        below = f"I{li - 1}_" if li else "X0_"
        for q in range(n):
            for k in range(n):
                add(f"{below}{k}", f"A{li}_{q}", float(c_attn[q, k].sum()))
            add(f"{below}{q}", f"A{li}_{q}", float(c_res[q]))
            add(f"A{li}_{q}", f"M{li}_{q}", float(c_mlp[q, 0]))
            add(f"M{li}_{q}", f"I{li}_{q}", float(c_mlp[q, 0]))
            add(f"A{li}_{q}", f"I{li}_{q}", float(c_r[q]))
    rg = g.reverse()
    view = nx.subgraph_view(rg, filter_edge=lambda u, v: rg[u][v]["weight"] > threshold)
    walked = view.edge_subgraph(nx.edge_dfs(view, source=f"I{n_layers - 1}_{n - 1}")).reverse()
    return {"walk": walked, "attn": attn_raw}


CASES = [("gpt2", 0.01, "auto"), ("llama", 0.01, "auto"), ("llama", 0.02, "eager"),
         ("gpt_neox", 0.01, "auto"), ("gpt2", 0.04, "auto")]  # fmt: skip


@pytest.mark.parametrize(("model_type", "threshold", "method"), CASES)
def test_routes_equal_the_definitions(model_type: str, threshold: float, method: str) -> None:
    m = _model(model_type)
    ins = m.inspect(FAMILY_TEXT)
    req = ExplainRequest(ins.capture, "self", m.bundle)
    routes = get_explainer("information_flow")(req, threshold=threshold, method=method)
    ref = _reference(m, ins, model_type, threshold)
    got = routes.graph
    want = ref["walk"]
    assert set(got.edges) == set(want.edges)
    if threshold < 0.02:  # the walk went through attention, not only along the residual
        assert (routes.edges["block"] == "attention").sum() > 8
    for u, v in want.edges:
        assert abs(got[u][v]["weight"] - want[u][v]["weight"]) < 1e-5, (u, v)
    assert set(got.nodes) == set(want.nodes)
    n = len(ins.capture.stacks["self"].query)
    for li in range(m.bundle.n_layers):
        for q in (n - 1, n // 2, 0):
            c_attn, c_res = ref["attn"][li]
            np.testing.assert_allclose(
                routes.attention_contributions(li, q), c_attn[q].numpy(), atol=1e-5, rtol=0
            )
            assert abs(routes.residual_contribution(li, q) - float(c_res[q])) < 1e-5
    heads = routes.heads.groupby(["layer", "source_pos", "target_pos"])["weight"].sum()
    attn = routes.edges[routes.edges["block"] == "attention"].set_index(
        ["layer", "source_pos", "target_pos"]
    )["weight"]
    assert len(heads) == len(attn)
    if len(attn):
        np.testing.assert_allclose(
            heads.reindex(attn.index).to_numpy(), attn.to_numpy(), atol=1e-12
        )


def test_routes_report_each_node_and_the_token_mass() -> None:
    m = _model("gpt2")
    ins = m.inspect(FAMILY_TEXT)
    req = ExplainRequest(ins.capture, "self", m.bundle)
    routes = get_explainer("information_flow")(req, threshold=0.01)
    nodes = routes.nodes.set_index("node")
    assert routes.output_node in nodes.index and nodes.loc[routes.output_node, "rank"] == 0
    assert set(routes.graph.nodes) == set(nodes.index)
    scores = get_explainer("information_flow").scores(req)
    assert scores.shape == (len(ins.capture.stacks["self"].key),)
    assert 0.5 < scores.sum() <= 1 + 1e-9 and (scores >= 0).all()
    # the attribution of the same prediction rides along, and adds up
    frame = routes.attribution.frame
    total = frame["attribution"].sum() + frame.attrs["unembedding_bias"]
    assert abs(total - frame.attrs["logit"]) < 1e-5


def test_routes_export_and_refuse_what_they_cannot_trace(tmp_path: Any) -> None:
    import pandas as pd

    m = _model("gpt2")
    ins = m.inspect(FAMILY_TEXT)
    req = ExplainRequest(ins.capture, "self", m.bundle)
    routes = get_explainer("information_flow")(req, threshold=0.01)
    path = routes.to_parquet(tmp_path / "edges.parquet")
    back = pd.read_parquet(path)
    assert len(back) == len(routes.edges) and list(back.columns) == list(routes.edges.columns)
    routes.to_parquet(tmp_path / "nodes.parquet", what="nodes")
    with pytest.raises(InputError, match="what must be one of"):
        routes.to_parquet(tmp_path / "x.parquet", what="weights")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="threshold must be between 0 and 1"):
        get_explainer("information_flow")(req, threshold=1.5)
    with pytest.raises(InputError, match="layer 9 is out of range"):
        routes.attention_contributions(9, 0)
    t5 = inspector.load(build_family("bart"))
    t_ins = t5.inspect(FAMILY_SOURCE, target=FAMILY_TARGET)
    with pytest.raises(UnsupportedModelError, match="routes are defined for decoder"):
        get_explainer("information_flow")(ExplainRequest(t_ins.capture, "decoder", t5.bundle))
