"""Hooked capture of kept layers/heads, float16 storage, GQA metadata, GGUF loading, SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.slow
def test_smollm2_gqa_layers_and_memory(smollm2):
    b = smollm2.bundle
    assert (b.architecture, b.n_layers, b.n_heads, b.n_kv_heads) == ("decoder", 30, 9, 3)
    assert b.attn_implementation == "eager"
    text = "The quick brown fox jumps over the lazy dog."
    full = smollm2.inspect(text)
    assert full.attention.shape[:2] == (30, 9)
    assert full.heads.kv_groups == {0: (0, 1, 2), 1: (3, 4, 5), 2: (6, 7, 8)}
    part = smollm2.inspect(text, layers=[0, 15, 29])
    np.testing.assert_array_equal(part.attention, full.attention[[0, 15, 29]])
    assert part.attention.nbytes * 10 == full.attention.nbytes
    # One map per query head: heads sharing a key/value head still differ (their queries do).
    assert not np.allclose(full.attention[5, 0], full.attention[5, 1])
    with torch.inference_mode():
        ref = smollm2.model(
            input_ids=torch.tensor(full.token_ids)[None], output_attentions=True
        ).attentions
    np.testing.assert_allclose(full.attention[29], ref[29][0].numpy(), atol=1e-6)


@pytest.mark.slow
def test_smollm2_chat_template(smollm2):
    ins = smollm2.inspect(
        messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=True, layers=[0]
    )
    assert ins.tokens[0] == "<|im_start|>"
    assert ins.tokens.count("<|im_start|>") == 3  # system, user, assistant header
    assert ins.stack.query.special[0]
