"""Long inputs are captured block by block: the model runs ``sdpa`` and the kept layers' weights
are rebuilt from its queries and keys (:func:`inspector.capture.blockwise.records_by_blocks`),
instead of eager attention computing every layer's ``heads x T x T`` (7 GB at 8k tokens on
SmolLM2, for one kept layer). The weights must equal the model's own eager attentions."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.capture import blockwise, run
from inspector.capture.options import Selection

from factories import assert_equals_forward, build_tiny_llama

TEXT = "The cat sat on the mat because it was tired. A dog barked at the mailman, who ran."


@pytest.fixture(scope="module")
def llama(tiny):
    return inspector.load(build_tiny_llama(tiny["gpt2"].tokenizer, positions=2048))


class _Spy:
    """Counts the blocks the blockwise path hands over (0: eager ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blocks = 0
        real = blockwise.BlockwiseAttention

        def make(*args, **kwargs):
            on_block = args[3]

            def counted(*a):
                self.blocks += 1
                return on_block(*a)

            return real(*args[:3], counted, *args[4:], **kwargs)

        monkeypatch.setattr(run, "BlockwiseAttention", make)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("heads", [None, [1, 3]])
def test_block_capture_equals_the_models_eager_attentions(tiny, llama, kind, heads, monkeypatch):
    m = llama if kind == "llama" else tiny[kind]
    monkeypatch.setattr(blockwise, "BLOCKWISE_FROM", 8)  # every input here is "long"
    spy = _Spy(monkeypatch)
    heads = None if heads is None else [h for h in heads if h < m.bundle.n_heads] or [1]
    ins = m.inspect(TEXT, layers=[1], heads=heads)
    assert spy.blocks > 0
    assert_equals_forward(m, ins)
    rows = ins.capture.stacks["self"].weights.sum(-1)
    np.testing.assert_allclose(rows, 1.0, atol=1e-5)


def test_short_inputs_stay_eager(tiny, monkeypatch):
    spy = _Spy(monkeypatch)
    ins = tiny["gpt2"].inspect(TEXT)
    assert spy.blocks == 0
    assert_equals_forward(tiny["gpt2"], ins)


def test_a_long_input_runs_blockwise_and_estimates_less(llama, monkeypatch):
    """1,100 tokens of a real input: the blockwise path runs by itself, equals eager attention,
    and the pre-flight counts block scratch instead of eager's three T x T tensors per head."""
    spy = _Spy(monkeypatch)
    ins = llama.inspect(TEXT * 80, truncation=True, max_length=1100, layers=[0], heads=[0])
    assert len(ins.tokens) == 1100
    assert spy.blocks > 0
    assert ins.capture.stacks["self"].weights.shape == (1, 1, len(ins.tokens), len(ins.tokens))
    assert_equals_forward(llama, ins)
    est = run.capture_estimate(llama.bundle, 8192, select=Selection.of([0], [0]))
    monkeypatch.setattr(blockwise, "BLOCKWISE_FROM", 10**9)
    eager = run.capture_estimate(llama.bundle, 8192, select=Selection.of([0], [0]))
    assert est.parts["forward pass"] < eager.parts["forward pass"] / 20
