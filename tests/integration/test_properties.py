"""Property-based tests (hypothesis): random text and random attention never break the pipeline.

capture → frame → metrics → report must not crash; rows sum to 1; the report parses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.errors import InputError
from inspector.render.report import build_report

from factories import parses

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


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
    assert parses(build_report(ins.capture).html) > 10
