"""Generation: per-step cached attention assembled into one matrix equals one forward pass."""

from __future__ import annotations

import pytest

from factories import assert_equals_forward


@pytest.mark.slow
def test_smollm2_generation_equals_one_forward(smollm2):
    ins = smollm2.generate(
        messages=[{"role": "user", "content": "Capital of France?"}], max_new_tokens=3
    )
    header = ins.tokens[
        ins.generation.prompt_length - 4 : ins.generation.prompt_length
    ]  # assistant turn header
    assert header[0] == "<|im_start|>" and header[-1] == "Ċ"
    assert ins.metadata["n_generated"] == 3
    assert ins.attention.shape[:2] == (30, 9)
    assert_equals_forward(smollm2, ins, atol=1e-4)
    steps = ins.generation.steps(top_k=1)
    assert len(steps) == 3


@pytest.mark.slow
def test_smollm2_answers_a_plain_prompt_through_its_chat_template(smollm2, tmp_path, capsys):
    from inspector.cli import main

    ins = smollm2.generate("What is the capital of France?", max_new_tokens=12)
    assert ins.metadata["chat"] is True and "Paris" in ins.metadata["generated_text"]
    raw = smollm2.generate("What is the capital of France?", chat=False, max_new_tokens=3)
    assert (
        raw.metadata["chat"] is False
        and raw.generation.prompt_length < ins.generation.prompt_length
    )
    steps = ins.generation.steps(top_k=1, readable=True)
    assert "␣Paris" in set(steps["token"]) and "ĠParis" in ins.tokens
    out = tmp_path / "g.parquet"
    assert main(["generate", "smollm2", "What is the capital of France?", "-o", str(out)]) == 0
    line = capsys.readouterr().out
    assert "(chat template)" in line and "Paris" in line and "Ġ" not in line


@pytest.mark.slow
def test_smollm2_loads_from_the_weights_cache_with_the_gguf_numbers(smollm2):
    import numpy as np

    import inspector
    from inspector.models.loading import LoadOptions, _load_from_source

    again = inspector.load("smollm2")  # the fixture's load filled the cache
    assert "weights_cache" in again.bundle.extra and again.bundle.source == smollm2.bundle.source
    gguf = again.bundle.extra["gguf_file"]
    direct = inspector.load(
        _load_from_source("smollm2", again.bundle.source, None, None, LoadOptions(gguf_file=gguf))
    )
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    a = again.generate(messages=chat, max_new_tokens=6)
    b = direct.generate(messages=chat, max_new_tokens=6)
    assert a.tokens == b.tokens
    np.testing.assert_array_equal(a.attention, b.attention)
