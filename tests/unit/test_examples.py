"""The README and the tour notebook never read the ``head`` column as an attribute.

``frame.head`` is ``DataFrame.head``, the method: ``frame[frame.head == 2]`` compares a method
with 2 and silently selects nothing. Columns are read as ``frame["head"]``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ATTRIBUTE_HEAD = re.compile(r"\.head\b(?!\s*\()")  # .head not called: the column as attribute


def _python_of_readme() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, re.S)


def _code_of_notebook() -> list[str]:
    nb = json.loads((ROOT / "examples" / "tour.ipynb").read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_no_attribute_access_to_the_head_column():
    blocks = _python_of_readme() + _code_of_notebook()
    assert len(blocks) > 10
    # comments may name the mistake; code never makes it
    code = [line.split("#", 1)[0] for block in blocks for line in block.splitlines()]
    assert [line for line in code if ATTRIBUTE_HEAD.search(line)] == []
    assert ATTRIBUTE_HEAD.search("frame[frame.head == 2]")
    assert not ATTRIBUTE_HEAD.search('frame.head(3); frame["head"] == 2')


def test_the_readme_says_how_to_run_the_notebook():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "examples/tour.ipynb" in readme and "jupyter execute examples/tour.ipynb" in readme
