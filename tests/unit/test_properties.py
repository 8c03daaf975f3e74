"""Property-based tests (hypothesis): random text and random attention never break the pipeline.

capture → frame → metrics → report must not crash; rows sum to 1; the report parses."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.analysis.metrics import head_metrics
from inspector.capture.types import AttentionStack, Capture
from inspector.frames import capture_frame, word_level
from inspector.render.report import build_report

from factories import make_tokens, parses

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def random_stacks(draw: st.DrawFn) -> AttentionStack:
    n_l = draw(st.integers(1, 3))
    n_h = draw(st.integers(1, 3))
    n = draw(st.integers(1, 9))
    causal = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    sharp = draw(st.sampled_from([0.1, 1.0, 30.0]))  # near-uniform to near-one-hot rows
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_l, n_h, n, n)) * sharp
    if causal:
        logits = np.where(np.triu(np.ones((n, n), bool), 1), -np.inf, logits)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = (w / w.sum(-1, keepdims=True)).astype(np.float32)
    strings = draw(st.lists(st.text(min_size=1, max_size=12), min_size=n, max_size=n))
    toks = make_tokens(strings)
    return AttentionStack(w, toks, toks, "self", causal)


@SETTINGS
@given(random_stacks())
def test_random_attention_through_frames_metrics_and_report(stack):
    cap = Capture({"self": stack}, {"model_name": "random", "model_type": "random"})
    frame = capture_frame(cap)
    sums = frame.groupby(["layer", "head", "query_pos"], observed=True)["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    words = word_level(stack)
    np.testing.assert_allclose(words.weights.sum(-1), 1.0, atol=1e-5)
    metrics = head_metrics(stack)
    assert len(metrics) == stack.weights.shape[0] * stack.weights.shape[1]
    for col in ("entropy", "max_weight", "to_first", "to_special"):
        values = metrics[col].to_numpy(dtype=float)
        assert np.isfinite(values).all()
    assert (metrics["max_weight"] <= 1 + 1e-6).all()
    report = build_report(cap)
    assert parses(report.html) > 10
