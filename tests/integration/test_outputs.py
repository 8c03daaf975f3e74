"""The command line's outputs (issue 18, items 3, 4 and 7): a scan's or an atlas' files are
written as one set, messages say what happened, read-only files need --force, and an output
(or a file written beside it) is never one of the inputs."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from inspector.cli import main

TEXT = "The cat sat on the mat because it was tired. The dog barked at the mailman."


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out.strip(), err.strip()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _fail_on_second_write(monkeypatch: pytest.MonkeyPatch, failure: BaseException) -> None:
    """Parquet's writer raises ``failure`` on the second file of a set (the first is written)."""
    import pyarrow.parquet as pq

    real = pq.write_table
    calls: list[object] = []

    def write(table: Any, where: Any, **kw: Any) -> None:
        calls.append(where)
        if len(calls) == 2:
            raise failure
        real(table, where, **kw)

    monkeypatch.setattr(pq, "write_table", write)


def test_scan_tables_are_written_as_a_set(
    tiny_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpt2, out = str(tiny_dirs["gpt2"]), tmp_path / "s.parquet"
    scan = ["scan", gpt2, TEXT, "--no-progress", "-o", str(out)]
    rc, line, err = _run([*scan, "--rows", "0,-1", "--topk", "3"], capsys)
    assert rc == 0, err
    assert sorted(_files(tmp_path)) == ["s.parquet", "s.rows.parquet", "s.topk.parquet"]
    assert line.endswith(f"-> {out}, {tmp_path / 's.rows.parquet'}, {tmp_path / 's.topk.parquet'}")
    before = _files(tmp_path)
    # a full disk on the second file: nothing changed, no temporary, and the message says so
    _fail_on_second_write(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    rc, _, err = _run([*scan, "--rows", "1", "--topk", "2"], capsys)
    assert rc == 2 and err.count("\n") == 0, err
    assert "No space left on device" in err and "nothing was written" in err, err
    assert "s.parquet, s.rows.parquet and s.topk.parquet in" in err and "as they were" in err
    assert _files(tmp_path) == before
    # SIGTERM (KeyboardInterrupt in the CLI) after the first file: the same
    monkeypatch.undo()
    _fail_on_second_write(monkeypatch, KeyboardInterrupt())
    rc, _, err = _run([*scan, "--rows", "1", "--topk", "2"], capsys)
    assert rc == 130 and err == "inspector: interrupted; no partial output was written"
    assert _files(tmp_path) == before
    monkeypatch.undo()
    # a scan without top-k replaces the set: the old top-k file, of another scan, goes
    rc, line, err = _run([*scan, "--rows", "1"], capsys)
    assert rc == 0, err
    assert sorted(_files(tmp_path)) == ["s.parquet", "s.rows.parquet"]
    assert line.endswith(f"(removed the old {tmp_path / 's.topk.parquet'}: this scan has none)")


def test_atlas_report_is_part_of_the_set(
    tiny_dirs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The cat sat.\nA dog barked.\nIt was tired.\n", encoding="utf-8")
    out, report = tmp_path / "a.parquet", tmp_path / "a.html"
    argv = ["atlas", str(tiny_dirs["bert"]), str(corpus), "-o", str(out), "--no-progress"]
    rc, line, err = _run([*argv, "--report", str(report)], capsys)
    assert rc == 0, err
    assert line.endswith(f"-> {out}, {tmp_path / 'a.distances.parquet'}, {report}")
    before = _files(tmp_path)
    real = Path.write_text

    def full(self: Path, *args: Any, **kw: Any) -> int:
        if self.name.endswith("a.html"):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, *args, **kw)

    monkeypatch.setattr(Path, "write_text", full)
    rc, _, err = _run([*argv, "--report", str(report), "--no-distances"], capsys)
    monkeypatch.undo()
    assert rc == 2 and f"could not write {report}: No space left" in err, err
    checkpoint = tmp_path / "a.parquet.ckpt.npz"
    assert f"the measured atlas is kept in {checkpoint}: rerun with --resume" in err
    after = _files(tmp_path)
    assert after.pop(checkpoint.name) and after == before  # the old summary and distances
    rc, line, err = _run([*argv, "--no-distances", "--resume"], capsys)
    assert rc == 0 and "removed the old" in line and "a.distances.parquet" in line, err
    assert sorted(_files(tmp_path)) == ["a.html", "a.parquet", "corpus.txt"]


def test_a_read_only_output_needs_force(
    tiny_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    out.write_text("keep me")
    out.chmod(0o444)
    argv = ["inspect", str(tiny_dirs["bert"]), "The cat sat.", "-o", str(out)]
    rc, _, err = _run(argv, capsys)
    assert rc == 2 and "is read-only (mode 0444)" in err and "--force" in err, err
    assert out.read_text() == "keep me"
    rc, _, err = _run([*argv, "--force"], capsys)
    assert rc == 0, err
    assert out.read_text().startswith("layer,head,")
    # a read-only sidecar of a scan is refused before the scan runs
    side = tmp_path / "s.rows.csv"
    side.write_text("old rows")
    side.chmod(0o444)
    scan = ["scan", str(tiny_dirs["gpt2"]), TEXT, "--no-progress", "-o", str(tmp_path / "s.csv")]
    rc, _, err = _run(scan, capsys)
    assert rc == 2 and "s.rows.csv is read-only" in err, err
    assert not (tmp_path / "s.csv").exists()
    rc, _, err = _run([*scan, "--force"], capsys)
    assert rc == 0 and side.read_text() != "old rows", err


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "{gpt2}", "--file", "{tmp}/notes.csv", "-o", "{tmp}/notes.csv"],
        ["scan", "{gpt2}", "--file", "{tmp}/notes.rows.csv", "-o", "{tmp}/notes.csv"],
        ["scan", "{gpt2}", "--file", "{tmp}/sub/../notes.topk.csv", "-o", "{tmp}/notes.csv"],
        ["scan", "{gpt2}", "--file", "{tmp}/notes.csv", "-o", "{tmp}/link.csv"],
        ["retrieval", "{gpt2}", "--haystack", "{tmp}/hay.csv", "-o", "{tmp}/hay.csv"],
        ["heads", "{bert}", "--file", "{tmp}/notes.csv", "-o", "{tmp}/symlink.csv"],
        ["probe", "{bert}", "{tmp}/notes.csv", "-o", "{tmp}/link.csv"],
    ],
    ids=["scan", "scan-rows-sidecar", "scan-topk-sidecar-dotdot", "scan-hard-link", "retrieval",
         "heads-symlink", "probe-hard-link"],
)  # fmt: skip
def test_an_output_that_is_an_input_is_refused(
    tiny_dirs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("notes.csv", "notes.rows.csv", "notes.topk.csv", "hay.csv"):
        (tmp_path / name).write_text("The cat sat on the mat.\n", encoding="utf-8")
    os.link(tmp_path / "notes.csv", tmp_path / "link.csv")
    (tmp_path / "symlink.csv").symlink_to(tmp_path / "notes.csv")
    before = _files(tmp_path)
    fill = {"gpt2": str(tiny_dirs["gpt2"]), "bert": str(tiny_dirs["bert"]), "tmp": str(tmp_path)}
    rc, _, err = _run([a.format(**fill) for a in argv], capsys)
    assert rc == 2 and err.count("\n") == 0, err
    assert "is the input" in err and "choose another output path" in err, err
    assert _files(tmp_path) == before
