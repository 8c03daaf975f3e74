"""Generation: per-step cached attention assembled into one matrix equals one forward pass."""

from __future__ import annotations

import pytest

from factories import assert_equals_forward


@pytest.mark.slow
def test_smollm2_generation_equals_one_forward(smollm2):
    ins = smollm2.generate(
        messages=[{"role": "user", "content": "Capital of France?"}], max_new_tokens=3
    )
    header = ins.tokens[ins.prompt_length - 4 : ins.prompt_length]  # assistant turn header
    assert header[0] == "<|im_start|>" and header[-1] == "Ċ"
    assert ins.metadata["n_generated"] == 3
    assert ins.attention.shape[:2] == (30, 9)
    assert_equals_forward(smollm2, ins, atol=1e-4)
    steps = ins.generation_steps(top_k=1)
    assert len(steps) == 3
