"""The package's shape, checked on its source: one way to run a model, small modules, no cycles.

These rules are the reorganisation's contract (issue 11); import-linter (``make lint``) checks
the layers, these tests check what it cannot.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import pkgutil
import re
from pathlib import Path

import pytest

import inspector

PACKAGE = Path(inspector.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def _code(path: Path) -> tuple[str, ...]:
    """The calls and attribute reads of a module, as source (parsed once for every test)."""
    tree = ast.parse(_source(path))
    return tuple(
        ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Call | ast.Attribute)
    )


def _calls(pattern: str) -> dict[str, int]:
    """Modules whose code (not comments or docstrings) matches ``pattern``, with counts."""
    regex = re.compile(pattern)
    found = {}
    for path in MODULES:
        hits = sum(bool(regex.search(c)) for c in _code(path))
        if hits:
            found[str(path.relative_to(PACKAGE))] = hits
    return found


def test_one_module_registers_hooks() -> None:
    assert set(_calls(r"\.register_forward(_pre)?_hook\(|\.register_full_backward")) == {
        "capture/hooks.py"
    }


def test_only_the_capture_layer_runs_a_model() -> None:
    runs = _calls(r"\bmodel\((\*\*|input_ids=)|\bmodel\.generate\(")
    # the runner modules of the capture package: one input, generation, bounded scans
    assert set(runs) <= {"capture/run.py", "capture/generation.py", "capture/scan.py"}, runs


def test_one_module_registers_attention_functions() -> None:
    """Registering an attention function is a form of hooking: only hooks.py does it (loading
    switches a model to eager once, with transformers' own set_attn_implementation)."""
    found = _calls(r"Interface\.register\(|_attn_implementation_internal")
    assert set(found) == {"capture/hooks.py"}, found


def test_one_tokenization_path() -> None:
    tokenizes = _calls(r"apply_chat_template\(|return_offsets_mapping|is_split_into_words")
    assert set(tokenizes) == {"capture/tokenize.py"}, tokenizes
    assert set(_calls(r"\.from_pretrained\(")) == {"models/loading.py"}


def test_no_module_over_600_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(_source(p).splitlines()) for p in MODULES}
    assert {k: v for k, v in sizes.items() if v > 600} == {}


def _page_scripts() -> list[Path]:
    """The package's own static scripts: every shipped .js file but the vendored d3 and jQuery."""
    from inspector.render import _assets

    vendored = {_assets.D3_FILE, _assets.JQUERY_FILE}
    return sorted(p for p in (PACKAGE / "render" / "static").glob("*.js") if p.name not in vendored)


def test_no_page_script_over_600_lines() -> None:
    scripts = _page_scripts()
    assert {"figure-kit.js", "figures.js", "inspector.js", "report.js"} <= {p.name for p in scripts}
    sizes = {p.name: len(_source(p).splitlines()) for p in scripts}
    assert {k: v for k, v in sizes.items() if v > 600} == {}


def test_every_page_script_is_type_checked() -> None:
    tsconfig = PACKAGE.parent / "tsconfig.json"
    if not tsconfig.exists():
        pytest.skip("tsconfig.json is not next to the package (an installed copy)")
    checked = {Path(f).name for f in json.loads(_source(tsconfig))["files"]}
    assert {p.name for p in _page_scripts()} - checked == set()


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("inspector")
    modules = sorted(graph.modules)
    edges = {
        m: {n for n in graph.find_modules_directly_imported_by(m) if n.startswith("inspector")}
        for m in modules
    }
    # Tarjan's strongly connected components: any component of two or more modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for m in modules:
        if m not in index:
            visit(m)
    assert cycles == []


def test_no_public_name_hides_a_submodule() -> None:
    hidden = []
    for info in pkgutil.walk_packages(inspector.__path__, "inspector."):
        parent_name, _, child = info.name.rpartition(".")
        parent = importlib.import_module(parent_name)
        value = getattr(parent, child, None)
        if value is not None and not hasattr(value, "__path__") and not hasattr(value, "__file__"):
            hidden.append(info.name)
    assert hidden == []


def test_facade_has_no_untyped_options() -> None:
    for name in (
        "api/model.py",
        "api/inspection.py",
        "api/corpus.py",
        "api/results.py",
        "api/scanning.py",
        "api/retrieval.py",
    ):
        tree = ast.parse(_source(PACKAGE / name))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                kwarg = node.args.kwarg
                untyped = kwarg is not None and ast.unparse(kwarg.annotation or kwarg) in (
                    "Any",
                    kwarg.arg,
                )
                assert not untyped, f"{name}: {node.name}(**{kwarg.arg if kwarg else ''}: Any)"
                assert node.returns is not None, f"{name}: {node.name} has no return type"
                assert ast.unparse(node.returns) != "Any", f"{name}: {node.name} returns Any"


def test_cli_imports_only_the_api() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        tree = ast.parse(_source(path))
        outside = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 2
        }
        assert outside <= {"api"}, f"{path.name} imports {outside}"
