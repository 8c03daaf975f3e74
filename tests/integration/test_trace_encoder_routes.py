"""Information flow routes on a post-LN encoder (tiny random BERT) equal a direct implementation.

The reference below is written from the definitions alone (the module docstring of
``inspector.explain.encoder_routes``): every LayerNorm decomposed with its scale frozen at the
whole's value (Kobayashi et al. 2021), the full ``pos x key x head x hidden`` decomposition from
the model's own eager attention, values and norms read here with hooks; the whole graph, then
the walk with networkx, in float64. The output projections and MLP outputs are scaled up so
that attention, MLP and bias parts survive the threshold.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import pytest
import torch

import inspector
from inspector.errors import InputError, UnsupportedModelError
from inspector.explain.registry import ExplainRequest, get_explainer

from factories import FAMILY_TEXT, build_family, eager_attention, keep_hooks

EPS = 1e-5

_MODELS: dict[str, Any] = {}


def _model() -> Any:
    if "bert" not in _MODELS:
        model, tok = build_family("bert")
        with torch.no_grad():
            for layer in model.bert.encoder.layer:
                layer.attention.self.value.weight.mul_(8.0)
                layer.attention.output.dense.weight.mul_(12.0)
                layer.attention.output.dense.bias.normal_(0.0, 0.5)
                layer.output.dense.weight.mul_(12.0)
        _MODELS["bert"] = inspector.load((model, tok))
    return _MODELS["bert"]


def _read(model: Any, ids: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    kept: dict[str, list[torch.Tensor]] = {k: [] for k in ("in", "out", "v", "n1i", "n1o", "n2i")}
    kept["n2o"] = []

    pre, post = keep_hooks(kept)

    handles = []
    for layer in model.bert.encoder.layer:
        handles.append(layer.register_forward_pre_hook(pre("in"), with_kwargs=True))
        handles.append(layer.register_forward_hook(post("out")))
        handles.append(layer.attention.self.value.register_forward_hook(post("v")))
        ln1, ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
        handles.append(ln1.register_forward_pre_hook(pre("n1i"), with_kwargs=True))
        handles.append(ln1.register_forward_hook(post("n1o")))
        handles.append(ln2.register_forward_pre_hook(pre("n2i"), with_kwargs=True))
        handles.append(ln2.register_forward_hook(post("n2o")))
    kept["alpha"] = eager_attention(model, ids, handles)
    return kept


def _frozen(ln: Any, parts: torch.Tensor, whole_in: torch.Tensor) -> torch.Tensor:
    """``γ·(p − mean p)/σ`` with ``σ`` of the whole input (per position, the last but one axis
    of ``parts`` lines up with ``whole_in``'s rows)."""
    centred = whole_in - whole_in.mean(-1, keepdim=True)
    sigma = (centred.pow(2).mean(-1) + ln.eps).sqrt()
    g = ln.weight.double()
    return (parts - parts.mean(-1, keepdim=True)) / sigma[:, None] * g


def _contrib(parts: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    c = (whole.abs().sum(-1) - (whole - parts).abs().sum(-1)).clamp(min=EPS)
    return c / c.sum(0, keepdim=True)


def _cut(c: torch.Tensor, t: float) -> torch.Tensor:
    """Threshold and renormalise over the first axis (the parts)."""
    c = c * (c > t)
    return c / c.sum(0, keepdim=True).clamp(min=1e-300)


def _reference(m: Any, ids: torch.Tensor, threshold: float, start: int | None) -> dict[str, Any]:
    model = m.bundle.model
    kept = _read(model, ids)
    n = len(ids)
    n_h = m.bundle.n_heads
    g = nx.DiGraph()
    raw = []

    def add(u: str, v: str, w: float) -> None:
        if g.has_edge(u, v):
            g[u][v]["weight"] += w
        else:
            g.add_edge(u, v, weight=w)

    layers = model.bert.encoder.layer
    for li, layer in enumerate(layers):
        x, n1i, n1o = kept["in"][li], kept["n1i"][li], kept["n1o"][li]
        n2i, n2o = kept["n2i"][li], kept["n2o"][li]
        dense = layer.attention.output.dense
        w_o = dense.weight.double().T.reshape(n_h, -1, dense.weight.shape[0])
        v = kept["v"][li].reshape(n, n_h, -1)
        dec = torch.einsum("hqk,khd,hdm->kqhm", kept["alpha"][li], v, w_o)  # (k, q, h, m)
        ln1, ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
        heads = _frozen(ln1, dec.permute(0, 2, 1, 3).reshape(-1, n, dec.shape[-1]), n1i)
        bias = _frozen(ln1, dense.bias.double().expand(n, -1), n1i)
        resid = _frozen(ln1, x, n1i)
        c = _contrib(torch.cat([heads, bias[None], resid[None]]), n1o)  # (k*h + 2, q)
        raw.append((c[:-2].reshape(n, n_h, n).permute(2, 0, 1), c[-2], c[-1]))
        c = _cut(c, threshold)
        c_attn = c[:-2].reshape(n, n_h, n).permute(2, 0, 1)  # (q, k, h)
        mlp = _frozen(ln2, n2i - n1o, n2i)
        c_ffn = _cut(_contrib(torch.stack([mlp, _frozen(ln2, n1o, n2i)]), n2o), threshold)
        below = f"I{li - 1}_" if li else "X0_"
        for q in range(n):
            for k in range(n):
                add(f"{below}{k}", f"A{li}_{q}", float(c_attn[q, k].sum()))
            add(f"{below}{q}", f"A{li}_{q}", float(c[-1, q]))
            add(f"A{li}_{q}", f"M{li}_{q}", float(c_ffn[0, q]))
            add(f"M{li}_{q}", f"I{li}_{q}", float(c_ffn[0, q]))
            add(f"A{li}_{q}", f"I{li}_{q}", float(c_ffn[1, q]))
    last = len(layers) - 1
    if start is None:
        final = kept["out"][last]
        pooled = _cut(_contrib(final[:, None] / n, final.mean(0)[None]), threshold)[:, 0]
        for k in range(n):
            add(f"I{last}_{k}", "E", float(pooled[k]))
        source = "E"
    else:
        source = f"I{last}_{start}"
    rg = g.reverse()
    view = nx.subgraph_view(rg, filter_edge=lambda u, v: rg[u][v]["weight"] > threshold)
    walked = view.edge_subgraph(nx.edge_dfs(view, source=source)).reverse()
    return {"walk": walked, "raw": raw}


@pytest.mark.parametrize(("threshold", "position"), [(0.02, None), (0.04, None), (0.02, 5)])
def test_encoder_routes_equal_the_definitions(threshold: float, position: int | None) -> None:
    m = _model()
    ins = m.inspect(FAMILY_TEXT)
    req = ExplainRequest(ins.capture, "self", m.bundle)
    routes = get_explainer("information_flow")(req, threshold=threshold, position=position)
    ids = torch.tensor(ins.capture.stacks["self"].query.ids)
    ref = _reference(m, ids, threshold, position)
    got, want = routes.graph, ref["walk"]
    assert set(got.edges) == set(want.edges)
    assert set(got.nodes) == set(want.nodes)
    for u, v in want.edges:
        assert abs(got[u][v]["weight"] - want[u][v]["weight"]) < 1e-5, (u, v)
    blocks = set(routes.edges["block"])
    assert {"attention", "mlp", "residual"} <= blocks
    assert ("pool" in blocks) == (position is None)
    assert routes.biases  # the attention bias is a part, and some nodes keep its share
    assert routes.output_node == ("E" if position is None else f"I1_{position}")
    n = len(ids)
    for li in range(m.bundle.n_layers):
        c_attn, c_bias, c_res = ref["raw"][li]
        for q in (n - 1, n // 2, 0):
            np.testing.assert_allclose(
                routes.attention_contributions(li, q), c_attn[q].numpy(), atol=1e-5, rtol=0
            )
            assert abs(routes.residual_contribution(li, q) - float(c_res[q])) < 1e-5
            assert abs(routes.bias_contribution(li, q) - float(c_bias[q])) < 1e-5
    # every walked node's incoming edges (plus its bias share) sum to 1
    a_nodes = routes.edges[routes.edges["target"].str.startswith("A")]
    into = a_nodes.groupby("target")["weight"].sum()
    for node, total in into.items():
        assert abs(total + routes.biases.get(str(node), 0.0) - 1.0) < 1e-9, node
    if position is None:  # the pooled embedding has no lens: nodes say where they are
        assert routes.nodes["logit"].isna().all() and routes.attribution is None
    else:  # a masked LM's position: the predicted token's attribution and every node's lens
        assert routes.nodes["logit"].notna().all() and routes.attribution is not None
        assert routes.token == routes.attribution.frame.attrs["token"]
    scores = routes.token_scores()
    assert scores.shape == (n,) and 0.5 < scores.sum() <= 1 + 1e-9


def test_encoder_routes_refuse_what_they_cannot_trace() -> None:
    m = _model()
    ins = m.inspect(FAMILY_TEXT)
    flow = get_explainer("information_flow")
    req = ExplainRequest(ins.capture, "self", m.bundle)
    with pytest.raises(InputError, match="put the mask token in the text or give position="):
        flow(req, token="cat")  # a masked LM, no [MASK]: the pooled route predicts no token
    model, tok = build_family("bert")
    bare = inspector.load((model.bert, tok))  # no LM head, as MiniLM
    with pytest.raises(InputError, match="leave out token="):
        flow(ExplainRequest(bare.inspect(FAMILY_TEXT).capture, "self", bare.bundle), token="cat")
    with pytest.raises(InputError, match="leave out position="):
        flow(ExplainRequest(ins.capture, "self", m.bundle, inspector.Target.parse("embedding")),
             position=2)  # fmt: skip
    with pytest.raises(InputError, match="cannot score this input"):
        flow.scores(req)
    modern = inspector.load(build_family("modernbert"))
    m_ins = modern.inspect(FAMILY_TEXT)
    with pytest.raises(UnsupportedModelError, match="post-LN"):
        flow(ExplainRequest(m_ins.capture, "self", modern.bundle))


def test_inspector_trace_draws_an_encoders_route(
    tiny_dirs: Any, tmp_path: Any, capsys: Any
) -> None:
    from inspector.cli import main

    out = tmp_path / "route.html"
    assert main(["trace", str(tiny_dirs["bert"]), FAMILY_TEXT, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("the mean-pooled embedding (13 tokens): from ")
    assert "logit attribution" not in printed and out.exists()
    assert 'class="ins-trace-data"' in out.read_text(encoding="utf-8")
    assert main(["trace", str(tiny_dirs["bert"]), FAMILY_TEXT, "--token", "cat", "-o", str(out)])
    assert "give position=" in capsys.readouterr().err
