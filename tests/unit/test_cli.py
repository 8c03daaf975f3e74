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


def test_version(capsys):
    import pytest

    from inspector.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("inspector ") and out.split()[1][0].isdigit()


def _commands():
    from inspector.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "inspect" in a.choices)
    return parser, sub.choices


def test_every_option_of_every_command_has_help_that_states_its_default():
    parser, commands = _commands()
    assert set(commands) >= {"inspect", "report", "heads", "compare", "explain", "generate"}
    for name, p in [("inspector", parser), *commands.items()]:
        formatter = p._get_formatter()
        for action in p._actions:
            if not action.option_strings or action.dest == "help":
                continue
            text = formatter._get_help_string(action) or ""
            where = f"{name} {action.option_strings[-1]}"
            assert action.help and len(action.help) > 8, f"{where} has no help"
            if not action.required and action.dest != "version":
                assert "default" in text, f"{where}: its help does not state the default"


def test_help_shows_defaults_and_gguf_paths():
    _, commands = _commands()
    text = commands["generate"].format_help()
    assert "(default: 20)" in " ".join(text.split())  # --max-new-tokens
    assert "--no-chat" in text
    explain = " ".join(commands["explain"].format_help().split())
    assert "(default: ablation)" in explain
    for p in commands.values():
        assert ".gguf file" in " ".join(p.format_help().split())  # MODEL names GGUF paths
