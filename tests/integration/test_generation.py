"""Generation: per-step cached attention assembled into one matrix equals one forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector.analysis.steps import StepOptions, generation_steps
from inspector.capture.hooks import attention_sites
from inspector.errors import InputError, UnsupportedModelError

from factories import assert_equals_forward

PROMPT = "The cat sat on the mat because"


def test_gpt2_generation_equals_one_forward(tiny):
    m = tiny["gpt2"]
    ins = m.generate(PROMPT, max_new_tokens=6)
    n_prompt = len(m.inspect(PROMPT).tokens)
    assert ins.generation.prompt_length == n_prompt
    assert len(ins.tokens) == n_prompt + 6
    assert ins.attention.shape == (2, 2, n_prompt + 6, n_prompt + 6)
    assert ins.generation.generated_mask.tolist() == [False] * n_prompt + [True] * 6
    meta = ins.metadata
    assert meta["prompt_length"] == n_prompt and meta["n_generated"] == 6
    assert meta["stopped"] == "length" and meta["generated"] is True
    assert ins.attention[:, :, :n_prompt, :n_prompt].shape == (2, 2, n_prompt, n_prompt)
    assert_equals_forward(m, ins)
    # The prompt block is the ordinary capture of the prompt.
    np.testing.assert_allclose(
        ins.attention[:, :, :n_prompt, :n_prompt], m.inspect(PROMPT).attention, atol=1e-6
    )


def test_sampling_options_pass_through(tiny):
    m = tiny["gpt2"]
    torch.manual_seed(0)
    a = m.generate(PROMPT, max_new_tokens=5, do_sample=True, temperature=1.5, top_k=50)
    torch.manual_seed(0)
    b = m.generate(PROMPT, max_new_tokens=5, do_sample=True, temperature=1.5, top_k=50)
    assert a.tokens == b.tokens
    assert a.metadata["generation_kwargs"] == {"do_sample": True, "temperature": 1.5, "top_k": 50}
    assert_equals_forward(m, a)


def test_kept_layers_heads_and_float16(tiny):
    m = tiny["gpt2"]
    full = m.generate(PROMPT, max_new_tokens=4)
    part = m.generate(PROMPT, max_new_tokens=4, layers=[1], heads=[0])
    np.testing.assert_array_equal(part.attention, full.attention[1:2, 0:1])
    half = m.generate(PROMPT, max_new_tokens=4, dtype="float16")
    assert half.attention.dtype == np.float16
    np.testing.assert_allclose(half.attention.astype(np.float32), full.attention, atol=1e-3)


@pytest.mark.parametrize("kind", ["t5", "bart"])
def test_encoder_decoder_generation_equals_one_forward(tiny, kind):
    m = tiny[kind]
    ins = m.generate(PROMPT, max_new_tokens=5, generation_options={"min_new_tokens": 5})
    dec = ins.decoder
    assert len(dec.tokens) == 6 and ins.generation.prompt_length == 1
    assert dec.generation.generated_mask.tolist() == [False] + [True] * 5
    assert ins.cross.attention.shape == (2, 2, 6, len(ins.encoder.tokens))
    assert ins.encoder.tokens == m.inspect(PROMPT).encoder.tokens
    assert_equals_forward(m, ins)
    steps = ins.generation.steps(top_k=2)
    assert set(steps["key_generated"]) == {False}  # cross attention reads the input
    assert steps["key_pos"].max() < len(ins.encoder.tokens)
    assert len(ins.frame()) > 0 and set(ins.frame()["kind"]) == {"encoder", "decoder", "cross"}


def test_generation_steps(tiny):
    ins = tiny["gpt2"].generate(PROMPT, max_new_tokens=4)
    steps = generation_steps(ins.capture, StepOptions(top_k=3))
    assert list(steps.columns) == [
        "step",
        "position",
        "token",
        "query_pos",
        "rank",
        "key_pos",
        "key_token",
        "key_generated",
        "weight",
    ]
    assert len(steps) == 4 * 3
    assert (steps["query_pos"] == steps["position"] - 1).all()
    assert (steps["key_pos"] <= steps["query_pos"]).all()  # causal
    for _, g in steps.groupby("step"):
        assert g["weight"].is_monotonic_decreasing
    first = steps[steps.step == 0].iloc[0]
    mean = ins.attention[:, :, first.query_pos].astype(np.float64).mean(axis=(0, 1))
    assert first.weight == pytest.approx(mean.max())
    assert len(tiny["gpt2"].inspect(PROMPT).generation.steps()) == 0


def test_hooks_removed_after_generation(tiny):
    m = tiny["gpt2"]
    before = sum(len(mod._forward_hooks) for mod in m.model.modules())
    m.generate(PROMPT, max_new_tokens=2)

    class Boom:
        def __call__(self, input_ids, scores):
            raise RuntimeError("stopped on purpose")

    from transformers import LogitsProcessorList

    with pytest.raises(RuntimeError, match="on purpose"):
        m.generate(
            PROMPT,
            max_new_tokens=2,
            generation_options={"logits_processor": LogitsProcessorList([Boom()])},
        )
    assert sum(len(mod._forward_hooks) for mod in m.model.modules()) == before
    assert len(attention_sites(m.model)["self"]) == 2


def test_generation_refuses_what_it_cannot_assemble(tiny):
    with pytest.raises(InputError, match="num_beams"):
        tiny["gpt2"].generate(PROMPT, max_new_tokens=2, generation_options={"num_beams": 2})
    with pytest.raises(InputError, match="output_attentions"):
        tiny["gpt2"].generate(
            PROMPT, max_new_tokens=2, generation_options={"output_attentions": True}
        )
    with pytest.raises(InputError, match="max_new_tokens"):
        tiny["gpt2"].generate(PROMPT, max_new_tokens=0)
    with pytest.raises(InputError, match="limit"):
        tiny["gpt2"].generate(PROMPT, max_new_tokens=100)
    with pytest.raises(UnsupportedModelError, match="encoder"):
        tiny["bert"].generate(PROMPT, max_new_tokens=2)


def test_report_has_a_generation_section_only_after_generate(tiny):
    from inspector.render.sections.generation import generation_context

    m = tiny["gpt2"]
    ins = m.generate(PROMPT, max_new_tokens=3)
    ctx = generation_context(ins.capture, top_k=2)
    assert ctx is not None and ctx["n_generated"] == 3 and len(ctx["steps"]) == 3
    assert [t["generated"] for t in ctx["tokens"]].count(True) == 3
    html = ins.report().html
    assert 'id="generation"' in html and html.count("ins-gen-steps") >= 1
    assert generation_context(m.inspect(PROMPT).capture) is None
    assert 'id="generation"' not in m.inspect(PROMPT).report().html
    steps = ins.generation.steps(top_k=2, skip_special=True)
    assert not steps["key_token"].isin(["<|endoftext|>"]).any()


def test_generation_steps_name_an_uncaptured_layer(tiny):
    ins = tiny["gpt2"].generate(PROMPT, max_new_tokens=2, layers=[0])
    with pytest.raises(InputError, match=r"layer 1 was not captured; captured layers: \[0\]"):
        generation_steps(ins.capture, StepOptions(layers=[1]))


def test_generation_steps_options_are_checked_once(tiny):
    ins = tiny["gpt2"].generate(PROMPT, max_new_tokens=2)
    for bad in (0, 1.5):
        with pytest.raises(InputError, match="top_k must be a positive integer"):
            ins.generation.steps(top_k=bad)
        with pytest.raises(InputError, match="top_k must be a positive integer"):
            StepOptions(top_k=bad)  # type: ignore[arg-type]
    assert generation_steps(ins.capture).equals(ins.generation.steps())


def test_generation_uses_no_deprecated_transformers_argument(tiny):
    """transformers logs (not warns) 'past_key_values ... deprecated' once per process: clear its
    once-cache, listen at warning level, and generate with a decoder and an encoder-decoder."""
    import logging

    from transformers.utils import logging as hf_logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    root = hf_logging.get_logger()
    level = hf_logging.get_verbosity()
    logging.Logger.warning_once.cache_clear()  # type: ignore[attr-defined]
    hf_logging.set_verbosity_warning()
    root.addHandler(handler)
    try:
        for kind in ("gpt2", "bart"):
            tiny[kind].generate(PROMPT, max_new_tokens=3)
    finally:
        root.removeHandler(handler)
        hf_logging.set_verbosity(level)
    assert [r.getMessage() for r in records if "deprecat" in r.getMessage()] == []
