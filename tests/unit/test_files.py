"""Files (issue 15): stale temporaries, modes, full disks, bad lines, checkpoints tied to their
source, treebank validation. Pure I/O: no model runs here."""

from __future__ import annotations

import json
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

from inspector._io import atomic_path, clear_stale_temporaries, same_file, write_text_atomic
from inspector.corpus.aggregate import HeadAggregate, aggregate_values
from inspector.corpus.atlas import Atlas, write_atlas
from inspector.corpus.checkpoint import (
    RunState,
    load_checkpoint,
    open_run,
    save_checkpoint,
)
from inspector.corpus.options import ResumeOptions
from inspector.corpus.sources import BadLine, TextHash, text_source
from inspector.corpus.treebank import NO_HEADS, NOT_A_TREE, GoldSentence, read_treebank
from inspector.errors import InputError
from inspector.frames import write_frame

FINGERPRINT = {"model": "toy", "metrics": ["entropy"], "n_layers": 2, "n_heads": 2}


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------ temporaries, modes


def test_stale_temporaries_of_the_target_are_cleared_on_the_next_write(tmp_path: Path) -> None:
    """Only names that prove they are ours go: our prefix, 16 random hex digits, the name."""
    target = tmp_path / "r.html"
    stale = [
        tmp_path / ".inspector-tmp-0123456789abcdef-r.html",
        tmp_path / ".inspector-tmp-fedcba9876543210-r.html",
    ]
    kept = [
        tmp_path / ".inspector-tmp-0123456789abcdef-r.html.x",  # another target's (r.html.x)
        tmp_path / ".inspector-tmp-0123456789abcdef-other.html",
        tmp_path / ".inspector-tmp-0123456789ABCDEF-r.html",  # not our alphabet
        tmp_path / ".inspector-tmp-0123456789abcde-r.html",  # 15 digits
        tmp_path / ".inspector-tmp-r.html",
        tmp_path / ".r.html.ab12cd34.tmp",  # the old scheme's name: could be anyone's
        tmp_path / ".r.html.backup.tmp",  # the user's own
        tmp_path / ".r.html.ab12cd34.bak",
    ]
    for p in stale + kept:
        p.write_bytes(b"x" * 1000)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert _hidden(tmp_path) == sorted(p.name for p in kept)


def test_a_live_writers_temporary_is_left_alone(tmp_path: Path) -> None:
    """A temporary locked by a running writer (another process) survives a second writer."""
    target = tmp_path / "big.parquet"
    code = textwrap.dedent(
        f"""
        import signal, time
        from inspector._io import atomic_path
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # no handler, even under nohup
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("first writer")
            print("HOLDING", tmp.name, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "HOLDING"
        assert clear_stale_temporaries(target) == []
        assert (tmp_path / line[1]).exists()
        write_text_atomic(target, "second writer")
        assert (tmp_path / line[1]).exists()  # still the first writer's
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert [p.name for p in clear_stale_temporaries(target)] == [line[1]]
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_writer_leaves_a_temporary_that_the_next_write_clears(
    tmp_path: Path, sig: signal.Signals
) -> None:
    target = tmp_path / "atlas.parquet"
    target.write_text("previous")
    code = textwrap.dedent(
        f"""
        import signal, time
        from inspector._io import atomic_path
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # no handler, even under nohup
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"x" * 100_000)
                f.flush()
                print("WRITING", flush=True)
                time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "WRITING"
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    assert target.read_text() == "previous"
    # no handler in this bare process: SIGTERM kills like SIGKILL and leaves the temporary
    assert len(_hidden(tmp_path)) == 1
    write_text_atomic(target, "next")
    assert target.read_text() == "next" and _hidden(tmp_path) == []


def test_rewrite_keeps_the_mode_and_a_new_file_honours_the_umask(tmp_path: Path) -> None:
    private = tmp_path / "private.csv"
    private.write_text("old")
    private.chmod(0o600)
    write_text_atomic(private, "new")
    assert private.stat().st_mode & 0o777 == 0o600
    shared = tmp_path / "shared.csv"
    shared.write_text("old")
    shared.chmod(0o664)
    write_text_atomic(shared, "new")
    assert shared.stat().st_mode & 0o777 == 0o664
    old = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "new.csv", "x")
        os.umask(0o077)
        write_text_atomic(tmp_path / "newer.csv", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "new.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "newer.csv").stat().st_mode & 0o777 == 0o600


def test_same_file_sees_links(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text("x")
    (tmp_path / "link.txt").symlink_to(a)
    os.link(a, tmp_path / "hard.txt")
    assert same_file(a, tmp_path / "link.txt") and same_file(a, tmp_path / "hard.txt")
    assert same_file(tmp_path / "sub" / ".." / "a.txt", a)
    assert not same_file(a, tmp_path / "b.txt")


# ------------------------------------------------------------------------------ full disk


def _atlas() -> Atlas:
    rng = np.random.default_rng(0)
    agg = aggregate_values(rng.random((20, 1, 2, 2)), ["to_prev"], distances_enabled=False)
    return Atlas.from_aggregate(agg, {"model_name": "toy"})


def test_full_disk_on_every_writer(small_disk: Path) -> None:
    """A real 256 KiB filesystem: each writer fails with our error and leaves nothing."""
    big = pd.DataFrame({"weight": np.random.default_rng(0).random(200_000)})
    writers = {
        "text": lambda: write_text_atomic(small_disk / "r.html", "x" * 1_000_000),
        "csv": lambda: write_frame(big, small_disk / "f.csv"),
        "parquet": lambda: write_frame(big, small_disk / "f.parquet"),
        "checkpoint": lambda: save_checkpoint(
            small_disk / "a.ckpt.npz",
            RunState(_noise_aggregate(), 3, TextHash()),
            FINGERPRINT,
            text_source(["a", "b", "c"]),
        ),
    }
    for name, write in writers.items():
        with pytest.raises(InputError, match=r"could not write .*No space left on device"):
            write()
        assert list(small_disk.iterdir()) == [], name
    write_atlas(_atlas(), small_disk / "a.parquet")  # a small file still fits
    assert [p.name for p in small_disk.iterdir()] == ["a.parquet"]


def _noise_aggregate() -> HeadAggregate:
    """An aggregate whose histograms are random counts (compresses badly: fills a disk)."""
    agg = HeadAggregate.empty(["entropy"], 2, 2, bins=200_000, distances=False)
    rng = np.random.default_rng(1)
    hist = rng.integers(0, 2**40, agg.hist.shape)
    return HeadAggregate(**{**agg.__dict__, "hist": hist})


# ------------------------------------------------------------------------------ bad lines


def test_text_file_bad_line_is_reported_with_its_number_or_skipped(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"\xef\xbb\xbffirst\nsecond ok\nbad \xff\xfe line\n\nlast\n")
    with pytest.raises(InputError, match=r"corpus.txt, line 3: not valid UTF-8 \(byte 0xff"):
        list(text_source(path))
    items = list(text_source(path, skip_bad_lines=True))
    assert items == ["first", "second ok", BadLine(3, "not UTF-8"), "", "last"]


def test_csv_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(
        b'id,text\n1,"fine, quoted"\n2,bad \xff byte\n3,too,many\n\n4,"two\nlines"\n5,end\n'
    )
    with pytest.raises(InputError, match=r"t.csv, line 3: not valid UTF-8"):
        list(text_source(path, column="text"))
    items = list(text_source(path, column="text", skip_bad_lines=True))
    assert items == [
        "fine, quoted",
        BadLine(3, "not UTF-8"),
        BadLine(4, "3 fields"),
        "two\nlines",
        "end",
    ]
    path.write_text("id,text\n1,a\n2,b,c\n")
    with pytest.raises(InputError, match=r"line 3: 3 field\(s\), the header has 2"):
        list(text_source(path, column="text"))


def test_conllu_source_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "t.conllu"
    good = "# text = Hi there\n1\tHi\thi\tINTJ\t_\t_\t0\troot\t_\t_\n\n"
    path.write_bytes(good.encode() + b"# text = bad \xff\n1\tbad\t_\t_\t_\t_\t0\troot\t_\t_\n\n")
    with pytest.raises(InputError, match=r"t.conllu, line 4: not valid UTF-8"):
        list(text_source(path))
    assert list(text_source(path, skip_bad_lines=True)) == [
        "Hi there",
        BadLine(4, "unreadable CoNLL-U line"),
    ]


# ----------------------------------------------------------------------- checkpoint guard


def _checkpointed(tmp_path: Path, source: object, n: int) -> Path:
    """A checkpoint of the first ``n`` items of ``source`` (the aggregate is a stand-in)."""
    src = text_source(source)
    items = list(src)[:n]
    state = RunState(_small_aggregate(), n, TextHash().update(items))
    return save_checkpoint(tmp_path / "c.ckpt.npz", state, FINGERPRINT, src)


def _small_aggregate() -> HeadAggregate:
    return HeadAggregate.empty(["entropy"], 2, 2, bins=10, distances=False)


def _resume(source: object, ckpt: Path, **kw: object) -> tuple[RunState, list[object]]:
    state, it = open_run(
        text_source(source),
        _small_aggregate(),
        kw.pop("fingerprint", FINGERPRINT),  # type: ignore[arg-type]
        ResumeOptions(checkpoint=ckpt, resume=True, limit=kw.pop("limit", None)),  # type: ignore[arg-type]
    )
    return state, list(it)


LINES = [f"sentence number {i}." for i in range(10)]

#: (id, how to change the corpus after the checkpoint, a phrase of the refusal)
SOURCE_CHANGES = [
    ("other-file", "other", "was written for"),
    ("appended", "append", "has changed since"),
    ("edited-same-size-and-time", "edit", "are not the ones it counted"),
    ("reordered-same-size-and-time", "reorder", "are not the ones it counted"),
    ("edited-after-the-counted-texts", "edit-later", "its content is not the same"),
    ("truncated", "truncate", "has changed since"),
]


@pytest.mark.parametrize("case", SOURCE_CHANGES, ids=[c[0] for c in SOURCE_CHANGES])
def test_resume_refuses_another_or_a_changed_file(tmp_path: Path, case: tuple) -> None:
    _, change, phrase = case
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    ckpt = _checkpointed(tmp_path, corpus, 6)
    stat = corpus.stat()
    target = corpus
    if change == "other":
        target = tmp_path / "corpusB.txt"
        target.write_text("\n".join(reversed(LINES)) + "\n")
    elif change == "append":
        corpus.write_text("\n".join([*LINES, "more"]) + "\n")
    elif change == "edit-later":  # same size and time; only the whole file's hash can tell
        corpus.write_text("\n".join([*LINES[:8], LINES[8].upper(), LINES[9]]) + "\n")
        os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change in ("edit", "reorder"):
        lines = list(LINES)
        if change == "edit":
            lines[2] = lines[2].replace("number", "NUMBER")
        else:
            lines[1], lines[4] = lines[4], lines[1]
        corpus.write_text("\n".join(lines) + "\n")
        os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # hide it from size/mtime
    elif change == "truncate":
        corpus.write_text("\n".join(LINES[:3]) + "\n")
    with pytest.raises(InputError, match=phrase) as info:
        _resume(target, ckpt)
    message = str(info.value)
    assert message.startswith(f"cannot resume from {ckpt}") and "delete the checkpoint" in message
    assert "\n" not in message


def test_resume_of_the_same_file_continues_after_the_counted_texts(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    ckpt = _checkpointed(tmp_path, corpus, 6)
    state, rest = _resume(corpus, ckpt)
    assert state.n_done == 6 and rest == LINES[6:]
    # only touched, or rewritten with the same content: the same corpus (content, not mtime)
    stat = corpus.stat()
    os.utime(corpus, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _resume(corpus, ckpt)[1] == LINES[6:]
    corpus.write_text("\n".join(LINES) + "\n")
    assert _resume(corpus, ckpt)[1] == LINES[6:]
    assert state.digest.hexdigest() == TextHash().update(LINES[:6]).hexdigest()


def test_resume_of_in_memory_texts_is_checked_by_their_hash(tmp_path: Path) -> None:
    ckpt = _checkpointed(tmp_path, iter(LINES), 6)  # a generator, resumed with a list: fine
    state, rest = _resume(list(LINES), ckpt)
    assert state.n_done == 6 and rest == LINES[6:]
    reordered = [LINES[1], LINES[0], *LINES[2:]]
    with pytest.raises(InputError, match="first 6 texts of 10 texts are not the ones"):
        _resume(reordered, ckpt)
    with pytest.raises(InputError, match="it counted 6 texts but 3 texts has 3"):
        _resume(LINES[:3], ckpt)
    edited = pd.DataFrame({"text": LINES})
    edited.loc[5, "text"] = "changed"
    with pytest.raises(InputError, match="not the ones it counted"):
        _resume(edited, ckpt)
    state, rest = _resume(pd.DataFrame({"text": LINES}), ckpt)
    assert rest == LINES[6:]


def test_resume_refuses_other_settings_kinds_and_limits(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    ckpt = _checkpointed(tmp_path, corpus, 6)
    with pytest.raises(InputError, match=r"other settings .metrics differ"):
        _resume(corpus, ckpt, fingerprint={**FINGERPRINT, "metrics": ["to_prev"]})
    with pytest.raises(InputError, match="written for a text file, this run reads a list"):
        _resume(LINES, ckpt)
    with pytest.raises(InputError, match="already counted 6 texts, more than the limit 4"):
        _resume(corpus, ckpt, limit=4)
    with pytest.raises(InputError, match="the corpus file itself"):
        open_run(
            text_source(corpus), _small_aggregate(), FINGERPRINT,
            ResumeOptions(checkpoint=corpus, resume=True),
        )  # fmt: skip


def test_resume_refuses_another_dataset_by_fingerprint(tmp_path: Path) -> None:
    class Dataset:
        column_names = ("text",)

        def __init__(self, fingerprint: str) -> None:
            self._fingerprint = fingerprint

        def __len__(self) -> int:
            return len(LINES)

        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter({"text": t} for t in LINES)

    ckpt = _checkpointed(tmp_path, Dataset("abc"), 4)
    assert _resume(Dataset("abc"), ckpt)[0].n_done == 4
    with pytest.raises(InputError, match="the dataset is another one"):
        _resume(Dataset("def"), ckpt)


def test_broken_and_old_checkpoints_are_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(LINES) + "\n")
    ckpt = _checkpointed(tmp_path, corpus, 6)
    raw = ckpt.read_bytes()
    broken = {
        "empty": b"",
        "truncated": raw[: len(raw) // 2],
        "bit-flipped": raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:],
        "text": b"hello",
    }
    for name, data in broken.items():
        ckpt.write_bytes(data)
        with pytest.raises(InputError, match="not a readable atlas checkpoint") as info:
            _resume(corpus, ckpt)
        assert "delete it to start over" in str(info.value), name
    old = {"version": 1, "n_done": 6, "fingerprint": FINGERPRINT}
    arrays = _small_aggregate().to_arrays()
    arrays["checkpoint"] = np.frombuffer(json.dumps(old).encode(), dtype=np.uint8)
    with ckpt.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"checkpoint format 1 .*records its source"):
        _resume(corpus, ckpt)


def test_checkpoints_are_compressed(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    agg = aggregate_values(rng.random((50, 12, 6, 12)), [f"to_{i}" for i in range(12)])
    path = save_checkpoint(
        tmp_path / "c.npz", RunState(agg, 50, TextHash()), FINGERPRINT, text_source(["x"])
    )
    raw = sum(a.nbytes for a in agg.to_arrays().values())
    assert path.stat().st_size < raw / 20
    back = load_checkpoint(path)
    np.testing.assert_array_equal(back.aggregate.hist, agg.hist)
    assert back.n_done == 50 and back.source["identity"] == {"kind": "list"}


def test_text_hash_is_order_and_boundary_sensitive() -> None:
    def digest(items: list[object]) -> str:
        return TextHash().update(items).hexdigest()

    assert digest(["ab", "c"]) != digest(["a", "bc"])
    assert digest(["a", "b"]) != digest(["b", "a"])
    assert digest([None]) != digest([""]) != digest([BadLine(1, "x")])
    assert digest(["a\udcff"]) == digest(["a\udcff"])  # lone surrogates hash too
    h = TextHash().update(["a"])
    assert h.copy().update(["b"]).hexdigest() == digest(["a", "b"])
    assert h.hexdigest() == digest(["a"])


def test_atomic_path_is_still_atomic_under_interrupts(tmp_path: Path) -> None:
    target = tmp_path / "c.npz"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and _hidden(tmp_path) == []


# -------------------------------------------------------------------------------- treebank


def _conllu(tmp_path: Path, text: str, name: str = "t.conllu") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


ROW = "{i}\t{w}\t_\tX\t_\t_\t{h}\t{r}\t_\t_"


def _sentence(heads: list[str], sent_id: str) -> str:
    words = [f"w{i}" for i in range(1, len(heads) + 1)]
    rows = [
        ROW.format(i=i, w=w, h=h, r="root" if h == "0" else "dep")
        for i, (w, h) in enumerate(zip(words, heads, strict=True), 1)
    ]
    return f"# sent_id = {sent_id}\n" + "\n".join(rows) + "\n\n"


def test_treebank_problems_are_found() -> None:
    assert GoldSentence(("a", "b"), (2, 0), ("det", "root")).problem is None
    assert GoldSentence(("a", "b"), (-1, 0), ("_", "root")).problem == NO_HEADS
    assert GoldSentence(("a", "b", "c"), (2, 3, 2), ("x", "y", "z")).problem == NOT_A_TREE
    assert GoldSentence(("a",), (1,), ("x",)).problem == NOT_A_TREE  # its own head
    assert GoldSentence(("a", "b"), (0, 0), ("root", "root")).problem is None  # two roots


def test_treebank_reading_reports_lines(tmp_path: Path) -> None:
    three = _conllu(tmp_path, "1\tThe\tDET\n2\tcat\tNOUN\n\n", "three.conllu")
    with pytest.raises(InputError, match=r"three.conllu, line 1: 3 column\(s\).*has 10"):
        list(read_treebank(three))
    bad = tmp_path / "bad.conllu"
    bad.write_bytes(
        _sentence(["2", "0"], "ok").encode() + b"1\tb\xffd\t_\tX\t_\t_\t0\troot\t_\t_\n"
    )
    with pytest.raises(InputError, match=r"bad.conllu, line 5: not valid UTF-8"):
        list(read_treebank(bad))
    assert [s.sent_id for s in read_treebank(bad, skip_bad_lines=True)] == ["ok"]
    past = _conllu(tmp_path, _sentence(["5", "0"], "p"), "past.conllu")
    with pytest.raises(InputError, match="line 1: a HEAD points past the last word"):
        list(read_treebank(past))
    heads = _conllu(tmp_path, _sentence(["_", "_"], "u") + _sentence(["2", "3", "2"], "c"))
    sentences = list(read_treebank(heads))
    assert [s.problem for s in sentences] == [NO_HEADS, NOT_A_TREE]
    assert [s.line for s in sentences] == [1, 5]


def test_killed_process_during_long_write_keeps_old_file(tmp_path: Path) -> None:
    """SIGHUP to a process without handlers: the old file stays, the next write cleans up."""
    target = tmp_path / "x.csv"
    target.write_text("old")
    code = textwrap.dedent(
        f"""
        import signal, time
        from inspector._io import atomic_path
        signal.signal(signal.SIGHUP, signal.SIG_DFL)  # no handler, even under nohup
        with atomic_path({str(target)!r}) as tmp:
            tmp.write_text("half")
            print("W", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "W"
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=30)
    deadline = time.time() + 5
    while time.time() < deadline and not _hidden(tmp_path):
        time.sleep(0.05)
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert _hidden(tmp_path) == [] and target.read_text() == "new"
