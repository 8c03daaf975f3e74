"""The command line: one readable line on success or failure, no partial files."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from inspector.cli import main

from factories import cli_fails, parse

TEXT = "The cat sat on the mat."


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_inspect_writes_frame_and_prints_one_line(tiny_dirs, tmp_path, capsys, suffix):
    out = tmp_path / f"cat.{suffix}"
    rc = main(["inspect", str(tiny_dirs["bert"]), TEXT, "--layers", "1", "-o", str(out)])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line
    assert "1 layer x 2 heads" in line and str(out) in line  # what was kept
    frame = pd.read_parquet(out) if suffix == "parquet" else pd.read_csv(out)
    assert set(frame["layer"]) == {1}


def test_inspect_word_level_and_pair(tiny_dirs, tmp_path):
    out = tmp_path / "w.csv"
    rc = main(
        [
            "inspect",
            str(tiny_dirs["bert"]),
            TEXT,
            "--pair",
            "It slept.",
            "--level",
            "word",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    frame = pd.read_csv(out)
    assert "slept" in set(frame.query_token)


@pytest.mark.parametrize(
    "args, match",
    [
        (["   "], "empty"),
        ([" ".join(["cat"] * 200)], "--truncate"),
        ([TEXT, "--layers", "7"], "out of range"),
        ([TEXT, "--heads", "-9"], "out of range"),
    ],
)
def test_bad_input_one_line_no_file(tiny_dirs, tmp_path, capsys, args, match):
    out = tmp_path / "x.parquet"
    cli_fails(["inspect", str(tiny_dirs["bert"]), *args, "-o", str(out)], capsys, match)
    assert not out.exists()
    assert not list(tmp_path.iterdir())


def test_bad_output_suffix(tiny_dirs, tmp_path, capsys):
    cli_fails(
        ["inspect", str(tiny_dirs["bert"]), TEXT, "-o", str(tmp_path / "x.json")],
        capsys,
        ".parquet or .csv",
    )


def test_output_is_a_folder(tiny_dirs, tmp_path, capsys):
    cli_fails(["inspect", str(tiny_dirs["bert"]), TEXT, "-o", str(tmp_path)], capsys, "folder")


def test_bad_layers_syntax(tiny_dirs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["inspect", str(tiny_dirs["bert"]), TEXT, "--layers", "a,b", "-o", "x.csv"])
    assert exc.value.code == 2
    assert "comma-separated integers" in capsys.readouterr().err


def test_subprocess_exit_code(tiny_dirs, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "inspector")
    out = subprocess.run(
        [exe, "inspect", str(tiny_dirs["bert"]), "", "-o", str(tmp_path / "x.csv")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "inspector: error: text is empty; give some text to inspect"


@pytest.mark.parametrize("suffix", ["html", "parquet"])
def test_generate_command(tiny_dirs, tmp_path, capsys, suffix):
    out = tmp_path / f"gen.{suffix}"
    rc = main(
        ["generate", str(tiny_dirs["gpt2"]), "The cat sat", "--max-new-tokens", "3", "-o", str(out)]
    )
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "+ 3 generated tokens" in line and str(out) in line
    if suffix == "parquet":
        frame = pd.read_parquet(out)
        n = int(frame["query_pos"].max()) + 1
        assert len(frame) == 2 * 2 * n * n
    else:
        page = parse(out.read_text(encoding="utf-8"))
        sections = [a.get("id") for t, a in page.tags if t == "section"]
        assert "generation" in sections  # the report's generation section, not the meta tag
        assert "3 generated" in " ".join(" ".join(page.text).split())


def test_report_with_explain(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "r.html"
    rc = main(["report", str(tiny_dirs["gpt2"]), TEXT, "--explain", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    html = out.read_text(encoding="utf-8")
    assert 'id="what-mattered"' in html
    assert "sections" in capsys.readouterr().out


def test_inspect_prints_what_was_kept(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "k.csv"
    argv = ["inspect", str(tiny_dirs["bert"]), TEXT, "--layers", "0,1", "--heads", "1"]
    assert main([*argv, "-o", str(out)]) == 0
    assert "2 layers x 1 head," in capsys.readouterr().out


def test_heads_prints_only_roles_that_occur(tiny_dirs, capsys):
    from inspector.api import ROLES

    assert main(["heads", str(tiny_dirs["bert"]), TEXT, "A dog barked at the mailman."]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("top 3 heads of each role that occurs (score)")
    shown = {line.split()[0] for line in lines[1:] if line.split()[0] in ROLES}
    absent = next((line for line in lines if "no head is:" in line), "")
    missing = {r.strip() for r in absent.split(":", 1)[1].split(",")} if absent else set()
    assert shown and not shown & missing and shown | missing == set(ROLES)
    for line in lines[1:]:
        if line.split()[0] in shown - {"other"}:
            n = int(line.split()[1])
            assert n >= 1 and 1 <= line.count(",") + 1 <= min(n, 3)  # only heads with the role


def test_mkdir_creates_the_output_folder(tiny_dirs, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "cat.csv"
    assert main(["inspect", str(tiny_dirs["bert"]), TEXT, "-o", str(out), "--mkdir"]) == 0
    assert out.exists()


class _Terminal:
    """A stderr that says it is a terminal (tqdm draws there)."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def write(self, text: str) -> int:
        return self.buffer.write(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_on_a_terminal_and_quiet(tiny_dirs, tmp_path, monkeypatch, capsys, quiet):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"The cat number {i} sat on the mat." for i in range(12)))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["heads", str(tiny_dirs["bert"]), "--file", str(texts)]
    assert main([*argv, "--quiet"] if quiet else argv) == 0
    drawn = terminal.buffer.getvalue()
    assert ("texts" in drawn) is not quiet, drawn  # a tqdm bar over the texts, or nothing
    assert "12 texts" in capsys.readouterr().out


def test_no_progress_when_stderr_is_not_a_terminal(tiny_dirs, tmp_path, capfd):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(f"The cat number {i} sat on the mat." for i in range(12)))
    assert main(["heads", str(tiny_dirs["bert"]), "--file", str(texts)]) == 0
    assert capfd.readouterr().err == ""


def test_explain_shows_its_ablations_on_a_terminal(tiny_dirs, tmp_path, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    out = tmp_path / "e.html"
    assert main(["explain", str(tiny_dirs["gpt2"]), TEXT, "-o", str(out)]) == 0
    assert "ablating heads" in terminal.buffer.getvalue()
    terminal.buffer = type(terminal.buffer)()
    assert main(["report", str(tiny_dirs["gpt2"]), TEXT, "--explain", "-q", "-o", str(out)]) == 0
    assert terminal.buffer.getvalue() == ""


def test_a_long_scan_off_a_terminal_prints_progress_lines(tiny_dirs, tmp_path, monkeypatch, capfd):
    """stderr is a pipe here (a log, CI, nohup): a scan past 10 s prints a line at most every
    30 s and one when it ends; a fake clock makes each reading 11 s later."""
    import inspector._progress as progress

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            self.now += 11.0
            return self.now

    monkeypatch.setattr(progress, "clock", Clock())
    out = tmp_path / "s.parquet"
    assert main(["scan", str(tiny_dirs["gpt2"]), TEXT, "-o", str(out)]) == 0
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    name = tiny_dirs["gpt2"]  # the model as named on the command line
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"scan {name}: 1/2 layers (50%), 00:11 elapsed, about "), lines
    assert lines[1].startswith(f"scan {name}: 2 layers done in "), lines
    assert "\r" not in captured.err and out.exists()
    assert main(["scan", str(tiny_dirs["gpt2"]), TEXT, "-q", "-o", str(out)]) == 0
    assert capfd.readouterr().err == ""  # --quiet: no lines either


def test_an_unreachable_hub_is_not_waited_for(tmp_path, capsys, monkeypatch):
    """A hub id with the network down: the answer comes from the probe, not from transformers'
    retries (half a minute)."""
    import socket
    import time

    def hang(*args, **kwargs):
        time.sleep(10)
        raise OSError("timed out")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    from inspector.models import checks

    monkeypatch.setattr(checks, "_PROBED", {})
    monkeypatch.setattr(socket, "create_connection", hang)
    start = time.perf_counter()
    cli_fails(
        ["report", "someone/some-model", TEXT, "-o", str(tmp_path / "x.html")],
        capsys,
        "the Hugging Face hub could not be reached",
    )
    assert time.perf_counter() - start < 3.0
