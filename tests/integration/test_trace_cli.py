"""``inspector trace`` and the generation report's "why each generated token" section, on tiny
models saved to folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import inspector
from inspector.cli import main

from factories import FAMILY_TEXT, build_family, cli_fails, parse


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, tok = build_family("gpt2")
    folder = tmp_path_factory.mktemp("trace-gpt2")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_trace_writes_the_page_and_prints_the_answer(
    gpt2_dir: Path, tmp_path: Path, capsys: Any
) -> None:
    out = tmp_path / "trace.html"
    rc = main(["trace", str(gpt2_dir), FAMILY_TEXT, "--threshold", "0.01", "-o", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert out.exists()
    lines = printed.strip().splitlines()
    assert "(logit" in lines[0] and "write it" in lines[0]
    assert lines[1] == "heads that write it (logit attribution):"
    assert lines[-1].startswith("route:") and str(out) in lines[-1]
    page = parse(out.read_text("utf-8"))
    answer = [t for t in page.text if "(logit" in t]
    assert answer and answer[0].strip() == lines[0]


def test_trace_against_a_token_and_its_errors(gpt2_dir: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "t.html"
    assert main(["trace", str(gpt2_dir), FAMILY_TEXT, "--token", "5", "--against", "7",
                 "-o", str(out)]) == 0  # fmt: skip
    assert "logit difference" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["trace", str(gpt2_dir), FAMILY_TEXT, "--threshold", "2", "-o", str(out)])
    assert exc.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err
    cli_fails(["trace", str(gpt2_dir), FAMILY_TEXT, "--token", "not one token at all", "-o",
               str(tmp_path / "x.html")], capsys, "not one token")  # fmt: skip
    assert not (tmp_path / "x.html").exists()
    cli_fails(["trace", str(gpt2_dir), FAMILY_TEXT, "-o", str(tmp_path / "x.csv")], capsys,
              ".html")  # fmt: skip


def test_generation_report_explains_each_generated_token(tmp_path: Path) -> None:
    m = inspector.load(build_family("llama"))
    g = m.generate(FAMILY_TEXT, max_new_tokens=3)
    report = g.report(tmp_path / "gen.html")
    ids = [s.id for s in report.sections]
    assert ids.index("generation-why") == ids.index("generation") + 1
    html = report.section("generation-why").render()
    rows = [t for t, _a in parse(str(html)).tags if t == "tr"]
    assert len(rows) == 1 + 3
    assert "generation-why" not in [s.id for s in g.report(why=False).sections]
    plain = m.inspect(FAMILY_TEXT)
    assert "generation-why" not in [s.id for s in plain.report().sections]
    with pytest.raises(inspector.UnsupportedModelError, match="why=True"):
        plain.report(why=True)


def test_trace_preflight_refuses_before_the_model_runs(
    gpt2_dir: Path, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trace's forward pass keeps every layer's queries, keys, block inputs and values: it is
    estimated and checked against the budget first (a ResourceError, nothing run, no page)."""
    from inspector.capture import trace as _trace
    from inspector.errors import ResourceError

    m = inspector.load(gpt2_dir)
    ins = m.inspect(FAMILY_TEXT, layers=[0], heads=[0])
    runs = []
    real = _trace.forward
    monkeypatch.setattr(_trace, "forward", lambda *a, **k: runs.append(1) or real(*a, **k))
    for name in ("information_flow", "logit_attribution", "logit_lens"):
        with pytest.raises(
            ResourceError, match=r"a trace of .* tokens needs about .*nothing was run"
        ):
            ins.explain(name, max_memory="64KB")
    assert runs == []
    est = _trace.trace_estimate(m.bundle, {"self": (1000, 1000)}, "blockwise")
    small = _trace.trace_estimate(m.bundle, {"self": (100, 100)}, "blockwise")
    eager = _trace.trace_estimate(m.bundle, {"self": (1000, 1000)}, "eager")
    assert (
        est.total > small.total
        and eager.parts["kept attention"] > est.parts["kept queries and keys"]
    )
    assert ins.explain.information_flow(max_memory="8GB").edges is not None
    assert runs  # within the budget it runs
    out = tmp_path / "t.html"
    cli_fails(["trace", str(gpt2_dir), FAMILY_TEXT, "--max-memory", "64KB", "-o", str(out)],
              capsys, "nothing was run")  # fmt: skip
    assert not out.exists()
