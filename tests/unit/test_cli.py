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


def test_a_typo_of_an_embedded_name_is_answered_at_once(tmp_path, capsys, monkeypatch):
    """``minilmm``: "did you mean 'minilm'?" within 3 s, without touching the network."""
    import socket
    import time

    def no_network(*args, **kwargs):
        raise AssertionError("a typo of an embedded name must not reach for the hub")

    monkeypatch.setattr(socket, "create_connection", no_network)
    out = tmp_path / "x.html"
    start = time.perf_counter()
    err = cli_fails(["report", "minilmm", "hi", "-o", str(out)], capsys, "did you mean 'minilm'?")
    assert time.perf_counter() - start < 3.0
    assert "hf download" not in err and not out.exists()
    cli_fails(["report", "SmolLM2", "hi", "-o", str(out)], capsys, "did you mean 'smollm2'?")


def test_near_name_only_for_short_names():
    from inspector.models.checks import near_name

    names = ["minilm", "smollm2"]
    assert near_name("minilmm", names) == "minilm" and near_name("smolm2", names) == "smollm2"
    assert near_name("minilm", names) is None  # the name itself is no typo
    assert near_name("gpt2", names) is None and near_name("bert-base-uncased", names) is None
    assert near_name("org/minilmm", names) is None  # a hub id with an owner


def test_the_hub_probe_answers_within_its_timeout(monkeypatch):
    import socket
    import time

    from inspector.models import checks

    def hang(*args, **kwargs):
        time.sleep(5)  # a name lookup or connect that never answers
        raise OSError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setattr(checks, "_PROBED", {})
    monkeypatch.setattr(checks, "HUB_PROBE_MEMORY", 0.0)  # probe every time
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    assert checks.hub_reachable(timeout=0.3) is False
    assert time.perf_counter() - start < 1.0

    def refuse(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert checks.hub_reachable() is False
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: socket.socket())
    assert checks.hub_reachable() is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert checks.hub_reachable() is False  # said offline: no probe at all


def _usage_error(argv, capsys) -> str:
    import pytest

    from inspector.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_a_second_text_points_to_pair_and_compare(capsys):
    line = _usage_error(["report", "minilm", "hi", "The key is here.", "-o", "x.html"], capsys)
    assert "report takes one TEXT" in line
    assert "--pair 'The key is here.'" in line
    assert "inspector compare MODEL TEXT --text-b 'The key is here.'" in line
    line = _usage_error(["report", "minilm", "The", "cat", "sat", "-o", "x.html"], capsys)
    assert "put a text with spaces in quotes" in line and "--pair TEXT" in line
    line = _usage_error(["compare", "minilm", "hi", "ho ho"], capsys)
    assert "give it as --text-b 'ho ho'" in line


def test_command_options_before_the_command_say_where_they_go(capsys):
    line = _usage_error(["-q", "report", "minilm", "hi", "-o", "x.html"], capsys)
    assert "-q is an option of the command, so it goes after it: inspector report ... -q" in line
    line = _usage_error(["--device", "cpu", "report", "minilm", "hi", "-o", "x.html"], capsys)
    assert "inspector report ... --device VALUE" in line


def test_debug_works_before_and_after_the_command():
    from inspector.cli import build_parser

    parser = build_parser()
    for argv in (
        ["--debug", "report", "minilm", "hi", "-o", "x.html"],
        ["report", "minilm", "hi", "-o", "x.html", "--debug"],
    ):
        args, extra = parser.parse_known_args(argv)
        assert args.debug is True and extra == []
    assert parser.parse_args(["report", "minilm", "hi", "-o", "x.html"]).debug is False
