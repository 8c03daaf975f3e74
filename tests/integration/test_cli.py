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
