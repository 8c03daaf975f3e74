"""Run the README's python blocks as a reader would, and compare what they print with what it shows.

Not a test module: ``tests/e2e/test_readme.py`` calls :func:`run_readme`. Every ```python block
runs in order, as written, in ONE fresh interpreter whose working folder is empty. A statement
followed by comment lines (``# ...``) shows its output there: the value's ``repr`` for an
expression (as in a REPL), or what it prints. The comparison is by tokens: numbers match within
a relative 1e-3 (models compute in float32 on any CPU), words must be equal, and ``...`` stands
for anything (a shown output that abridges says so with ``...``).
"""

from __future__ import annotations

import ast
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BLOCK = re.compile(r"^```python\n(.*?)^```\n(?:\n*```(?:text)?\n(.*?)^```)?", re.S | re.M)
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$")


@dataclass
class Shown:
    """One statement with a shown output: where it is, and the text the README shows."""

    block: int
    line: int
    code: str
    expected: str


def blocks(readme: str) -> list[str]:
    """The ```python blocks of ``readme``, in order."""
    return [m.group(1) for m in BLOCK.finditer(readme)]


def printed_outputs(readme: str) -> dict[int, str]:
    """Block index -> the plain ``` block right after it: what the whole block prints."""
    return {i: m.group(2).rstrip() for i, m in enumerate(BLOCK.finditer(readme)) if m.group(2)}


def shown_outputs(source: str, block: int) -> list[Shown]:
    """Statements of one block that are followed by comment lines showing their output."""
    tree = ast.parse(source)
    lines = source.split("\n")
    out = []
    for i, node in enumerate(tree.body):
        end = node.end_lineno or node.lineno
        stop = tree.body[i + 1].lineno - 1 if i + 1 < len(tree.body) else len(lines)
        comments = []
        for text in lines[end:stop]:
            stripped = text.strip()
            if stripped.startswith("#"):
                comments.append(stripped[1:].removeprefix(" ").rstrip())
            elif stripped:
                break
        # a trailing comment on the statement's own line is a remark, not an output
        if comments:
            out.append(
                Shown(
                    block,
                    node.lineno,
                    ast.get_source_segment(source, node) or "",
                    "\n".join(comments),
                )
            )
    return out


def _program(sources: list[str], printed: frozenset[int] = frozenset()) -> str:
    """One script that runs every block and records the output of each shown statement (and
    everything a block prints, for the blocks in ``printed``)."""
    parts = [
        "import contextlib, io, json, sys",
        "__shown = []",
        "def __capture(run):",
        "    buf = io.StringIO()",
        "    with contextlib.redirect_stdout(buf):",
        "        value = run()",
        "    text = buf.getvalue()",
        "    if value is not None:",
        "        text += repr(value)",
        "    return text.rstrip()",
    ]
    for b, source in enumerate(sources):
        tree = ast.parse(source)
        shown = {s.line for s in shown_outputs(source, b)}
        if b in printed:
            parts.append("__out = io.StringIO(); __redirect = contextlib.redirect_stdout(__out)")
            parts.append("__redirect.__enter__()")
        for node in tree.body:
            code = ast.unparse(node)
            if node.lineno in shown:
                if isinstance(node, ast.Expr):
                    body = f"lambda: ({ast.unparse(node.value)})"
                    parts.append(f"__shown.append(({b}, {node.lineno}, __capture({body})))")
                else:
                    fn = f"__stmt_{b}_{node.lineno}"
                    parts.append(f"def {fn}():")
                    parts.append("    global " + ", ".join(_targets(node) or ["__unused"]))
                    parts.extend("    " + ln for ln in code.split("\n"))
                    parts.append(f"__shown.append(({b}, {node.lineno}, __capture({fn})))")
            else:
                parts.append(code)
        if b in printed:
            parts.append("__redirect.__exit__(None, None, None)")
            parts.append(f"__shown.append(({b}, 0, __out.getvalue().rstrip()))")
    parts.append("print('__SHOWN__' + json.dumps(__shown))")
    return "\n".join(parts) + "\n"


def _targets(node: ast.stmt) -> list[str]:
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.append(sub.id)
    return sorted(set(names))


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[\s,()\[\]{}:=|]+", text) if t]


def _same(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    if NUMBER.match(expected) and NUMBER.match(actual):
        a, b = float(expected.rstrip("%")), float(actual.rstrip("%"))
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-3)
    return False


def matches(expected: str, actual: str) -> bool:
    """Token match with numbers within 1e-3 and ``...`` matching any run of tokens."""
    exp, act = _tokens(expected), _tokens(actual)
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        key = (i, j)
        if key in memo:
            return memo[key]
        if i == len(exp):
            result = j == len(act)
        elif exp[i] in ("...", "…"):
            result = any(go(i + 1, k) for k in range(j, len(act) + 1))
        else:
            result = j < len(act) and _same(exp[i], act[j]) and go(i + 1, j + 1)
        memo[key] = result
        return result

    sys.setrecursionlimit(max(10_000, 4 * (len(exp) + len(act))))
    return go(0, 0)


BASH = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def cli_examples(readme: str) -> list[tuple[str, str]]:
    """``(command, shown output)`` for every ``inspector ...`` line of a ```bash block that is
    followed by comment lines showing what it prints."""
    out = []
    for m in BASH.finditer(readme):
        lines = m.group(1).replace("\\\n", " ").split("\n")
        for i, text in enumerate(lines):
            if not text.startswith("inspector "):
                continue
            command = text.split(" #", 1)[0].strip()
            shown = []
            for follow in lines[i + 1 :]:
                if follow.startswith("#"):
                    shown.append(follow[1:].removeprefix(" ").rstrip())
                else:
                    break
            if shown:
                out.append((command, "\n".join(shown)))
    return out


def run_cli_examples(readme: Path, workdir: Path, env: dict[str, str]) -> list[str]:
    """Run every CLI example that shows its output; return the mismatches."""
    problems = []
    for command, expected in cli_examples(readme.read_text(encoding="utf-8")):
        proc = subprocess.run(
            command, shell=True, cwd=workdir, env=env, capture_output=True, text=True, timeout=900
        )
        actual = (proc.stdout + proc.stderr).strip()
        if not matches(expected, actual):
            problems.append(f"`{command}` shows\n{expected}\nbut prints\n{actual}")
    return problems


def run_readme(readme: Path, workdir: Path, env: dict[str, str], timeout: int = 1200) -> list[str]:
    """Run every python block; return the mismatches (empty when the README is true)."""
    text = readme.read_text(encoding="utf-8")
    sources = blocks(text)
    printed = printed_outputs(text)
    script = workdir / "readme_blocks.py"
    script.write_text(_program(sources, frozenset(printed)), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return [f"the README's python blocks failed:\n{proc.stderr[-4000:]}"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("__SHOWN__"))
    got = {(b, n): text for b, n, text in json.loads(line[len("__SHOWN__") :])}
    problems = []
    for b, expected in printed.items():
        if not matches(expected, got[(b, 0)]):
            problems.append(f"block {b + 1} shows it prints\n{expected}\nbut prints\n{got[(b, 0)]}")
    for b, source in enumerate(sources):
        for shown in shown_outputs(source, b):
            actual = got[(b, shown.line)]
            if not matches(shown.expected, actual):
                problems.append(
                    f"block {b + 1}, `{shown.code.splitlines()[0]}` shows\n{shown.expected}\n"
                    f"but prints\n{actual}"
                )
    return problems
