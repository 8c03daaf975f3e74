"""The faithfulness scoreboard on tiny models, re-derived independently.

Comprehensiveness, sufficiency and τ are recomputed here by a direct loop that deletes the
top-k tokens from the ids and calls the model itself; captum's attributions are recomputed by
calling captum directly on the model; a masked LM's target follows its [MASK]; a toy explainer
registered in a scope is scored and accepted by the CLI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import kendalltau

import inspector
from inspector.api.faithfulness_result import inspection_faithfulness
from inspector.explain import Explainer, get_explainer, register_explainer, scoped_explainers
from inspector.explain.registry import ExplainRequest

from factories import cli_fails, figure_specs

TEXT = "The cat sat on the mat because it was tired."


# ------------------------------------------------------------------ an independent re-derivation


def _top(scores: np.ndarray, k: int) -> list[int]:
    """ferret's rationale: the k best, best first, only positive scores."""
    order = np.argsort(scores)[::-1][:k]
    return [int(i) for i in order if scores[i] > 0]


def _value(m, ids: list[int], kind: str, target: int | None) -> float:
    """The target's probability (or embedding projection), calling the model directly."""
    model = m.model
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    if kind == "classifier":
        return float(torch.softmax(out.logits[0], -1)[target])
    if kind == "decoder":
        return float(torch.softmax(out.logits[0, -1].float(), -1)[target])
    raise AssertionError(kind)


def _direct(m, ins, method: str, kind: str) -> dict[str, float]:
    """The three metrics by a loop over k that deletes tokens and reruns the model."""
    ids = [int(i) for i in ins.token_ids]
    special = np.asarray(ins.stack.query.special, dtype=bool)
    content = [i for i in range(len(ids)) if not special[i]]
    request = ExplainRequest(ins.capture, "self", m.bundle)
    scores = get_explainer(method).scores(request)[content]
    with torch.no_grad():
        full = m.model(input_ids=torch.tensor([ids])).logits
    target = int(full[0].argmax()) if kind == "classifier" else int(full[0, -1].argmax())
    base = _value(m, ids, kind, target)

    def run(kept: list[int]) -> float:
        keep = set(kept)
        seq = [ids[i] for i in range(len(ids)) if special[i] or i in keep]
        if not seq:  # a decoder with every token deleted runs on its start token
            seq = [m.bundle.tokenizer.bos_token_id]
        return _value(m, seq, kind, target)

    comp, suff, last = [], [], None
    for k in range(1, len(content) + 1):
        top = _top(scores, k)
        if not top or set(top) == last:
            continue
        last = set(top)
        comp.append(base - run([content[j] for j in range(len(content)) if j not in top]))
        suff.append(base - run([content[j] for j in sorted(top)]))
    loo = [base - run([c for c in content if c != d]) for d in content]
    return {
        "comprehensiveness": float(np.mean(comp)) if comp else 0.0,
        "sufficiency": float(np.mean(suff)) if suff else 1.0,
        "loo": np.array(loo),
        "scores": scores,
    }


def _check(result, method: str, want: dict) -> None:
    """Comprehensiveness and sufficiency as the loop gives them; the leave-one-out values as
    the loop gives them (the occlusion scores), and τ as Kendall's τ of those and the scores
    (on a tiny random model the leave-one-out values tie to within float noise, so τ is
    compared given the values, not recomputed from the loop's own rounding)."""
    got = result.frame[result.frame["method"] == method].set_index("metric")["value"]
    for metric in ("comprehensiveness", "sufficiency"):
        assert got[metric] == pytest.approx(want[metric], abs=1e-6), metric
    occlusion = result.scores[result.scores["method"] == "occlusion"]["score"].to_numpy()
    np.testing.assert_allclose(occlusion, want["loo"], atol=1e-7)
    assert got["tau_loo"] == pytest.approx(float(kendalltau(occlusion, want["scores"])[0]))


@pytest.mark.parametrize("method", ["rollout", "attention", "occlusion", "random"])
def test_equals_a_direct_deletion_loop_on_gpt2(tiny, method):
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    result = ins.explain.faithfulness([method, "occlusion"])  # the namespace method
    _check(result, method, _direct(m, ins, method, "decoder"))
    assert result.metadata["target"].startswith("prob of token")


@pytest.mark.parametrize("method", ["rollout", "attention_mean", "gradient_x_input"])
def test_equals_a_direct_deletion_loop_on_a_classifier(tiny_classifier, method):
    m = tiny_classifier
    ins = m.inspect(TEXT)
    special = ins.stack.query.special
    assert special[0] and special[-1]  # [CLS] ... [SEP]: never deleted
    result = inspection_faithfulness(ins, [method, "occlusion"])
    _check(result, method, _direct(m, ins, method, "classifier"))


def test_deletions_are_batched_and_deduplicated(tiny):
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    methods = ["attention", "rollout", "occlusion", "random"]
    result = inspection_faithfulness(ins, methods)
    meta = result.metadata
    n = meta["n_tokens"]
    # every k-step of every method plus the leave-one-out inputs, run at most once each
    assert meta["deletion_rows"] <= len(methods) * 2 * n + n
    # inputs of one length share a pass: at most one pass per length (+ the full input)
    assert meta["forward_passes"] <= n + 2
    assert meta["forward_rows"] > meta["forward_passes"]
    # a row cap of 1 runs the same inputs one by one, with the same numbers
    one = inspection_faithfulness(ins, methods, max_rows=1)
    pd.testing.assert_frame_equal(one.frame, result.frame, atol=1e-6)
    assert one.metadata["forward_passes"] == one.metadata["forward_rows"]


# ------------------------------------------------------------------------------- captum


def _captum_direct(m, ins, method: str, kind: str) -> np.ndarray:
    """captum called directly on the model, as its tutorials do."""
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    model = m.model
    ids = torch.tensor([[int(i) for i in ins.token_ids]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    target = int(logits[0].argmax()) if kind == "classifier" else int(logits[0, -1].argmax())

    def fwd(input_ids):
        out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids)).logits
        out = out if kind == "classifier" else out[:, -1]
        return torch.softmax(out.float(), -1)[:, target]

    layer = model.get_input_embeddings()
    if method == "integrated_gradients":
        pad = m.bundle.tokenizer.pad_token_id
        if pad is None:
            pad = m.bundle.tokenizer.eos_token_id
        special = torch.tensor(np.asarray(ins.stack.query.special))[None]
        base = torch.where(special, ids, torch.full_like(ids, pad))
        attr = LayerIntegratedGradients(fwd, layer).attribute(ids, baselines=base, n_steps=50)
    else:
        attr = LayerGradientXActivation(fwd, layer).attribute(ids)
    return attr[0].sum(-1).detach().double().numpy()


@pytest.mark.parametrize("method", ["gradient_x_input", "integrated_gradients"])
@pytest.mark.parametrize("which", ["gpt2", "classifier"])
def test_captum_methods_equal_captum_called_directly(tiny, tiny_classifier, method, which):
    m = tiny_classifier if which == "classifier" else tiny["gpt2"]
    ins = m.inspect(TEXT)
    got = get_explainer(method).scores(ExplainRequest(ins.capture, "self", m.bundle))
    want = _captum_direct(m, ins, method, "classifier" if which == "classifier" else "decoder")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-8)
    assert np.abs(got).max() > 0
    params = [p.requires_grad for p in m.model.parameters()]
    assert all(p.grad is None for p in m.model.parameters())
    assert params == [p.requires_grad for p in m.model.parameters()]


# ----------------------------------------------------------------------- targets and steps


def test_a_masked_lm_target_follows_its_mask(tiny):
    m = tiny["bert"]
    ins = m.inspect("The cat [MASK] on the mat.")
    result = inspection_faithfulness(ins, ["occlusion"])
    ids = [int(i) for i in ins.token_ids]
    mask_at = ids.index(m.bundle.tokenizer.mask_token_id)
    with torch.no_grad():
        logits = m.model(input_ids=torch.tensor([ids])).logits
    token = int(logits[0, mask_at].argmax())
    base = float(torch.softmax(logits[0, mask_at], -1)[token])
    special = np.asarray(ins.stack.query.special, dtype=bool)
    content = [i for i in range(len(ids)) if not special[i]]
    loo = []
    for d in content:
        seq = [ids[i] for i in range(len(ids)) if i != d]
        with torch.no_grad():
            out = m.model(input_ids=torch.tensor([seq])).logits
        where = seq.index(m.bundle.tokenizer.mask_token_id)
        loo.append(base - float(torch.softmax(out[0, where], -1)[token]))
    scores = result.scores.set_index("position")["score"]
    assert list(scores.index) == content
    np.testing.assert_allclose(scores.to_numpy(), loo, atol=1e-6)
    assert result.metadata["baseline"] == pytest.approx(base, abs=1e-6)


def test_a_bare_encoder_scores_its_embedding_projection(tiny_bare):
    ins = tiny_bare.inspect(TEXT)
    result = inspection_faithfulness(ins, ["rollout", "random"])
    assert "embedding" in result.metadata["target"]
    assert result.metadata["baseline"] > 0  # the projection of the embedding on itself: its norm
    assert np.isfinite(result.frame["value"]).all()


def test_a_generated_token_with_step(tiny):
    m = tiny["gpt2"]
    g = m.generate("The cat sat", max_new_tokens=3)
    prompt = g.stack.query.prompt_length
    result = inspection_faithfulness(g, ["attention", "random"], step=1)
    assert result.metadata["generation_step"] == 1
    positions = sorted(set(result.scores["position"]))
    assert positions == list(range(prompt + 1))  # the prompt and the first generated token
    generated = int(g.token_ids[prompt + 1])
    name = m.bundle.tokenizer.convert_ids_to_tokens([generated])[0]
    assert name.replace("Ġ", "␣") in result.metadata["target"]
    with pytest.raises(inspector.InputError, match="step must be"):
        inspection_faithfulness(g, ["random"], step=3)
    with pytest.raises(inspector.InputError, match="generated no token"):
        inspection_faithfulness(m.inspect(TEXT), ["random"], step=0)


def test_attention_flow_is_skipped_over_its_token_limit(tiny):
    m = tiny["gpt2"]
    long = " ".join(["the cat sat"] * 8)
    ins = m.inspect(long)
    assert len(ins.tokens) > inspector.explain.FLOW_MAX_TOKENS
    result = inspection_faithfulness(ins, ["attention_flow", "random"])
    assert set(result.frame["method"]) == {"random"}
    (skip,) = result.metadata["skipped"]
    assert skip["method"] == "attention_flow" and "too slow" in skip["reason"]


# -------------------------------------------------------------- the registry and the CLI


def _toy(request: ExplainRequest) -> np.ndarray:
    """Scores the tokens by position, last first."""
    return np.arange(len(request.tokens), dtype=float)


def test_a_toy_explainer_is_scored_and_offered_by_the_cli(tiny, tiny_dirs, tmp_path, capsys):
    from inspector.cli import main

    corpus = tmp_path / "texts.txt"
    corpus.write_text("The cat sat on the mat.\nA dog barked.\n", encoding="utf-8")
    with scoped_explainers():
        register_explainer(Explainer("toy", lambda r: None, "tokens", "weights", "toy", _toy))
        assert "toy" in inspector.api.faithfulness_methods()
        result = inspector.faithfulness(tiny["gpt2"], corpus, progress=False)
        assert "toy" in result.methods
        toy = result.scores[result.scores["method"] == "toy"]
        assert (toy.groupby("text")["score"].diff().dropna() > 0).all()
        out = tmp_path / "faith.csv"
        argv = ["faithfulness", str(tiny_dirs["gpt2"]), str(corpus), "-o", str(out)]
        assert main([*argv, "--methods", "toy,random", "--report", str(tmp_path / "f.html")]) == 0
        printed = capsys.readouterr().out
        assert "| toy |" in printed and "| random |" in printed
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["text", "method", "metric", "value"]
    assert set(frame["method"]) == {"toy", "random"} and set(frame["text"]) == {0, 1}
    assert (tmp_path / "faith.scores.csv").exists() and (tmp_path / "f.html").exists()
    # outside the scope the toy entry is gone, and the CLI's choices with it
    assert "toy" not in inspector.api.faithfulness_methods()
    out.unlink()
    err = cli_fails([*argv, "--methods", "toy"], capsys, "--methods: toy")
    assert "occlusion" in err and "random" in err
    (tmp_path / "faith.csv.ckpt.npz").write_bytes(b"left by an interrupted run")
    cli_fails([*argv, "--methods", "random"], capsys, "add --resume to continue it")
    cli_fails([*argv, "--methods", "random", "--resume"], capsys, "not a readable faithfulness")


def test_resume_continues_an_interrupted_run(tiny, tmp_path):
    corpus = tmp_path / "texts.txt"
    lines = ["The cat sat on the mat.", "A dog barked.", "", "It was tired.", "Stop here now."]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checkpoint = tmp_path / "faith.ckpt.npz"
    calls = {"n": 0}

    def stops_once(request: ExplainRequest) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:  # the third text: Ctrl-C
            raise KeyboardInterrupt
        return np.ones(len(request.tokens))

    with scoped_explainers():
        register_explainer(Explainer("stops", lambda r: None, "tokens", "weights", "s", stops_once))
        methods = ["stops", "rollout", "random"]
        with pytest.raises(KeyboardInterrupt):
            inspector.faithfulness(tiny["gpt2"], corpus, methods, checkpoint=checkpoint)
        assert checkpoint.exists()
        resumed = inspector.faithfulness(
            tiny["gpt2"], corpus, methods, checkpoint=checkpoint, resume=True
        )
        whole = inspector.faithfulness(tiny["gpt2"], corpus, methods)
        with pytest.raises(inspector.InputError, match="other settings"):
            inspector.faithfulness(
                tiny["gpt2"], corpus, ["random"], checkpoint=checkpoint, resume=True
            )
    pd.testing.assert_frame_equal(resumed.frame, whole.frame)
    pd.testing.assert_frame_equal(resumed.scores, whole.scores)
    assert resumed.metadata["texts"] == whole.metadata["texts"] == [t for t in lines if t]
    assert sorted(set(resumed.frame["text"])) == [0, 1, 3, 4]


def test_the_explain_report_draws_the_most_faithful_map_first(tiny):
    from inspector.render.sections.faithfulness import map_order

    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    result = inspection_faithfulness(ins, ["attention", "norms", "rollout", "random"])
    order = map_order(result)
    html = ins.explain.report(faithfulness=result).html
    assert html.index('id="which-map-to-trust"') < html.index('id="what-mattered"')
    starts = {"attention": "raw attention", "norms": "norm-based", "rollout": "attention rollout"}
    panels = [p["title"] for p in figure_specs(html)["what-mattered-maps"]["panels"]]
    assert [next(n for n, s in starts.items() if t.startswith(s)) for t in panels] == order
    label = result.metadata["labels"][order[0]]
    assert f"This page shows {label} first" in html
    assert "drawn at layer 1; the scoreboard ranks their tokens at the last layer" in html
    plain = ins.explain.report().html  # without a result: the usual order, no section
    assert 'id="which-map-to-trust"' not in plain


def test_the_memory_pre_flight_refuses_before_running(tiny):
    ins = tiny["gpt2"].inspect(TEXT)
    with pytest.raises(inspector.ResourceError, match="nothing was run"):
        ins.explain.faithfulness(["random"], max_memory="10KB")
    with pytest.raises(inspector.InputError, match="max_rows"):
        ins.explain.faithfulness(["random"], max_rows=0)
    with pytest.raises(inspector.InputError, match="not an explainer with token scores"):
        ins.explain.faithfulness(["ablation"])


def test_a_text_too_long_for_the_model_is_skipped_and_counted(tiny):
    long = " ".join(["the cat sat on the mat"] * 20)  # past the tiny GPT-2's 64 positions
    result = inspector.faithfulness(tiny["gpt2"], [TEXT, long, TEXT], ["random"])
    assert result.metadata["n_too_long"] == 1
    assert sorted(set(result.frame["text"])) == [0, 2]
    cut = inspector.faithfulness(tiny["gpt2"], [long], ["random"], max_length=20)
    assert cut.metadata.get("n_too_long", 0) == 0 and cut.n_texts == 1


def test_deleting_ids_is_not_a_decode_round_trip():
    """Why the scoreboard deletes token ids: ferret decodes the ids left after a deletion and
    tokenizes the text again, and the model then sees other tokens (a WordPiece vocabulary
    written out here, so the example does not depend on a trained one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"[UNK]": 0, "un": 1, "##believ": 2, "##able": 3, "results": 4}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    ids = tok.encode("unbelievable results").ids
    assert ids == [1, 2, 3, 4]
    kept = ids[1:]  # delete "un"
    text = tok.decode(kept)
    assert text == "##believable results"
    assert tok.encode(text).ids == [0, 0, 4]  # unknown tokens, not the three kept


def test_the_trace_methods_are_scored_on_a_decoder_and_skipped_on_an_encoder(tiny, tiny_classifier):
    decoder = (
        tiny["gpt2"]
        .inspect(TEXT)
        .explain.faithfulness(["logit_attribution", "information_flow", "random"])
    )
    assert set(decoder.methods) == {"logit_attribution", "information_flow", "random"}
    assert decoder.metadata["skipped"] == []
    encoder = tiny_classifier.inspect(TEXT).explain.faithfulness(["logit_attribution", "random"])
    assert encoder.methods == ["random"]
    (skip,) = encoder.metadata["skipped"]
    assert skip["method"] == "logit_attribution" and "language-model head" in skip["reason"]
