"""Progress bars: on stderr only when a person watches (a terminal) or asks, never otherwise."""

from __future__ import annotations

import io
import sys

import pytest

from inspector._progress import bar, show


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_automatic_progress_follows_the_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert show(None) is False and show(True) is True
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert show(None) is True and show(False) is False


@pytest.mark.parametrize("progress, drawn", [(None, True), (True, True), (False, False)])
def test_bar_draws_on_stderr_only_when_shown(monkeypatch, progress, drawn):
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    total = sum(bar(range(5), desc="work", unit=" items", progress=progress))
    assert total == 10  # the items pass through unchanged
    assert ("work" in err.getvalue()) is drawn


def test_no_bar_when_stderr_is_a_pipe(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    list(bar(range(3), desc="work"))
    assert err.getvalue() == ""


def test_attention_flow_reports_progress(monkeypatch):
    from inspector.explain.flow import attention_flow

    from factories import random_weights

    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    weights = random_weights(2, 2, 5)
    quiet = attention_flow(weights, progress=False)
    assert err.getvalue() == ""
    shown = attention_flow(weights, progress=True)
    assert "attention flow" in err.getvalue()
    assert (quiet == shown).all()
