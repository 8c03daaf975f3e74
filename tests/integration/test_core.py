"""Loading and capture on tiny models of every family and on the real embedded MiniLM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import (
    AttentionUnavailableError,
    InputError,
    ModelLoadError,
)
from inspector.frames import COLUMNS

TEXT = "The cat sat on the mat because it was tired."


def _inspect(m, text=TEXT, **kw):
    if m.bundle.architecture == "encoder-decoder":
        kw.setdefault("target", "A dog barked.")
    return m.inspect(text, **kw)


def _reference(m, ins):
    """The model's own output attentions for the same ids, computed independently."""
    model = m.model
    if ins.is_encoder_decoder:
        with torch.no_grad():
            out = model(
                input_ids=torch.tensor([ins.encoder.token_ids.tolist()]),
                decoder_input_ids=torch.tensor([ins.decoder.token_ids.tolist()]),
                output_attentions=True,
            )
        return {
            "encoder": out.encoder_attentions,
            "decoder": out.decoder_attentions,
            "cross": out.cross_attentions,
        }
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ins.token_ids.tolist()]), output_attentions=True)
    return {"self": out.attentions}


def test_every_family_loads_eager_and_eval(tiny_model):
    b = tiny_model.bundle
    assert b.attn_implementation == "eager"
    assert not b.model.training
    assert not any(p.requires_grad for p in b.model.parameters())
    assert (b.n_layers, b.n_heads) == (2, 2)


def test_architectures(tiny):
    assert tiny["bert"].bundle.architecture == "encoder"
    assert tiny["gpt2"].bundle.architecture == "decoder"
    assert tiny["t5"].bundle.architecture == "encoder-decoder"
    assert tiny["bart"].bundle.architecture == "encoder-decoder"


def test_weights_equal_model_output_attentions(tiny_model):
    ins = _inspect(tiny_model)
    ref = _reference(tiny_model, ins)
    for kind, layers in ref.items():
        got = ins.capture.stacks[kind].weights
        want = torch.stack([a[0] for a in layers]).numpy()
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        # and the frame carries exactly the same numbers in (layer, head, query, key) order
        frame = ins.frame() if not ins.is_encoder_decoder else getattr(ins, kind).frame()
        np.testing.assert_array_equal(frame["weight"].to_numpy(), want.reshape(-1))


def test_rows_sum_to_one(tiny_model):
    ins = _inspect(tiny_model)
    for stack in ins.capture.stacks.values():
        np.testing.assert_allclose(stack.weights.sum(-1), 1.0, atol=1e-5)


def test_decoder_upper_triangle_is_zero(tiny):
    ins = tiny["gpt2"].inspect(TEXT)
    n = len(ins.tokens)
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    assert ins.capture.stacks["self"].causal
    assert np.all(ins.attention[..., upper] == 0)
    dec = _inspect(tiny["bart"]).decoder.attention
    m = dec.shape[-1]
    assert np.all(dec[..., np.triu(np.ones((m, m), dtype=bool), k=1)] == 0)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_encoder_decoder_parts(tiny, family):
    ins = tiny[family].inspect(TEXT, target="A dog barked at the mailman.")
    enc, dec, cross = ins.encoder, ins.decoder, ins.cross
    assert enc.attention.shape == (2, 2, len(enc.tokens), len(enc.tokens))
    assert dec.attention.shape == (2, 2, len(dec.tokens), len(dec.tokens))
    assert cross.attention.shape == (2, 2, len(dec.tokens), len(enc.tokens))
    assert list(cross.stack.key.tokens) == enc.tokens
    frame = ins.frame()
    assert list(frame.columns) == ["kind", *COLUMNS]
    sizes = frame.groupby("kind", observed=True).size().to_dict()
    assert sizes == {
        "encoder": enc.attention.size,
        "decoder": dec.attention.size,
        "cross": cross.attention.size,
    }
    with pytest.raises(InputError, match="encoder"):
        _ = ins.attention


def test_decoder_defaults_to_start_token(tiny):
    ins = tiny["t5"].inspect(TEXT)
    assert ins.decoder.token_ids.tolist() == [tiny["t5"].model.config.decoder_start_token_id]
    assert ins.cross.attention.shape[2] == 1


def test_self_attention_model_has_no_parts(tiny):
    ins = tiny["bert"].inspect(TEXT)
    with pytest.raises(InputError, match="encoder-decoder"):
        _ = ins.encoder


def test_pair_sequence_ids_and_sentence_b(tiny):
    ins = tiny["bert"].inspect("The cat sat.", "It was tired.")
    info = ins.stack.query
    assert info.sentence_b_start is not None
    b = info.sentence_b_start
    assert ins.tokens[b - 1] == "[SEP]" and ins.tokens[b] == "it"
    assert set(info.sequence_ids[info.special].tolist()) == {-1}
    # words are numbered across the pair: the pair's first word follows the first text's last
    assert info.word_ids[b] == info.word_ids[b - 2] + 1


def test_metadata(tiny):
    meta = tiny["gpt2"].inspect(TEXT).metadata
    for key in ("model_name", "model_type", "n_layers", "n_heads", "attn_implementation", "dtype"):
        assert key in meta
    assert meta["attn_implementation"] == "eager"
    assert meta["versions"]["transformers"] != "unknown"
    assert meta["text"] == TEXT


def test_layers_and_heads_selection(tiny):
    full = tiny["bert"].inspect(TEXT)
    part = tiny["bert"].inspect(TEXT, layers=[-1], heads=[1])
    assert part.attention.shape == (1, 1, len(full.tokens), len(full.tokens))
    np.testing.assert_array_equal(part.attention[0, 0], full.attention[1, 1])
    assert part.stack.layers == (1,) and part.stack.heads == (1,)
    frame = part.frame()
    assert set(frame["layer"]) == {1} and set(frame["head"]) == {1}


def test_in_memory_pair_is_switched_to_eager(tiny_dirs):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_dirs["bert"], attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    model.train()
    m = inspector.load((model, tok))
    assert m.bundle.attn_implementation == "eager"
    assert not model.training
    assert m.inspect(TEXT).attention.shape[:2] == (2, 2)


def test_sdpa_returns_nothing_and_we_say_why(tiny_dirs):
    """Guard the premise: under sdpa transformers hands back no weights; capture names it."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from inspector.capture.run import capture
    from inspector.models.loading import ModelBundle

    model = AutoModelForMaskedLM.from_pretrained(tiny_dirs["bert"], attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    bundle = ModelBundle(model, tok, "sdpa-bert", "encoder", "bert", 2, 2, 2, 64, 1)
    with pytest.raises(AttentionUnavailableError, match=r"sdpa.*eager"):
        capture(bundle, TEXT)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text(tiny, text):
    with pytest.raises(InputError, match="empty"):
        tiny["bert"].inspect(text)


def test_wrong_type(tiny):
    with pytest.raises(InputError, match="string"):
        tiny["bert"].inspect(["a list"])  # type: ignore[arg-type]


def test_too_long_names_limit_and_truncation(tiny):
    long_text = " ".join(["cat"] * 200)
    with pytest.raises(InputError, match=r"at most 64.*truncation=True"):
        tiny["bert"].inspect(long_text)
    ins = tiny["bert"].inspect(long_text, truncation=True)
    assert len(ins.tokens) == 64
    assert ins.metadata["truncated"] is True
    assert ins.tokens[-1] == "[SEP]"


def test_layer_out_of_range(tiny):
    with pytest.raises(InputError, match=r"layer 5 is out of range.*2 layers"):
        tiny["bert"].inspect(TEXT, layers=[5])


def test_target_on_self_attention_model(tiny):
    with pytest.raises(InputError, match="encoder-decoder"):
        tiny["bert"].inspect(TEXT, target="x")


def test_weights_without_tokenizer(tiny_dirs, tmp_path):
    import shutil

    for f in tiny_dirs["bert"].iterdir():
        if f.name in ("config.json", "model.safetensors"):
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(ModelLoadError, match="tokenizer"):
        inspector.load(str(tmp_path))


def test_in_memory_model_needs_tokenizer(tiny):
    with pytest.raises(InputError, match="tokenizer"):
        inspector.load(tiny["bert"].model)


def test_capture_is_read_only(tiny):
    ins = tiny["bert"].inspect(TEXT)
    with pytest.raises(ValueError):
        ins.attention[0, 0, 0, 0] = 1.0


def test_readable_tokens_come_from_the_tokenizer(tiny):
    ins = tiny["gpt2"].inspect("The cat sat\non the mat.")
    raw, readable = ins.stack.query.tokens, ins.stack.query.readable
    assert len(raw) == len(readable)
    assert any(t.startswith("Ġ") for t in raw) and not any("Ġ" in t for t in readable)
    assert any(t.startswith("␣") for t in readable) and "⏎" in "".join(readable)
