"""The README checker itself: shown outputs are found, compared by tokens, numbers within 1e-3;
console sessions and bash lines are parsed; marked blocks are not run; raising is an output."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from readme_check import (
    blocks,
    cli_examples,
    matches,
    not_run,
    printed_outputs,
    run_readme,
    shown_outputs,
)


def test_shown_outputs_are_the_comments_after_a_statement() -> None:
    source = 'x = 1\nx + 1\n# 2\nprint("a")\n# a\ny = 3  # a remark\n\n# about z\nz = 4\n'
    shown = shown_outputs(source, 0)
    assert [(s.line, s.expected) for s in shown] == [(2, "2"), (4, "a")]


def test_matching_tolerates_float_noise_and_ellipses_only() -> None:
    assert matches("(6, 12, 14, 14) 0.156262", "(6, 12, 14, 14) 0.15626")
    assert not matches("0.156262", "0.1580")
    assert matches("layer head ... 0.5", "layer head a b c 0.5")
    assert not matches("layer head", "layer head extra")
    assert not matches("[CLS] the cat", "[CLS] the dog")


def test_bash_examples_run_inspector_lines_and_console_sessions_every_command() -> None:
    readme = (
        "```bash\ninspector heads minilm 'a b'\n# minilm: 1 text(s)\nmake x\n```\n\n"
        "```console\n$ echo hi > f.txt\n$ inspector inspect minilm \\\n  'a' -o x.csv\n"
        "minilm: 3 tokens\n```\n"
    )
    assert cli_examples(readme) == [
        ("inspector heads minilm 'a b'", "minilm: 1 text(s)"),
        ("echo hi > f.txt", ""),
        ("inspector inspect minilm    'a' -o x.csv", "minilm: 3 tokens"),
    ]


def test_a_plain_block_after_a_python_block_is_what_it_prints() -> None:
    readme = "```python\nprint(1)\n```\n\n```\n1\n```\n\n```python\nx = 2\n```\n"
    assert blocks(readme) == ["print(1)\n", "x = 2\n"]
    assert printed_outputs(readme) == {0: "1"}


def test_a_marked_block_is_not_run_and_says_why() -> None:
    readme = (
        "<!-- readme-check: not run (needs the hub) -->\n```python\nimport nothing_here\n```\n"
        "```python\nx = 2\n```\n"
    )
    assert blocks(readme) == ["x = 2\n"]
    assert not_run(readme) == ["needs the hub"]


def test_the_whole_readme_runs_in_order_and_mismatches_are_reported(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "```python\nfrom pathlib import Path\nPath('a.txt').write_text('hi')\n# 2\n"
        "int('x')\n# ValueError: invalid literal for int() with base 10: 'x'\n```\n\n"
        "```console\n$ cat a.txt\nhi\n$ echo two\nthree\n```\n\n"
        "```python\nprint(open('a.txt').read() * 2)\n```\n\n```\nhihi\n```\n",
        encoding="utf-8",
    )
    work = tmp_path / "work"
    work.mkdir()
    problems = run_readme(readme, work, dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert len(problems) == 1 and "`$ echo two` shows\nthree\nbut prints\ntwo" in problems[0]
    assert not (tmp_path / "a.txt").exists() and (work / "a.txt").read_text() == "hi"


def test_progress_lines_are_not_compared_other_lines_are() -> None:
    from readme_check import PROGRESS_LINE

    out = (
        "atlas minilm: 96/300 sentences (32%), 00:13 elapsed, about 00:28 left\n"
        "atlas minilm: 300 sentences done in 00:44\n"
        "minilm: 300 texts (6,972 tokens, 0 skipped), 6.7 texts/s -> atlas.parquet\n"
        "scan smollm2: 1:02:03 elapsed is not a progress line\n"
    )
    kept = [line for line in PROGRESS_LINE.sub("", out).splitlines() if line]
    assert kept == [
        "minilm: 300 texts (6,972 tokens, 0 skipped), 6.7 texts/s -> atlas.parquet",
        "scan smollm2: 1:02:03 elapsed is not a progress line",
    ]


def test_the_progress_pattern_matches_what_progress_prints(monkeypatch) -> None:
    import io

    from readme_check import PROGRESS_LINE

    import inspector._progress as progress

    ticks = iter(range(0, 10_000, 11))
    monkeypatch.setattr(progress, "clock", lambda: float(next(ticks)))
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    list(progress.bar(range(7), desc="atlas minilm", unit=" sentences"))
    printed = err.getvalue()
    assert printed.count("\n") >= 3 and PROGRESS_LINE.sub("", printed).strip() == ""
