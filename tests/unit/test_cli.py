"""The command line: one readable line on success or failure, no partial files."""

from __future__ import annotations

import os
import subprocess
import sys

from factories import cli_fails

TEXT = "The cat sat on the mat."


def test_help_does_not_import_torch():
    code = (
        "import sys; from inspector.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False False"


def test_console_script_help():
    exe = os.path.join(os.path.dirname(sys.executable), "inspector")
    out = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "inspect" in out.stdout


def test_unknown_model_and_missing_folder(tmp_path, capsys):
    out = tmp_path / "x.csv"
    cli_fails(["inspect", "no-such-model", TEXT, "-o", str(out)], capsys, "minilm")
    cli_fails(
        ["inspect", str(tmp_path / "a" / "b"), TEXT, "-o", str(out)], capsys, "does not exist"
    )
    assert not out.exists()
