"""The README is the first test: its python blocks run as written and print what they show.

Every ```python block runs top to bottom in one fresh interpreter in an empty folder
(``tests/readme_check.py``); each shown output must be what the code prints (numbers within a
relative 1e-3; ``...`` marks an abridged part). The CLI examples that show a summary line run too.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from readme_check import blocks, cli_examples, run_cli_examples, run_readme

README = Path(__file__).resolve().parents[2] / "README.md"


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(README.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    bin_dir = str(Path(os.sys.executable).parent)  # the venv's `inspector` console script
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def test_readme_python_blocks_run_as_written_and_print_what_they_show(tmp_path: Path) -> None:
    assert len(blocks(README.read_text(encoding="utf-8"))) >= 5
    problems = run_readme(README, tmp_path, _env(tmp_path))
    assert problems == [], "\n\n".join(problems)


def test_readme_cli_examples_print_their_summary_lines(tmp_path: Path) -> None:
    examples = cli_examples(README.read_text(encoding="utf-8"))
    if not examples:
        pytest.fail("the README shows no CLI example with its output")
    problems = run_cli_examples(README, tmp_path, _env(tmp_path))
    assert problems == [], "\n\n".join(problems)
