"""Loading and capture on tiny models of every family and on the real embedded MiniLM."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.mark.slow
def test_minilm_shape_and_tokens(minilm):
    ins = minilm.inspect("The unbelievable cat sat on the mat.")
    assert ins.attention.shape[:2] == (6, 12)
    want = minilm.tokenizer.convert_ids_to_tokens(
        minilm.tokenizer("The unbelievable cat sat on the mat.")["input_ids"]
    )
    assert ins.tokens == want
    assert ins.tokens[0] == "[CLS]" and ins.tokens[-1] == "[SEP]"
    assert ins.stack.query.special.tolist() == [t in ("[CLS]", "[SEP]") for t in want]


@pytest.mark.slow
def test_minilm_frame_at_128_tokens(minilm):
    text = " ".join(["word"] * 126)
    ins = minilm.inspect(text)
    assert len(ins.tokens) == 128
    frame = ins.frame()
    assert len(frame) == 6 * 12 * 128 * 128
    sums = frame.groupby(["layer", "head", "query_pos"], observed=True)["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-4)
