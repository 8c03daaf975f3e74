"""Property-based tests (hypothesis): random text and random attention never break the pipeline.

capture → frame → metrics → report must not crash; rows sum to 1; the report parses.
"""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.capture import AttentionStack, Capture, Tokens
from inspector.errors import InputError
from inspector.frames import capture_frame, word_level
from inspector.metrics import head_metrics
from inspector.render.report import build_report

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class _Checker(HTMLParser):
    """Parses the whole page; counts elements so a truncated or broken page shows."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.count = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self.count += 1


def _parses(html: str) -> int:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert html.rstrip().endswith("</html>")
    return checker.count


def _tokens(strings: list[str]) -> Tokens:
    n = len(strings)
    special = np.zeros(n, bool)
    special[0] = True
    return Tokens(
        tuple(strings),
        np.arange(n),
        special,
        np.where(special, -1, np.arange(n) - 1).astype(np.int32),
        np.where(special, -1, 0).astype(np.int8),
        np.full((n, 2), -1, np.int32),
        (" ".join(strings),),
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
    toks = _tokens(strings)
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
    assert _parses(report.html) > 10


@SETTINGS
@given(text=st.text(min_size=0, max_size=80))
@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_random_unicode_text_through_a_model(tiny, family, text):
    m = tiny[family]
    try:
        ins = m.inspect(text, truncation=True)
    except InputError as exc:  # only empty / invisible text may be refused, and said so
        assert "empty" in str(exc) or "control characters" in str(exc)
        assert not text.strip() or all(not c.isprintable() or c.isspace() for c in text)
        return
    np.testing.assert_allclose(ins.attention.sum(-1), 1.0, atol=1e-5)
    if family == "gpt2":
        n = ins.attention.shape[-1]
        assert np.all(ins.attention[..., np.triu(np.ones((n, n), bool), 1)] == 0)
    frame = ins.frame(level="word")
    sums = frame.groupby(["layer", "head", "query_pos"], observed=True)["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    assert _parses(build_report(ins.capture).html) > 10
