"""Progress bars: on stderr only when a person watches (a terminal) or asks, never otherwise."""

from __future__ import annotations

import io
import itertools
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


class _Clock:
    """A fake clock: each reading advances it by ``step`` seconds."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _lines_run(monkeypatch, step: float, items: int) -> list[str]:
    import inspector._progress as progress

    err = io.StringIO()  # not a terminal: a log, CI, nohup
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "clock", _Clock(step))
    assert list(bar(range(items), desc="scan tiny", unit=" layers")) == list(range(items))
    return err.getvalue().splitlines()


def test_no_lines_for_quick_work_off_a_terminal(monkeypatch):
    # 1 s an item, 8 items: done within LINE_AFTER seconds, so nothing is printed
    assert _lines_run(monkeypatch, 1.0, 8) == []


def test_lines_at_most_every_30_s_off_a_terminal(monkeypatch):
    from inspector._progress import LINE_AFTER, LINE_EVERY

    lines = _lines_run(monkeypatch, 4.0, 60)  # 4 s an item: 4 minutes in all
    progress_lines, last = lines[:-1], lines[-1]
    assert progress_lines[0].startswith("scan tiny: 3/60 layers (5%), 00:12 elapsed")
    assert "left" in progress_lines[0]
    seconds = [
        int(m) * 60 + int(s)
        for line in progress_lines
        for m, s in [line.split(", ")[1].split()[0].split(":")]
    ]
    assert seconds[0] >= LINE_AFTER
    assert all(b - a >= LINE_EVERY for a, b in itertools.pairwise(seconds)), seconds
    assert 6 <= len(progress_lines) <= 8  # about 240 s / 30 s
    assert last.startswith("scan tiny: 60 layers done in 04:")  # 4 s a reading, 61 readings


def test_no_lines_when_asked_for_none_or_on_a_terminal(monkeypatch):
    import inspector._progress as progress

    monkeypatch.setattr(progress, "clock", _Clock(20.0))
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    list(bar(range(5), desc="work", progress=False))
    assert err.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    list(bar(range(5), desc="work"))  # a tqdm bar, not lines
    assert "\r" in terminal.getvalue() and "elapsed" not in terminal.getvalue()


def test_lines_follow_updates_of_a_total(monkeypatch):
    import inspector._progress as progress

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(progress, "clock", _Clock(11.0))
    with bar(total=10, desc="ablating heads", unit=" heads") as b:
        b.update(4)
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("ablating heads: 4/10 heads (40%)"), lines
    assert lines[-1].startswith("ablating heads: 4 heads done in")
