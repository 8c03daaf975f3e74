"""SmolLM2 traced: "The capital of France is" -> " Paris", and its routes at ~500 tokens equal
the definitions computed here from the model's own eager attention and hooked values.

The reference reads SmolLM2's modules by the tests' own names (``model.layers.N``,
``self_attn.v_proj`` / ``o_proj``; 9 query heads over 3 key/value heads of 64 features)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

EPS = 1e-5


@pytest.mark.slow
def test_paris_is_written_by_heads_reading_france(smollm2: Any) -> None:
    ins = smollm2.inspect("The capital of France is")
    frame = ins.explain.logit_attribution()
    a = frame.attrs
    assert a["token"] == " Paris" and a["probability"] > 0.5
    with torch.inference_mode():
        logits = smollm2.model(torch.tensor(ins.token_ids)[None]).logits[0, -1].double()
    total = frame["attribution"].sum() + a["unembedding_bias"]
    assert abs(total - float(logits[a["token_id"]])) <= 1e-4 * abs(float(logits[a["token_id"]]))
    heads = frame[frame["kind"] == "head"].sort_values("attribution", ascending=False)
    split = ins.explain.logit_attribution(per_token=True)
    top = heads.index[0]
    reads = split.loc[top].sort_values("attribution", ascending=False)
    assert reads["source_token"].iloc[0] == "␣France"
    routes = ins.explain.information_flow()
    assert routes.answer().startswith("' Paris' (logit")
    assert "' France'" in routes.answer() or "␣France" in routes.answer()
    scores = routes.token_scores()
    assert scores[3] > scores[1]  # " France" reaches the prediction more than " capital"


def _reference_node(kept: dict[str, Any], li: int, q: int, w_o: torch.Tensor) -> tuple[Any, Any]:
    """``(key, head)`` and residual contributions at ``(li, q)``, straight from the formula."""
    x = kept["in"][li][q]
    mid = x + kept["y"][li][q]
    v = kept["v"][li].reshape(-1, 3, 64).repeat_interleave(3, dim=1)  # (key, head, d)
    alpha = kept["alpha"][li][:, q]  # (head, key)
    parts = torch.einsum("hk,khd,hdm->khm", alpha, v, w_o)  # (key, head, hidden)
    raw = (mid.abs().sum() - (mid - parts).abs().sum(-1)).clamp(min=EPS)
    res = (mid.abs().sum() - (mid - x).abs().sum()).clamp(min=EPS)
    total = raw.sum() + res
    return (raw / total).numpy(), float(res / total)


@pytest.mark.slow
def test_routes_at_500_tokens_equal_the_definitions(smollm2: Any) -> None:
    text = (
        " ".join(["The capital of France is Paris, and the capital of Italy is Rome."] * 34)
        + " The capital of Spain is"
    )
    ins = smollm2.inspect(text)
    n = len(ins.tokens)
    assert 450 <= n <= 600
    routes = ins.explain.information_flow()
    model = smollm2.model
    kept: dict[str, list[torch.Tensor]] = {"in": [], "y": [], "v": []}
    handles = []
    for li in range(30):
        layer = model.model.layers[li]
        handles.append(layer.register_forward_pre_hook(
            lambda _m, a, kw: kept["in"].append((a[0] if a else kw["hidden_states"])[0].double()),
            with_kwargs=True))  # fmt: skip
        handles.append(layer.self_attn.o_proj.register_forward_hook(
            lambda _m, _a, o: kept["y"].append(o[0].double())))  # fmt: skip
        handles.append(layer.self_attn.v_proj.register_forward_hook(
            lambda _m, _a, o: kept["v"].append(o[0].double())))  # fmt: skip
    try:
        with torch.inference_mode():
            model(torch.tensor(ins.token_ids)[None], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    kept["alpha"] = [torch.tensor(ins.attention[li]).double() for li in range(30)]
    w_o = [model.model.layers[li].self_attn.o_proj.weight.double().T.reshape(9, 64, -1)
           for li in range(30)]  # fmt: skip
    # every walked attention node, and a few others, before thresholding
    walked = routes.nodes[routes.nodes["kind"] == "A"][["layer", "pos"]].to_numpy().tolist()
    extra = [[0, n - 1], [15, n // 2], [29, 3]]
    worst = 0.0
    for li, q in walked + extra:
        want, want_res = _reference_node(kept, li, q, w_o[li])
        got = routes.attention_contributions(li, q)
        worst = max(worst, float(np.abs(got - want).max()))
        assert abs(routes.residual_contribution(li, q) - want_res) < 1e-5
    assert worst < 1e-5, worst
    assert len(walked) > 10
