"""The README is the first test: it runs top to bottom as written and prints what it shows.

Every ```python block, every ```console session and every ``inspector`` line of a ```bash block
runs in document order, in one fresh interpreter whose folder starts empty
(``tests/readme_check.py``); each shown output must be what the code prints (numbers within a
relative 1e-3; ``...`` marks an abridged or machine-dependent part). The one file a reader must
bring, the UD English EWT dev treebank that the atlas example cuts sentences from, is copied in.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from readme_check import blocks, cli_examples, not_run, run_readme

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EWT = ROOT.parent / "shared" / "data" / "ud-english-ewt" / "en_ewt-ud-dev.conllu"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "100"  # argparse and pandas wrap the same way on every terminal
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    bin_dir = str(Path(os.sys.executable).parent)  # the venv's `inspector` console script
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def test_the_readme_runs_as_written_and_prints_what_it_shows(tmp_path: Path) -> None:
    if not EWT.exists():
        pytest.skip(f"the atlas example reads {EWT.name}, which is not at {EWT.parent}")
    text = README.read_text(encoding="utf-8")
    assert len(blocks(text)) >= 8 and len(cli_examples(text)) >= 8
    # a block that cannot run offline says why, and there are few of them
    assert len(not_run(text)) <= 2, not_run(text)
    work = tmp_path / "reader"
    work.mkdir()
    shutil.copy(EWT, work / EWT.name)
    problems = run_readme(README, work, _env())
    assert problems == [], "\n\n".join(problems)
