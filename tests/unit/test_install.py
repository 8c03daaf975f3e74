"""The install: `pip check` is clean in the venv `make install` builds, and pages need no bertviz
package (its view scripts are vendored unchanged)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "inspector" / "render" / "static"


def test_pip_check_is_clean_in_the_venv_make_builds():
    venv = Path(sys.prefix)
    if not (venv / ".runtime").exists():
        pytest.skip("not in a venv made by `make install` (it leaves .venv/.runtime)")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_vendored_bertviz_scripts_are_bertviz_1_4_1_unchanged():
    listed = {}
    for line in (STATIC / "bertviz" / "SOURCE.txt").read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].endswith(".js") and len(parts[0]) == 64:
            listed[parts[1]] = parts[0]
    assert set(listed) == {"head_view.js", "model_view.js", "neuron_view.js"}
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC / "bertviz" / name).read_bytes()).hexdigest() == digest
    assert "Apache License" in (STATIC / "bertviz" / "LICENSE.txt").read_text(encoding="utf-8")


def test_pages_need_no_bertviz_package():
    code = (
        "import sys\n"
        "sys.modules['bertviz'] = None  # importing it, or finding it, fails\n"
        "from inspector.render._assets import bertviz_js, versions\n"
        "print(all('requirejs' in bertviz_js(v) for v in ('head', 'model', 'neuron')),"
        " versions()['bertviz'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["True", "1.4.1"], out.stderr
