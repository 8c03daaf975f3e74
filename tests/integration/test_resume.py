"""Atlas runs that stop and resume (issue 15): kills and signals at several points, checkpoints
tied to their corpus, failures that leave nothing behind, bad lines, outputs that are inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector.cli import main
from inspector.corpus.checkpoint import load_checkpoint

from factories import CORPUS, cli_fails, numeric_stats, small_atlas

LINES = [f"{text} Line {i}." for i in range(12) for text in CORPUS[:5]]  # 60 texts


def _corpus(folder: Path, name: str = "corpus.txt", lines: list[str] = LINES) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _atlas_args(model: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "atlas", str(model), str(corpus), "-o", str(out), "--batch-size", "4",
        "--metrics", "entropy,to_prev,sink_share", "--no-progress", *extra,
    ]  # fmt: skip


#: A CLI run that prints ``BATCH k`` after each batch and checkpoints after every batch;
#: ``SAVE_PAUSE=k`` makes it pause inside the k-th checkpoint write (to be killed there).
RUNNER = textwrap.dedent(
    """
    import os, sys, time
    import inspector.api.corpus as api
    import inspector.corpus.engine as engine
    import inspector.corpus.checkpoint as checkpoint
    api.atlas.__kwdefaults__["checkpoint_every"] = 0.0
    real_measure, real_save = engine.measure_batch, checkpoint.save_checkpoint
    counts = {"batch": 0, "save": 0}
    def measure(*a, **k):
        out = real_measure(*a, **k)
        counts["batch"] += 1
        print("BATCH", counts["batch"], flush=True)
        time.sleep(0.02)
        return out
    def save(path, *a, **k):
        counts["save"] += 1
        if counts["save"] == int(os.environ.get("SAVE_PAUSE", "0")):
            from inspector import _io
            with _io.atomic_path(path) as tmp:
                tmp.write_bytes(b"half a checkpoint")
                print("SAVING", flush=True)
                time.sleep(60)
        return real_save(path, *a, **k)
    engine.measure_batch = measure
    engine.save_checkpoint = save
    from inspector.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _run_until(argv: list[str], marker: str, sig: int, env: dict[str, str] | None = None):
    """Start the CLI, wait for ``marker`` on its stdout, send ``sig``; (returncode, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    assert proc.stdout is not None
    deadline = time.time() + 120
    line = ""
    try:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line or line.strip() == marker:
                break
        assert line.strip() == marker, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode, err


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_kills_at_five_points_then_resume_equals_an_uninterrupted_run(
    tiny_dirs: dict[str, Path], tmp_path: Path
) -> None:
    """SIGTERM, SIGHUP, SIGKILL, SIGKILL inside a checkpoint write and SIGINT, each followed by
    --resume: the final Parquet files equal an uninterrupted run's, value for value."""
    model = tiny_dirs["bert"]
    corpus = _corpus(tmp_path)
    out = tmp_path / "a.parquet"
    ckpt = tmp_path / "a.parquet.ckpt.npz"
    args = _atlas_args(model, corpus, out)
    kills = [
        # (signal, wait for, env, expected exit code, last stderr line starts with)
        (signal.SIGTERM, "BATCH 2", {}, 143, "inspector: stopped by SIGTERM; progress saved"),
        (signal.SIGHUP, "BATCH 2", {}, 129, "inspector: stopped by SIGHUP; progress saved"),
        (signal.SIGKILL, "BATCH 2", {}, -9, None),
        (signal.SIGKILL, "SAVING", {"SAVE_PAUSE": "2"}, -9, None),
        (signal.SIGINT, "BATCH 2", {}, 130, "inspector: interrupted; progress saved"),
    ]
    done = []
    for i, (sig, marker, env, code, message) in enumerate(kills):
        rc, err = _run_until(args + (["--resume"] if i else []), marker, sig, env)
        assert rc == code, err
        if message is not None:
            assert err.strip().splitlines()[-1].startswith(message), err
            assert _hidden(tmp_path) == []  # no temporary left by a handled signal
        if marker == "SAVING":  # killed mid-write: its temporary stays until the next write
            assert len(_hidden(tmp_path)) == 1
        assert not out.exists()
        n_done = load_checkpoint(ckpt).n_done
        assert n_done % 4 == 0 and n_done > (done[-1] if done else 0)
        done.append(n_done)
    assert main([*args, "--resume"]) == 0
    assert not ckpt.exists() and _hidden(tmp_path) == []
    resumed = pd.read_parquet(out)
    resumed_dist = pd.read_parquet(tmp_path / "a.distances.parquet")
    whole = tmp_path / "whole.parquet"
    assert main(_atlas_args(model, corpus, whole)) == 0
    pd.testing.assert_frame_equal(resumed, pd.read_parquet(whole))  # identical, not close
    pd.testing.assert_frame_equal(
        resumed_dist, pd.read_parquet(tmp_path / "whole.distances.parquet")
    )
    assert done[-1] < len(LINES)


def test_resume_with_another_or_an_edited_corpus_is_refused(
    tiny: dict[str, object], tiny_dirs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """The issue's case: 8 texts of corpus A counted, then --resume with corpus B."""
    corpus_a = _corpus(tmp_path, "corpusA.txt")
    corpus_b = _corpus(tmp_path, "corpusB.txt", list(reversed(LINES)))
    out = tmp_path / "same.parquet"
    ckpt = tmp_path / "same.parquet.ckpt.npz"
    metrics = ["entropy", "to_prev", "sink_share"]
    small_atlas(tiny["bert"], corpus_a, batch_size=4, checkpoint=ckpt, limit=8, metrics=metrics)
    assert load_checkpoint(ckpt).n_done == 8
    model = tiny_dirs["bert"]
    err = cli_fails(_atlas_args(model, corpus_b, out, "--resume"), capsys, "cannot resume")
    assert f"written for {corpus_a}, not {corpus_b}" in err and "delete the checkpoint" in err
    lines = list(LINES)
    lines[0], lines[1] = lines[1], lines[0]  # reordered, same size
    stat = corpus_a.stat()
    corpus_a.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.utime(corpus_a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    err = cli_fails(_atlas_args(model, corpus_a, out, "--resume"), capsys, "cannot resume")
    assert "the first 8 texts" in err and "edited or reordered" in err
    corpus_a.write_text("\n".join(lines) + "\nappended\n", encoding="utf-8")
    cli_fails(_atlas_args(model, corpus_a, out, "--resume"), capsys, "has changed since")
    assert not out.exists() and ckpt.exists()


def test_resume_equals_uninterrupted_for_lists(tiny: dict[str, object], tmp_path: Path) -> None:
    model = tiny["gpt2"]
    ckpt = tmp_path / "c.npz"
    small_atlas(model, LINES, batch_size=4, checkpoint=ckpt, limit=20)
    resumed = small_atlas(model, LINES, batch_size=4, checkpoint=ckpt, resume=True)
    whole = small_atlas(model, LINES, batch_size=4)
    assert resumed.metadata["resumed_from"] == 20
    np.testing.assert_array_equal(numeric_stats(resumed.summary), numeric_stats(whole.summary))
    with pytest.raises(Exception, match="not the ones it counted"):
        small_atlas(model, LINES[::-1], batch_size=4, checkpoint=ckpt, resume=True)


@pytest.mark.parametrize(
    "case",
    [
        ("empty-file", b"", []),
        ("blank-lines", b"\n  \n\t\n", []),
        ("limit-0", "\n".join(LINES).encode(), ["--limit", "0"]),
        ("non-utf8-first-line", b"\xff\xfe bad\nA fine line.\n", []),
    ],
    ids=lambda c: c[0],
)
def test_a_failed_atlas_that_measured_nothing_leaves_no_checkpoint(
    tiny_dirs: dict[str, Path], tmp_path: Path, capsys, case: tuple
) -> None:
    _, data, extra = case
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(data)
    out = tmp_path / "a.parquet"
    argv = _atlas_args(tiny_dirs["bert"], corpus, out, *extra)
    first = cli_fails(argv, capsys, "")
    assert list(tmp_path.iterdir()) == [corpus]
    second = cli_fails(argv, capsys, "")  # a plain rerun is not blocked by a checkpoint
    assert first == second and "unfinished" not in second


def test_bad_line_in_the_middle_then_skip_bad_lines_and_resume(
    tiny_dirs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    corpus = tmp_path / "corpus.txt"
    body = [line.encode() for line in LINES[:30]]
    body[13] = b"caf\xe9 latin-1 line"
    corpus.write_bytes(b"\n".join(body) + b"\n")
    out = tmp_path / "a.parquet"
    model = tiny_dirs["bert"]
    err = cli_fails(_atlas_args(model, corpus, out), capsys, "corpus.txt, line 14: not valid UTF-8")
    assert "--skip-bad-lines" in err
    assert load_checkpoint(tmp_path / "a.parquet.ckpt.npz").n_done == 12  # 3 whole batches
    assert main(_atlas_args(model, corpus, out, "--skip-bad-lines", "--resume")) == 0
    summary = capsys.readouterr().out
    assert "29 texts" in summary and "1 skipped (1 unreadable)" in summary
    fresh = tmp_path / "fresh.parquet"
    assert main(_atlas_args(model, corpus, fresh, "--skip-bad-lines")) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(fresh))


def test_unusable_texts_are_counted_as_skipped(tiny: dict[str, object]) -> None:
    """NUL lines, combining marks, variation selectors, lone surrogates: skipped, not NaN."""
    odd = ["\x00", "\x00\x00 \x1b", "\u0301\u0301", "\ufe0f", "a\udcff b", "", None]
    mixed = small_atlas(tiny["bert"], [*CORPUS, *odd], batch_size=3)
    clean = small_atlas(tiny["bert"], CORPUS, batch_size=3)
    assert mixed.metadata["n_skipped"] == len(odd) and mixed.metadata["n_texts"] == 6
    np.testing.assert_allclose(
        numeric_stats(mixed.summary), numeric_stats(clean.summary), atol=1e-6
    )
    assert not mixed.summary["mean"].isna().any()
    # SentencePiece keeps a combining mark as <unk>: a word of the text, so it is measured
    t5 = small_atlas(tiny["t5"], [*CORPUS, *odd], batch_size=3)
    assert (t5.metadata["n_skipped"], t5.metadata["n_texts"]) == (5, 8)


def test_an_output_that_is_an_input_is_refused(
    tiny_dirs: dict[str, Path], tmp_path: Path, capsys
) -> None:
    table = tmp_path / "corpus.parquet"
    pd.DataFrame({"text": LINES[:8]}).to_parquet(table)
    before = table.read_bytes()
    model = str(tiny_dirs["bert"])
    beside = tmp_path / "t.distances.parquet"  # where -o t.parquet puts its distances
    pd.DataFrame({"text": LINES[:8]}).to_parquet(beside)
    cases = [
        ["atlas", model, f"{table}:text", "-o", str(table)],
        ["atlas", model, str(beside), "-o", str(tmp_path / "t.parquet")],
        ["atlas", model, str(table), "-o", str(tmp_path / "a.parquet"), "--checkpoint", str(table)],
    ]
    os.link(table, tmp_path / "linked.parquet")
    cases.append(["atlas", model, str(table), "-o", str(tmp_path / "linked.parquet")])
    texts = tmp_path / "texts.csv"
    texts.write_text("a\nb\n")
    cases.append(["heads", model, "--file", str(texts), "-o", str(texts)])
    for argv in cases:
        cli_fails(argv, capsys, "itself; writing it would destroy the input")
    assert table.read_bytes() == before and texts.read_text() == "a\nb\n"
