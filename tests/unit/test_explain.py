"""Explain: rollout, attention flow, norm-based attention and head importance.

Pure functions run on ``softmax(randn)`` arrays; hooks run on the tiny BERT / GPT-2 models and a
tiny LLaMA with grouped-query attention; the real MiniLM checks the [CLS] sink and stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector import explain as ex
from inspector.errors import InputError


def _softmax(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(*shape, generator=g), -1).numpy()


def test_rollout_rows_sum_to_one_and_known_value():
    w = _softmax((3, 2, 6, 6))
    r = ex.rollout(w)
    assert r.shape == (6, 6)
    np.testing.assert_allclose(r.sum(-1), 1, atol=1e-12)
    uniform = np.full((2, 1, 3, 3), 1 / 3)
    np.testing.assert_allclose(ex.rollout(uniform)[0], [0.5, 0.25, 0.25])


def test_rollout_is_the_product_of_residual_matrices():
    w = _softmax((3, 4, 5, 5), seed=1)
    a = ex.residual_attention(w)
    np.testing.assert_allclose(a, 0.5 * w.mean(1) + 0.5 * np.eye(5), atol=1e-6)
    np.testing.assert_allclose(ex.rollout(w), a[2] @ a[1] @ a[0], atol=1e-12)
    np.testing.assert_allclose(ex.rollout(w, start_layer=1), a[2] @ a[1], atol=1e-12)
    np.testing.assert_allclose(ex.rollout(w, start_layer=-1), a[2], atol=1e-12)
    assert not np.allclose(ex.rollout(w, head_reduce="max"), ex.rollout(w))


def test_rollout_identity_attention_is_identity():
    w = np.broadcast_to(np.eye(4), (2, 3, 4, 4)).copy()
    np.testing.assert_allclose(ex.rollout(w), np.eye(4))


def test_rollout_exclude_special_drops_and_renormalises():
    w = _softmax((2, 2, 5, 5))
    special = np.array([True, False, False, False, True])
    r = ex.rollout(w, special=special, exclude_special=True)
    assert r.shape == (3, 3)
    np.testing.assert_allclose(r.sum(-1), 1)
    full = ex.rollout(w)[1:4, 1:4]
    np.testing.assert_allclose(r, full / full.sum(-1, keepdims=True))


def test_rollout_errors_say_what_to_do():
    w = _softmax((2, 2, 4, 4))
    with pytest.raises(InputError, match="head_reduce"):
        ex.rollout(w, head_reduce="median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="start_layer"):
        ex.rollout(w, start_layer=5)
    with pytest.raises(InputError, match="special="):
        ex.rollout(w, exclude_special=True)
    with pytest.raises(InputError, match="cross attention"):
        ex.rollout(_softmax((2, 2, 3, 4)))
    with pytest.raises(InputError, match=r"unknown option head_reduc; .* take start_layer"):
        ex.rollout(w, head_reduc="max")  # type: ignore[call-arg]
    with pytest.raises(InputError, match="unknown option rows"):
        ex.rollout(w, rows=[1])  # type: ignore[call-arg]


def test_flow_takes_rollouts_composition_options():
    w = _softmax((3, 2, 4, 4), seed=5)
    options = {"start_layer": 2, "head_reduce": "max", "residual": 0.3}
    np.testing.assert_allclose(
        ex.attention_flow(w, **options), ex.rollout(w, **options), atol=1e-9
    )  # one layer composed: flow and rollout are the same matrix
    special = np.array([True, False, False, False])
    flow = ex.attention_flow(w, special=special, exclude_special=True)
    assert flow.shape == (3, 3)
    np.testing.assert_allclose(flow.sum(axis=1), 1.0)


def test_flow_of_one_layer_is_the_residual_attention():
    w = _softmax((1, 2, 4, 4), seed=3)
    np.testing.assert_allclose(ex.attention_flow(w), ex.residual_attention(w)[0], atol=1e-9)


def test_flow_rows_sum_to_one_and_track_rollout():
    w = _softmax((3, 2, 5, 5), seed=4)
    f = ex.attention_flow(w)
    np.testing.assert_allclose(f.sum(-1), 1, atol=1e-9)
    assert (f >= 0).all()
    assert np.corrcoef(f.ravel(), ex.rollout(w).ravel())[0, 1] > 0.3
    special = np.array([True, False, False, False, False])
    assert ex.attention_flow(w, special=special, exclude_special=True).shape == (4, 4)


def test_flow_refuses_long_inputs_naming_limit_and_time():
    w = np.full((1, 1, 40, 40), 1 / 40)
    with pytest.raises(InputError) as err:
        ex.attention_flow(w)
    msg = str(err.value)
    assert str(ex.FLOW_MAX_TOKENS) in msg and " s at " in msg and "rollout" in msg


def test_sink_heads_flags_sink_with_small_norm():
    from inspector.capture.types import Tokens

    n = 4
    tokens = Tokens(
        ("[CLS]", "a", "b", "[SEP]"),
        np.arange(n),
        np.array([True, False, False, True]),
        np.array([-1, 0, 1, -1]),
        np.array([-1, 0, 0, -1]),
        np.full((n, 2), -1),
    )
    w = np.full((1, 2, n, n), 0.1)
    w[..., 0] = 0.7
    norms = w.copy()
    norms[0, 0, :, 0] = 0.01  # head 0 attends to [CLS] but passes on nothing
    frame = ex.sink_heads(w, norms, tokens)
    assert frame.index.tolist() == [(0, 0)] and frame["key_token"].tolist() == ["[CLS]"]
    assert frame.raw_share.iloc[0] == pytest.approx(0.7)
    assert frame.norm_share.iloc[0] < 0.05


def test_target_parse():
    assert ex.Target.parse(None) == ex.Target("auto")
    assert ex.Target.parse("predicted").kind == "predicted"
    assert ex.Target.parse("token:Paris") == ex.Target.token("Paris")
    assert ex.Target.parse("label:2") == ex.Target.label(2)
    assert ex.Target.parse("loss:1").score == "loss"
    assert ex.Target.parse("embedding:cosine").embedding == "cosine"
    fn = ex.Target.parse(lambda out: out.logits[:, 0, 0])
    assert fn.kind == "custom" and fn.fn is not None
    with pytest.raises(InputError, match="unknown target"):
        ex.Target.parse("bogus")


def test_explanation_repr_names_heads_layer_dot_head():
    import pandas as pd

    from factories import make_tokens

    tokens = make_tokens(["[CLS]", "a", "b", "[SEP]"])
    square = np.eye(4)
    expl = ex.Explanation(
        tokens=tokens,
        layer=3,
        raw=square,
        norm=square,
        rollout=square,
        importance=pd.DataFrame(),
        top_heads=[(5, 3), (2, 11)],
        top_maps=[square, square],
        sinks=pd.DataFrame(),
        target="the predicted token",
    )
    text = repr(expl)
    assert "top heads 5.3, 2.11" in text and "L5H3" not in text
    assert len(text) < 200  # no arrays dumped


def test_max_flow_falls_back_to_edmonds_karp_where_preflow_push_fails(monkeypatch):
    """networkx's preflow-push can fail relabelling on float capacities (a MiniLM run over UD
    EWT stopped on it): the same max-flow value then comes from Edmonds-Karp, the paper's."""
    import networkx as nx
    from networkx.algorithms import flow as nx_flow
    from networkx.algorithms.flow import build_residual_network

    from inspector.explain import flow as fl

    rng = np.random.default_rng(3)
    graph = nx.DiGraph()
    for depth in range(3):
        for i in range(4):
            for j in range(4):
                graph.add_edge((depth + 1, i), (depth, j), capacity=float(rng.random()))
    residual = build_residual_network(graph, "capacity")
    want = nx.maximum_flow_value(graph, (3, 0), (0, 2))
    assert fl._max_flow(graph, (3, 0), (0, 2), residual) == pytest.approx(want)

    def broken(*args, **kwargs):
        raise ValueError("min() arg is an empty sequence")

    monkeypatch.setattr(nx_flow, "preflow_push", broken)
    assert fl._max_flow(graph, (3, 0), (0, 2), residual) == pytest.approx(want)
