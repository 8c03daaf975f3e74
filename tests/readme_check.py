"""Run the README as a reader would, top to bottom, and compare what it prints with what it shows.

Not a test module: ``tests/e2e/test_readme.py`` calls :func:`run_readme`. The README's examples
run in document order in ONE fresh interpreter whose working folder starts empty:

- a ```python block runs as written. A statement followed directly by comment lines
  (``# ...``, no blank line between) shows its output there: the value's ``repr`` for an
  expression (as in a REPL), what it prints, or ``SomeError: message`` when it raises. A
  plain ``` block right after a python block is what the whole block prints;
- a ```console block is a shell session: each ``$ command`` runs (in the same folder) and the
  lines up to the next ``$`` are exactly what it prints (stdout and stderr; none: nothing),
  except progress lines (:data:`PROGRESS_LINE`): stderr is not a terminal here, so work that
  runs past 10 s prints them, and whether it does depends on the machine's speed and load;
- in a ```bash block, each ``inspector ...`` line runs, and the comment lines after it, when
  there are any, are what it prints (other lines, such as ``make ...``, are not run).

The comparison is by tokens: numbers match within a relative 1e-3 (models compute in float32 on
any CPU), words must be equal, and ``...`` stands for anything (a shown output that abridges or
depends on the machine says so with ``...``). A block preceded by the line
``<!-- readme-check: not run (REASON) -->`` is not run; :func:`not_run` lists those reasons.
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

FENCE = re.compile(
    r"^(?:<!-- readme-check: not run \((?P<why>[^)\n]+)\) -->\n)?"
    r"```(?P<lang>[a-z]*)\n(?P<body>.*?)^```[ \t]*$",
    re.S | re.M,
)
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?%?$")
#: A progress line of inspector._progress.Lines ("atlas minilm: 96/300 sentences (32%), 00:13
#: elapsed, about 00:28 left"; "atlas minilm: 300 sentences done in 00:44"): not compared.
PROGRESS_LINE = re.compile(
    r"^[^\n]+: \d+(/\d+)?[^\n]*, [\d:]+ elapsed(, about [\d:?]+ left)?$"
    r"|^[^\n]+: \d+[^\n]* done in [\d:]+$",
    re.M,
)
SHELL_TIMEOUT = 900


@dataclass
class Block:
    """One fenced block: its language, text, where it starts, and why it is not run (if so)."""

    lang: str
    body: str
    start: int
    end: int
    not_run: str | None = None
    printed: str | None = None  # python blocks: the plain block right after, what it prints


@dataclass
class Shown:
    """One statement with a shown output: where it is, and the text the README shows."""

    block: int
    line: int
    code: str
    expected: str


def parse(readme: str) -> list[Block]:
    """Every fenced block in order; a plain block right after a python block becomes its
    ``printed`` output instead of a block of its own."""
    out: list[Block] = []
    for m in FENCE.finditer(readme):
        block = Block(m.group("lang"), m.group("body"), m.start(), m.end(), m.group("why"))
        prev = out[-1] if out else None
        if (
            block.lang in ("", "text")
            and prev is not None
            and prev.lang == "python"
            and readme[prev.end : block.start].strip() == ""
        ):
            prev.printed = block.body.rstrip()
            prev.end = block.end
            continue
        out.append(block)
    return out


def blocks(readme: str) -> list[str]:
    """The ```python blocks of ``readme`` that run, in order."""
    return [b.body for b in parse(readme) if b.lang == "python" and b.not_run is None]


def not_run(readme: str) -> list[str]:
    """The reasons given for the blocks that are not run."""
    return [b.not_run for b in parse(readme) if b.not_run is not None]


def printed_outputs(readme: str) -> dict[int, str]:
    """Python block index (as :func:`blocks` counts) -> what the whole block prints."""
    runs = [b for b in parse(readme) if b.lang == "python" and b.not_run is None]
    return {i: b.printed for i, b in enumerate(runs) if b.printed is not None}


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
            if not stripped.startswith("#"):
                break  # a blank line or code: the comments that follow are remarks
            comments.append(stripped[1:].removeprefix(" ").rstrip())
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


def shell_steps(block: Block) -> list[tuple[int, str, str | None]]:
    """``(line, command, shown output or None)`` of a console or bash block."""
    lines = block.body.replace("\\\n", " ").split("\n")
    steps: list[tuple[int, str, str | None]] = []
    if block.lang == "console":
        i = 0
        while i < len(lines):
            if lines[i].startswith("$ "):
                command, shown = lines[i][2:].strip(), []
                i += 1
                while i < len(lines) and not lines[i].startswith("$ "):
                    shown.append(lines[i].rstrip())
                    i += 1
                steps.append((len(steps) + 1, command, "\n".join(shown).strip()))
            else:
                i += 1
    elif block.lang == "bash":
        for i, text in enumerate(lines):
            if not text.startswith("inspector "):
                continue
            command = text.split(" #", 1)[0].strip()
            follow = []
            for after in lines[i + 1 :]:
                if not after.startswith("#"):
                    break
                follow.append(after[1:].removeprefix(" ").rstrip())
            steps.append((i + 1, command, "\n".join(follow) if follow else None))
    return steps


def cli_examples(readme: str) -> list[tuple[str, str]]:
    """``(command, shown output)`` of every shell example that shows what it prints."""
    return [
        (command, shown)
        for b in parse(readme)
        if b.not_run is None
        for _, command, shown in shell_steps(b)
        if shown is not None
    ]


_PRELUDE = [
    "import contextlib, io, json, re, subprocess, sys",
    f"__progress = re.compile({PROGRESS_LINE.pattern!r}, re.M)",
    "__shown = []",
    "def __capture(run):",
    "    buf = io.StringIO()",
    "    with contextlib.redirect_stdout(buf):",
    "        try:",
    "            value = run()",
    "        except Exception as exc:",
    "            return (buf.getvalue() + f'{type(exc).__name__}: {exc}').rstrip()",
    "    text = buf.getvalue()",
    "    if value is not None:",
    "        text += repr(value)",
    "    return text.rstrip()",
    "def __shell(key, command):",
    "    sys.stdout.flush()",
    "    proc = subprocess.run(command, shell=True, stdout=subprocess.PIPE,",
    f"                          stderr=subprocess.STDOUT, text=True, timeout={SHELL_TIMEOUT})",
    "    out = __progress.sub('', proc.stdout)  # progress lines depend on the machine's speed",
    "    __shown.append((*key, out.strip()))  # one pipe: the terminal's order",
]


def _program(readme: str) -> str:
    """One script that runs every block in order and records each shown output."""
    parts = list(_PRELUDE)
    for b, block in enumerate(parse(readme)):
        if block.not_run is not None:
            continue
        if block.lang == "python":
            parts.extend(_python_steps(b, block))
        else:
            for line, command, _ in shell_steps(block):
                parts.append(f"__shell(({b}, {line}), {command!r})")
    parts.append("print('__SHOWN__' + json.dumps(__shown))")
    return "\n".join(parts) + "\n"


def _python_steps(b: int, block: Block) -> list[str]:
    tree = ast.parse(block.body)
    shown = {s.line for s in shown_outputs(block.body, b)}
    parts = []
    if block.printed is not None:
        parts.append("__out = io.StringIO(); __redirect = contextlib.redirect_stdout(__out)")
        parts.append("__redirect.__enter__()")
    for node in tree.body:
        code = ast.unparse(node)
        if node.lineno not in shown:
            parts.append(code)
        elif isinstance(node, ast.Expr):
            body = f"lambda: ({ast.unparse(node.value)})"
            parts.append(f"__shown.append(({b}, {node.lineno}, __capture({body})))")
        else:
            fn = f"__stmt_{b}_{node.lineno}"
            parts.append(f"def {fn}():")
            parts.append("    global " + ", ".join(_targets(node) or ["__unused"]))
            parts.extend("    " + ln for ln in code.split("\n"))
            parts.append(f"__shown.append(({b}, {node.lineno}, __capture({fn})))")
    if block.printed is not None:
        parts.append("__redirect.__exit__(None, None, None)")
        parts.append(f"__shown.append(({b}, 0, __out.getvalue().rstrip()))")
    return parts


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


def run_readme(readme: Path, workdir: Path, env: dict[str, str], timeout: int = 1800) -> list[str]:
    """Run the README top to bottom in ``workdir``; return the mismatches (empty when true)."""
    text = readme.read_text(encoding="utf-8")
    script = workdir.parent / f"{workdir.name}_readme.py"
    script.write_text(_program(text), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return [f"the README's examples failed:\n{proc.stderr[-4000:]}"]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("__SHOWN__"))
    got = {(b, n): out for b, n, out in json.loads(line[len("__SHOWN__") :])}
    problems = []
    for b, block in enumerate(parse(text)):
        if block.not_run is not None:
            continue
        where = f"README line {text.count(chr(10), 0, block.start) + 1}"
        if block.lang == "python":
            if block.printed is not None and not matches(block.printed, got[(b, 0)]):
                problems.append(
                    f"{where}: the block shows it prints\n{block.printed}\n"
                    f"but prints\n{got[(b, 0)]}"
                )
            for shown in shown_outputs(block.body, b):
                actual = got[(b, shown.line)]
                if not matches(shown.expected, actual):
                    problems.append(
                        f"{where}: `{shown.code.splitlines()[0]}` shows\n{shown.expected}\n"
                        f"but prints\n{actual}"
                    )
        else:
            for step, command, expected in shell_steps(block):
                actual = got[(b, step)]
                if expected is not None and not matches(expected, actual):
                    problems.append(
                        f"{where}: `$ {command}` shows\n{expected}\nbut prints\n{actual}"
                    )
    return problems
