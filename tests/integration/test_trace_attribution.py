"""Direct logit attribution (the ``logit_attribution`` and ``logit_lens`` explainers), exact.

Every decoder family of the family matrix (and the decoders of the T5 / BART families), and
every masked LM at its ``[MASK]``: the terms add up to the model's own logit minus the
unembedding bias; each head's per-token rows add up to its term. On GPT-2 (LayerNorm with
biases), LLaMA (RMSNorm, grouped-query attention) and OPT, each head's term is re-derived here
from a hook on its output projection's input and the final norm's input (the tests' own module
names), with the final norm's scale frozen by hand; on BERT, the last layer's head terms through
both post-LN norms and the MLM head (dense, GELU with its gate frozen, LayerNorm), by hand.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import InputError, UnsupportedModelError
from inspector.explain.registry import ExplainRequest, get_explainer

from factories import (
    FAMILY_OUTPUTS,
    FAMILY_SOURCE,
    FAMILY_SPECS,
    FAMILY_TARGET,
    FAMILY_TEXT,
    build_family,
)

DECODERS = [
    t
    for t, (_tok, cls, _kw) in FAMILY_SPECS.items()
    if cls.endswith(("CausalLM", "LMHeadModel", "ConditionalGeneration", "MTModel"))
]
SEQ2SEQ = {"t5", "mt5", "longt5", "bart", "mbart", "pegasus", "marian", "led"}
#: masked LMs with one block per layer (ALBERT shares one block: refused, tested below)
MASKED = [
    t
    for t, (_tok, cls, _kw) in FAMILY_SPECS.items()
    if cls.endswith("ForMaskedLM") and t != "albert"
]

_PAIRS: dict[str, Any] = {}


def _pair(model_type: str) -> Any:
    if model_type not in _PAIRS:
        _PAIRS[model_type] = inspector.load(build_family(model_type))
    return _PAIRS[model_type]


def _inspect(model_type: str) -> Any:
    m = _pair(model_type)
    if model_type in SEQ2SEQ:
        return m, m.inspect(FAMILY_SOURCE, target=FAMILY_TARGET)
    return m, m.inspect(FAMILY_TEXT)


def _run(ins: Any, m: Any, name: str, **options: Any) -> Any:
    kind = "decoder" if ins.capture.is_encoder_decoder else "self"
    return get_explainer(name)(ExplainRequest(ins.capture, kind, m.bundle), **options)


def _model_logits(m: Any, ins: Any, pos: int) -> np.ndarray:
    """The model's own logits at ``pos`` (a plain forward here), soft cap undone."""
    cap = ins.capture
    model = m.bundle.model
    ids = torch.tensor(cap.stacks["encoder" if cap.is_encoder_decoder else "self"].query.ids)
    kw: dict[str, Any] = {"input_ids": ids[None]}
    if cap.is_encoder_decoder:
        kw["decoder_input_ids"] = torch.tensor(cap.stacks["decoder"].query.ids)[None]
    with torch.no_grad():
        logits = model(**kw).logits[0, pos].double().numpy()
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return logits if not softcap else softcap * np.arctanh(logits / softcap)


@pytest.mark.parametrize("model_type", DECODERS)
def test_terms_add_up_to_the_logit(model_type: str) -> None:
    m, ins = _inspect(model_type)
    n = len(ins.capture.stacks["decoder" if ins.capture.is_encoder_decoder else "self"].query)
    pos = n - 2 if n > 2 else n - 1
    frame = _run(ins, m, "logit_attribution", position=pos)
    logits = _model_logits(m, ins, pos)
    tid = frame.attrs["token_id"]
    assert tid == int(np.argmax(logits))
    total = frame["attribution"].sum() + frame.attrs["unembedding_bias"]
    assert abs(total - logits[tid]) <= 1e-4 * max(abs(logits[tid]), 1e-3), model_type
    assert abs(frame.attrs["logit"] - logits[tid]) <= 1e-5 * max(abs(logits[tid]), 1.0)
    n_heads = m.bundle.stack_shape("decoder" if model_type in SEQ2SEQ else "self")[1]
    heads = frame[frame["kind"] == "head"]
    assert len(heads) == m.bundle.n_layers * n_heads  # grouped-query: every query head
    assert (frame.loc[frame.index.get_level_values("head") >= 0, "kind"].isin(
        ["head", "cross_head"])).all()  # fmt: skip
    if model_type in SEQ2SEQ:
        assert (frame["kind"] == "cross_head").sum() == len(heads)
    # per token: each head's rows add up to its term
    split = _run(ins, m, "logit_attribution", position=pos, per_token=True)
    sums = split.groupby(["layer", "head", "kind"])["attribution"].sum()
    terms = frame[frame["kind"].isin(["head", "cross_head"])].set_index("kind", append=True)
    np.testing.assert_allclose(
        sums.reindex(terms.index).to_numpy(), terms["attribution"].to_numpy(), atol=1e-7, rtol=1e-5
    )


def _against(m: Any, ins: Any) -> None:
    frame = _run(ins, m, "logit_attribution", token=5, against=7)
    logits = _model_logits(m, ins, -1)
    total = frame["attribution"].sum() + frame.attrs["unembedding_bias"]
    assert abs(total - (logits[5] - logits[7])) < 1e-5
    assert frame.attrs["against_id"] == 7 and frame.attrs["token_id"] == 5


@pytest.mark.parametrize("model_type", ["gpt2", "bart"])
def test_logit_difference_against_a_token(model_type: str) -> None:
    m, ins = _inspect(model_type)
    _against(m, ins)


#: the tests' own statement of each family's final norm (LayerNorm or RMSNorm)
FINAL_NORM = {"gpt2": ("transformer.ln_f", True), "llama": ("model.norm", False),
              "opt": ("model.decoder.final_layer_norm", True)}  # fmt: skip


@pytest.mark.parametrize("model_type", sorted(FINAL_NORM))
def test_head_terms_equal_a_hook_on_the_output_projection(model_type: str) -> None:
    m, ins = _inspect(model_type)
    model = m.bundle.model
    pos = 3
    frame = _run(ins, m, "logit_attribution", position=pos)
    pattern = re.compile(FAMILY_OUTPUTS[model_type]["self"])
    outs = [mod for name, mod in model.named_modules() if pattern.search(name)]
    assert len(outs) == m.bundle.n_layers
    z: list[torch.Tensor] = []
    final: list[torch.Tensor] = []
    handles = [o.register_forward_pre_hook(lambda _m, a: z.append(a[0][0, pos].double()))
               for o in outs]  # fmt: skip
    norm_name, centre = FINAL_NORM[model_type]
    norm = model.get_submodule(norm_name)
    handles.append(norm.register_forward_pre_hook(lambda _m, a: final.append(a[0][0, pos])))
    try:
        with torch.no_grad():
            model(torch.tensor(ins.capture.stacks["self"].query.ids)[None])
    finally:
        for h in handles:
            h.remove()
    r = final[0].double()
    rc = r - r.mean() if centre else r
    scale = torch.sqrt(
        (rc * rc).mean() + norm.eps if centre else (r * r).mean() + norm.variance_epsilon
    )
    u = model.get_output_embeddings().weight[frame.attrs["token_id"]].double()
    g = norm.weight.double() * u
    g = (g - g.mean() if centre else g) / scale
    n_heads = m.bundle.n_heads
    for li, (out, zl) in enumerate(zip(outs, z, strict=True)):
        w = out.weight.double()
        w_o = w if type(out).__name__ == "Conv1D" else w.T  # (heads * d, hidden)
        d = w_o.shape[0] // n_heads
        for h in range(n_heads):
            want = float(zl[h * d : (h + 1) * d] @ w_o[h * d : (h + 1) * d] @ g)
            got = float(frame.loc[(li, h), "attribution"])
            assert abs(got - want) <= 1e-5 * max(abs(want), 1e-3), (model_type, li, h)


def test_logit_lens_ends_at_the_model_logit() -> None:
    m, ins = _inspect("llama")
    lens = _run(ins, m, "logit_lens")
    frame = _run(ins, m, "logit_attribution")
    assert list(lens["layer"]) == list(range(-1, m.bundle.n_layers))
    last = lens.iloc[-1]
    assert last["rank"] == 0 and abs(last["logit"] - frame.attrs["logit"]) < 1e-4
    assert lens["top"].iloc[-1][0] == frame.attrs["token"]
    assert ((lens["prob"] >= 0) & (lens["prob"] <= 1)).all()


def test_token_scores_sum_the_heads_per_source_token() -> None:
    m, ins = _inspect("gpt2")
    req = ExplainRequest(ins.capture, "self", m.bundle)
    scores = get_explainer("logit_attribution").scores(req)
    split = _run(ins, m, "logit_attribution", per_token=True)
    assert scores.shape == (len(ins.capture.stacks["self"].key),)
    assert abs(scores.sum() - split["attribution"].sum()) < 1e-8


def test_generation_steps_explain_each_generated_token() -> None:
    m = _pair("llama")
    g = m.generate(FAMILY_TEXT, max_new_tokens=3)
    stack = g.capture.stacks["self"]
    n0 = stack.query.prompt_length
    for step in range(3):
        frame = _run(g, m, "logit_attribution", step=step)
        assert frame.attrs["position"] == n0 - 1 + step
        assert frame.attrs["token_id"] == int(stack.query.ids[n0 + step])
        total = frame["attribution"].sum() + frame.attrs["unembedding_bias"]
        assert abs(total - frame.attrs["logit"]) < 1e-5
    with pytest.raises(InputError, match="step 3 is outside"):
        _run(g, m, "logit_attribution", step=3)
    _m, plain = _inspect("llama")
    with pytest.raises(InputError, match="generated no tokens"):
        _run(plain, m, "logit_attribution", step=0)


def _masked(model_type: str) -> tuple[Any, Any, dict[str, Any]]:
    """The family's masked LM on FAMILY_TEXT with its third word masked (a tokenizer without a
    mask token: ``position=3`` named instead)."""
    m = _pair(model_type)
    mask = m.bundle.tokenizer.mask_token
    if not mask:
        return m, m.inspect(FAMILY_TEXT), {"position": 3}
    words = FAMILY_TEXT.split()
    words[2] = mask
    return m, m.inspect(" ".join(words)), {}


@pytest.mark.parametrize("model_type", MASKED)
def test_masked_lm_terms_add_up_at_the_mask(model_type: str) -> None:
    m, ins, opts = _masked(model_type)
    frame = _run(ins, m, "logit_attribution", **opts)
    pos = frame.attrs["position"]
    ids = ins.capture.stacks["self"].query.ids
    mask_id = m.bundle.tokenizer.mask_token_id
    assert pos == (3 if opts else list(ids).index(mask_id))
    with torch.no_grad():
        logits = m.bundle.model(input_ids=torch.tensor(ids)[None]).logits[0, pos].double().numpy()
    tid = frame.attrs["token_id"]
    assert tid == int(np.argmax(logits))
    total = frame["attribution"].sum() + frame.attrs["unembedding_bias"]
    assert abs(total - logits[tid]) <= 1e-4 * max(abs(logits[tid]), 1e-3), model_type
    heads = frame[frame["kind"] == "head"]
    assert len(heads) == m.bundle.n_layers * m.bundle.n_heads
    split = _run(ins, m, "logit_attribution", per_token=True, **opts)
    sums = split.groupby(["layer", "head"])["attribution"].sum()
    np.testing.assert_allclose(
        sums.reindex(heads.index).to_numpy(), heads["attribution"].to_numpy(), atol=1e-7, rtol=1e-5
    )
    lens = _run(ins, m, "logit_lens", **opts)
    assert abs(lens.iloc[-1]["logit"] - logits[tid]) < 1e-4 and lens.iloc[-1]["rank"] == 0


def test_bert_last_layer_heads_through_the_frozen_mlm_head() -> None:
    """BERT's last-layer head terms, re-derived by hand: z_h W_O^h through LN1 and LN2 of the
    last block (post-LN, scales frozen at the pass), the MLM head's dense map, GELU with its
    gate Φ(u) frozen at the pass (gelu(u) = u Φ(u)), its LayerNorm frozen, the token's row."""
    m, ins, _opts = _masked("bert")
    model = m.bundle.model
    frame = _run(ins, m, "logit_attribution")
    pos = frame.attrs["position"]
    last = m.bundle.n_layers - 1
    block = model.bert.encoder.layer[last]
    transform = model.cls.predictions.transform
    seen: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Any:
        return lambda _m, a: seen.__setitem__(name, a[0][0, pos].double())

    handles = [
        block.attention.output.dense.register_forward_pre_hook(keep("z")),
        block.attention.output.LayerNorm.register_forward_pre_hook(keep("ln1")),
        block.output.LayerNorm.register_forward_pre_hook(keep("ln2")),
        transform.dense.register_forward_pre_hook(keep("h")),
        transform.LayerNorm.register_forward_pre_hook(keep("v")),
    ]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor(ins.capture.stacks["self"].query.ids)[None])
    finally:
        for h in handles:
            h.remove()

    def frozen(norm: Any, whole: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        sigma = torch.sqrt(whole.var(unbiased=False) + norm.eps)
        return (part - part.mean()) / sigma * norm.weight.double()

    u = transform.dense(seen["h"].float()[None])[0].double()
    gate = seen["v"] / u  # gelu(u) / u = Φ(u)
    w_u = model.get_output_embeddings().weight[frame.attrs["token_id"]].double()
    dense = block.attention.output.dense.weight.double()  # (hidden, heads * d)
    n_heads = m.bundle.n_heads
    d = dense.shape[1] // n_heads
    for h in range(n_heads):
        part = dense[:, h * d : (h + 1) * d] @ seen["z"][h * d : (h + 1) * d]
        part = frozen(block.output.LayerNorm, seen["ln2"],
                      frozen(block.attention.output.LayerNorm, seen["ln1"], part))  # fmt: skip
        part = (transform.dense.weight.double() @ part) * gate
        part = frozen(transform.LayerNorm, seen["v"], part)
        want = float(part @ w_u)
        got = float(frame.loc[(last, h), "attribution"])
        assert abs(got - want) <= 1e-5 * max(abs(want), 1e-3), h


def test_masked_lm_requests_say_what_to_do() -> None:
    m = _pair("bert")
    plain = m.inspect(FAMILY_TEXT)
    with pytest.raises(InputError, match=r"put \[MASK\] in the text, or give position="):
        _run(plain, m, "logit_attribution")
    assert _run(plain, m, "logit_attribution", position=2).attrs["position"] == 2
    albert = _pair("albert")
    with pytest.raises(UnsupportedModelError, match="share one block"):
        _run(albert.inspect(FAMILY_TEXT), albert, "logit_attribution", position=2)
    model, tok = build_family("bert")
    bare = inspector.load((model.bert, tok))  # an encoder without a head (as MiniLM is)
    req = ExplainRequest(bare.inspect(FAMILY_TEXT).capture, "self", bare.bundle)
    with pytest.raises(UnsupportedModelError, match="without a language-model head"):
        get_explainer("logit_attribution")(req)
    with pytest.raises(InputError, match="logit_attribution cannot score this input"):
        get_explainer("logit_attribution").scores(req)


def test_masked_lm_route_carries_the_attribution_and_lens() -> None:
    _m, ins, _opts = _masked("bert")
    routes = ins.explain.information_flow()
    frame = ins.explain.logit_attribution()
    assert routes.position == frame.attrs["position"] and routes.target == "position"
    assert routes.attribution is not None
    assert routes.attribution.frame["attribution"].equals(frame["attribution"])
    assert routes.nodes["rank"].notna().all() and routes.token == frame.attrs["token"]
    last = routes.nodes.query(f"kind == 'I' and pos == {routes.position}").iloc[-1]
    assert abs(last["logit"] - frame.attrs["logit"]) < 1e-4
    other = ins.explain.information_flow(target="embedding")
    assert other.attribution is None and other.target == "embedding"


def test_bad_requests_say_what_to_do() -> None:
    m, ins = _inspect("gpt2")
    with pytest.raises(InputError, match="outside the"):
        _run(ins, m, "logit_attribution", position=99)
    with pytest.raises(InputError, match="not one token"):
        _run(ins, m, "logit_attribution", token="unbelievably long words here")
    with pytest.raises(InputError, match="outside the vocabulary"):
        _run(ins, m, "logit_attribution", token=10**6)
    bert = _pair("bert")
    b_ins = bert.inspect(FAMILY_TEXT)
    b_req = ExplainRequest(b_ins.capture, "self", bert.bundle)
    # the faithfulness scoreboard skips a method whose scores raise InputError, with the reason
    with pytest.raises(InputError, match=r"information_flow cannot score this input: .*encoder"):
        get_explainer("information_flow").scores(b_req)
