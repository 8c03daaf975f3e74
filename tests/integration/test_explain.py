"""Explain: rollout, attention flow, norm-based attention and head importance.

Pure functions run on ``softmax(randn)`` arrays; hooks run on the tiny BERT / GPT-2 models and a
tiny LLaMA with grouped-query attention; the real MiniLM checks the [CLS] sink and stability."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import inspector
from inspector import explain as ex
from inspector.capture.hooks import Hook
from inspector.capture.run import forward
from inspector.errors import InputError, UnsupportedModelError
from inspector.explain.importance import _gate_hook
from inspector.explain.model import inputs_for, structure
from inspector.explain.target import resolve_target, target_values
from inspector.frames import COLUMNS

from factories import build_tiny_llama

TEXT = "The cat sat on the mat because it was tired."


def _hooks(model: torch.nn.Module) -> dict:
    """Every forward (pre-)hook on the model (transformers registers some of its own)."""
    return {
        name: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
        for name, m in model.named_modules()
    }


def _state(model: torch.nn.Module) -> tuple:
    return (
        model.training,
        any(m.training for m in model.modules()),
        tuple(p.requires_grad for p in model.parameters()),
        all(p.grad is None for p in model.parameters()),
        model.config._attn_implementation,
    )


@pytest.fixture(scope="module")
def tiny_llama(tiny):
    """A 2-layer LLaMA with 4 query heads sharing 2 value heads (GQA), GPT-2's tokenizer."""
    return inspector.load(build_tiny_llama(tiny["gpt2"].tokenizer))


def _manual_value_norms(m, ins, layer: int) -> np.ndarray:
    """‖(x W_V + b_V) W_O^h‖ computed from the hidden states, without hooks."""
    model, b = m.model, m.bundle
    ids = torch.tensor([ins.token_ids.tolist()])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[layer]
        if b.model_type == "bert":
            att = model.bert.encoder.layer[layer].attention
            v = att.self.value(hidden)[0]
            w_o = att.output.dense.weight.T
        elif b.model_type == "gpt2":
            blk = model.transformer.h[layer]
            v = blk.attn.c_attn(blk.ln_1(hidden))[0, :, 64:]
            w_o = blk.attn.c_proj.weight
        else:
            blk = model.model.layers[layer]
            v = blk.self_attn.v_proj(blk.input_layernorm(hidden))[0]
            w_o = blk.self_attn.o_proj.weight.T
        d = w_o.shape[0] // b.n_heads
        v = v.view(v.shape[0], b.n_kv_heads, d)
        group = b.n_heads // b.n_kv_heads
        out = []
        for h in range(b.n_heads):
            f = v[:, h // group] @ w_o[h * d : (h + 1) * d]
            out.append(f.norm(dim=-1))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_attention_norms_match_manual_computation(kind, tiny, tiny_llama):
    m = tiny_llama if kind == "llama" else tiny[kind]
    ins = m.inspect(TEXT)
    hooks = _hooks(m.model)
    na = ex.attention_norms(m.bundle, ins.stack)
    assert _hooks(m.model) == hooks
    assert na.norms.shape == ins.attention.shape
    np.testing.assert_allclose(na.weights, ins.attention, atol=1e-6)
    for layer in range(m.bundle.n_layers):
        np.testing.assert_allclose(
            na.value_norms[layer], _manual_value_norms(m, ins, layer), rtol=1e-4, atol=1e-6
        )
    np.testing.assert_allclose(na.norms, na.weights * na.value_norms[:, :, None, :], rtol=1e-5)
    np.testing.assert_allclose(na.shares().sum(-1), 1, atol=1e-6)


def test_norms_frame_and_selection(tiny):
    m = tiny["bert"]
    ins = m.inspect(TEXT)
    na = ex.attention_norms(m.bundle, ins.stack, layers=[1], heads=[0])
    assert na.norms.shape == (1, 1, *ins.attention.shape[2:])
    frame = na.frame()
    assert list(frame.columns) == [*COLUMNS, "norm"]
    assert set(frame["layer"]) == {1} and set(frame["head"]) == {0}
    full = ins.frame(layers=[1], heads=[0])
    np.testing.assert_allclose(frame.weight, full.weight, atol=1e-6)
    ex_frame = na.frame(exclude_special=True, normalise=True)
    n = int((~ins.stack.query.special).sum())
    assert len(ex_frame) == n * n
    sums = ex_frame.groupby("query_pos").norm.sum()
    np.testing.assert_allclose(sums, 1, atol=1e-5)
    np.testing.assert_allclose(ex_frame.groupby("query_pos").weight.sum(), 1, atol=1e-5)


def test_values_that_do_not_reproduce_the_attention_output_are_refused(tiny_dirs):
    """Norms check Σ_j α_ij v_j against the input of the output projection: a value source
    that is not the values (here the query projection) is refused with the reason."""
    import dataclasses

    m = inspector.load(str(tiny_dirs["bert"]))
    ins = m.inspect(TEXT)
    found = structure(m.bundle, "test")
    wrong = dataclasses.replace(
        found,
        layers=tuple(
            dataclasses.replace(
                layer,
                values=(dataclasses.replace(layer.values[0], module=layer.query, name="query"),),
            )
            for layer in found.layers
        ),
    )
    m.bundle.extra["structures"]["self"] = wrong
    with pytest.raises(UnsupportedModelError, match="no value projection reproduces"):
        ex.attention_norms(m.bundle, ins.stack)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_ablating_no_head_is_bitwise_identical(kind, tiny, tiny_llama):
    m = tiny_llama if kind == "llama" else tiny[kind]
    inputs = inputs_for(m.bundle, TEXT)
    hooks = _hooks(m.model)
    with torch.no_grad():
        ref = m.model(**inputs).logits
        with ex.ablated_heads(m.bundle, []):
            same = m.model(**inputs).logits
        with ex.ablated_heads(m.bundle, [(1, h) for h in range(m.bundle.n_heads)]):
            changed = m.model(**inputs).logits
        with ex.ablated_heads(m.bundle, [(0, 0)], mode="mean"):
            mean_changed = m.model(**inputs).logits
    assert torch.equal(ref, same)
    assert not torch.allclose(ref, changed)
    assert not torch.allclose(ref, mean_changed)
    assert _hooks(m.model) == hooks


def test_batched_ablation_matches_one_at_a_time(tiny):
    m = tiny["bert"]
    text = "the cat [MASK] on the mat."
    frame = ex.head_importance(m.bundle, text, target="predicted", batch_size=3)
    inputs = inputs_for(m.bundle, text)
    mask_pos = int((inputs["input_ids"][0] == m.tokenizer.mask_token_id).nonzero()[0, 0])
    with torch.no_grad():
        clean = torch.softmax(m.model(**inputs).logits[0, mask_pos], -1)
        tok = int(clean.argmax())
        for row in frame.reset_index().itertuples():
            with ex.ablated_heads(m.bundle, [(row.layer, row.head)]):
                p = torch.softmax(m.model(**inputs).logits[0, mask_pos], -1)[tok]
            assert row.delta == pytest.approx(float(p - clean[tok]), abs=1e-5)
    assert frame.target_clean.iloc[0] == pytest.approx(float(clean[tok]), abs=1e-5)
    assert "prob of token" in frame.attrs["inspector"]["target"]


def _plain_batch_deltas(bundle, text: str, target: ex.Target, mode: str) -> np.ndarray:
    """Reference: every ablation a full row of one batch (input repeated), row 0 clean."""
    found = structure(bundle, "test")
    inputs = inputs_for(bundle, text)
    n_l, n_h = bundle.n_layers, bundle.n_heads
    rows = n_l * n_h + 1
    gates = [torch.ones(rows, n_h) for _ in range(n_l)]
    for r in range(1, rows):
        gates[(r - 1) // n_h][r, (r - 1) % n_h] = 0.0
    hooks = [
        Hook(found.layers[li].out, _gate_hook(gates[li], n_h, mode), "pre") for li in range(n_l)
    ]
    batch = {k: v.expand(rows, *v.shape[1:]) for k, v in inputs.items()}
    resolved = resolve_target(ex.Target.parse(target), bundle, inputs, forward(bundle, inputs))
    vals = target_values(resolved, forward(bundle, batch, hooks=hooks), rows).double().numpy()
    return (vals[1:] - vals[0]).reshape(n_l, n_h)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_shared_prefix_ablation_equals_plain_batch(kind, mode, tiny, tiny_llama):
    m = tiny_llama if kind == "llama" else tiny[kind]
    text = "the cat [MASK] on the mat because it was tired." if kind == "bert" else TEXT
    hooks = _hooks(m.model)
    target = ex.Target.predicted("logprob")
    ref = _plain_batch_deltas(m.bundle, text, target, mode)
    # the comparison is not vacuous (mean-ablating a head of the tiny BERT moves little)
    assert np.abs(ref).max() > (1e-6 if mode == "mean" else 1e-4)
    # one pass for all heads, and passes of 2 ablations (some spanning two layers)
    for batch_size in (73, 3):
        frame = ex.head_importance(m.bundle, text, target=target, mode=mode, batch_size=batch_size)
        got = frame.delta.to_numpy().reshape(ref.shape)
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert _hooks(m.model) == hooks


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_gradient_agrees_with_ablation_in_sign_and_rank(kind, tiny, tiny_llama):
    from scipy.stats import spearmanr

    m = tiny_llama if kind == "llama" else tiny[kind]
    text = "the cat [MASK] on the mat." if kind == "bert" else TEXT
    target = "predicted"
    abl = ex.head_importance(m.bundle, text, target=target, method="ablation")
    grad = ex.head_importance(m.bundle, text, target=target, method="gradient")
    assert (np.sign(abl.delta) == np.sign(grad.delta)).all()
    # importance is normalised per layer for gradients: compare the raw first-order deltas
    assert spearmanr(abl.delta.abs(), grad.delta.abs()).statistic > 0.7
    layer_norms = grad.groupby("layer").importance.apply(lambda s: np.sqrt((s**2).sum()))
    np.testing.assert_allclose(layer_norms, 1, atol=1e-9)


def test_model_left_exactly_as_loaded(tiny):
    m = tiny["gpt2"]
    before, hooks = _state(m.model), _hooks(m.model)
    params = [p.detach().clone() for p in m.model.parameters()]
    ex.head_importance(m.bundle, TEXT, method="ablation", mode="mean")
    ex.head_importance(m.bundle, TEXT, method="gradient")
    ex.attention_norms(m.bundle, m.inspect(TEXT).stack)
    assert _state(m.model) == before
    assert all(torch.equal(a, b) for a, b in zip(params, m.model.parameters(), strict=True))
    assert _hooks(m.model) == hooks


def test_hooks_removed_when_forward_raises(tiny):
    m = tiny["gpt2"]
    hooks = _hooks(m.model)

    def broken(out):
        raise RuntimeError("boom")

    for method in ("ablation", "gradient"):
        with pytest.raises(RuntimeError, match="boom"):
            ex.head_importance(m.bundle, TEXT, target=broken, method=method)
        assert _hooks(m.model) == hooks
    with pytest.raises(RuntimeError, match="inside"), ex.ablated_heads(m.bundle, [(0, 1)]):
        raise RuntimeError("inside")
    assert _hooks(m.model) == hooks


def test_causal_targets(tiny):
    m = tiny["gpt2"]
    inputs = inputs_for(m.bundle, TEXT)
    with torch.no_grad():
        logp = torch.log_softmax(m.model(**inputs).logits[0, -1], -1)
    tok = m.tokenizer.convert_ids_to_tokens([int(logp.argmax())])[0]
    pred = ex.head_importance(m.bundle, TEXT, target="predicted")
    assert pred.target_clean.iloc[0] == pytest.approx(float(logp.max()), abs=1e-5)
    given = ex.head_importance(m.bundle, TEXT, target=ex.Target.token(int(logp.argmax())))
    np.testing.assert_allclose(given.delta, pred.delta, atol=1e-6)
    loss = ex.head_importance(m.bundle, TEXT, target=ex.Target.loss(int(logp.argmax())))
    np.testing.assert_allclose(loss.delta, -pred.delta, atol=1e-6)
    custom = ex.head_importance(
        m.bundle, TEXT, target=lambda out: torch.log_softmax(out.logits[:, -1], -1).max(-1).values
    )
    assert custom.target_clean.iloc[0] == pytest.approx(float(logp.max()), abs=1e-5)
    assert repr(m.readable_tokens([tok])[0]) in pred.attrs["inspector"]["target"]  # ␣x, not Ġx
    with pytest.raises(InputError, match="one value per batch row"):
        ex.head_importance(m.bundle, TEXT, target=lambda out: out.logits.sum())


def test_masked_lm_needs_a_mask(tiny):
    with pytest.raises(InputError, match="MASK"):
        ex.head_importance(tiny["bert"].bundle, TEXT)


def test_classifier_targets(tiny_classifier):
    b = tiny_classifier.bundle
    inputs = inputs_for(b, TEXT)
    with torch.no_grad():
        probs = torch.softmax(b.model(**inputs).logits[0], -1)
    pred = ex.head_importance(b, TEXT)
    assert pred.target_clean.iloc[0] == pytest.approx(float(probs.max()), abs=1e-6)
    pos = ex.head_importance(b, TEXT, target="label:pos")
    assert pos.target_clean.iloc[0] == pytest.approx(float(probs[2]), abs=1e-6)
    logit = ex.head_importance(b, TEXT, target=ex.Target.label(0, "logit"), method="gradient")
    assert "logit of class 'neg'" in logit.attrs["inspector"]["target"]
    with pytest.raises(InputError, match="labels"):
        ex.head_importance(b, TEXT, target="label:nope")


def test_bare_encoder_embedding_targets(tiny_bare):
    b = tiny_bare.bundle
    proj = ex.head_importance(b, TEXT)
    assert "projected" in proj.attrs["inspector"]["target"]
    cos = ex.head_importance(b, TEXT, target="embedding:cosine")
    assert (cos.delta <= 1e-6).all() and cos.target_clean.iloc[0] == pytest.approx(1, abs=1e-6)
    with pytest.raises(InputError, match="zero gradient"):
        ex.head_importance(b, TEXT, target="embedding:cosine", method="gradient")
    norm = ex.head_importance(b, TEXT, target="embedding:norm", method="gradient")
    assert np.isfinite(norm.importance).all()


def test_head_importance_many(tiny):
    m = tiny["gpt2"]
    texts = [TEXT, "A dog barked at the mailman.", "The keys are on the table."]
    mean = ex.head_importance_many(m.bundle, texts, method="gradient")
    per = ex.head_importance_many(m.bundle, texts, method="gradient", per_text=True)
    assert len(mean) == 4 and len(per) == 12 and mean.attrs["inspector"]["n_texts"] == 3
    np.testing.assert_allclose(
        mean.delta, per.groupby(["layer", "head"]).delta.mean().to_numpy(), atol=1e-12
    )
    with pytest.raises(InputError, match="non-empty list"):
        ex.head_importance_many(m.bundle, [])


def test_explain_summary(tiny):
    m = tiny["gpt2"]
    e = ex.explain(m.bundle, m.inspect(TEXT).capture, top=2)
    n = len(e.tokens)
    assert e.raw.shape == e.norm.shape == e.rollout.shape == (n, n)
    assert len(e.top_heads) == len(e.top_maps) == 2
    imp = e.importance.importance
    assert imp[e.top_heads[0]] == imp.max()
    assert imp[e.top_heads[1]] == imp.drop(e.top_heads[0]).max()


def test_inspection_methods(tiny):
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    n = len(ins.tokens)
    roll = ins.explain.rollout()
    assert len(roll) == n * n and list(roll.columns[:4]) == [
        "query_pos",
        "key_pos",
        "query_token",
        "key_token",
    ]
    np.testing.assert_allclose(roll.groupby("query_pos").weight.sum(), 1, atol=1e-5)
    assert len(ins.explain.attention_flow(start_layer=1)) == n * n
    norms = ins.explain.norms(normalise=True)
    assert len(norms) == ins.attention.size
    np.testing.assert_allclose(norms.weight, ins.frame().weight, atol=1e-6)
    imp = ins.explain.gradient()
    assert imp.shape[0] == 4
    many = inspector.head_importance(m, [TEXT, "A dog barked."], method="gradient")
    assert many.attrs["inspector"]["n_texts"] == 2
    assert inspector.Target is ex.Target


def test_inspection_without_model_says_how_to_fix(tiny):
    ins = tiny["gpt2"].inspect(TEXT)
    bare = inspector.Inspection(ins.capture)
    assert len(bare.explain.rollout()) > 0  # pure: needs no model
    with pytest.raises(UnsupportedModelError, match=r"LoadedModel.inspect\(...\)"):
        bare.explain.ablation()


def test_explain_report_section(tiny, tmp_path):
    from html.parser import HTMLParser

    m = tiny["gpt2"]
    out = tmp_path / "explain.html"
    report = m.inspect(TEXT).explain.report(out, method="gradient", top=2)
    section = next(s for s in report.sections if s.id == "what-mattered")
    assert len(section.context["figures"]) == 2 and len(section.context["top"]) == 2

    class Ids(HTMLParser):
        ids: set = set()  # noqa: RUF012

        def handle_starttag(self, tag, attrs):
            self.ids.update(v for k, v in attrs if k == "id")

    parser = Ids()
    parser.feed(out.read_text(encoding="utf-8"))
    assert "what-mattered" in parser.ids


def test_cli_explain(tiny_dirs, tmp_path, capsys):
    from inspector.cli import main

    out = tmp_path / "e.html"
    code = main(["explain", str(tiny_dirs["gpt2"]), TEXT, "--target", "predicted", "-o", str(out)])
    assert code == 0 and out.exists()
    assert re.search(r"top heads \d+\.\d+, \d+\.\d+", capsys.readouterr().out)
    assert main(["explain", str(tiny_dirs["gpt2"]), TEXT, "--target", "nope", "-o", str(out)])
    assert "unknown target" in capsys.readouterr().err
