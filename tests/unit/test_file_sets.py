"""Sets of files written as sets, temporaries that prove they are ours, read-only outputs
(issue 18, items 3 and 7). Pure I/O: no model runs here."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from inspector import _io
from inspector._io import (
    atomic_path,
    atomic_paths,
    is_our_temporary,
    replacing_read_only,
    temporary_name,
    write_text_atomic,
)
from inspector.corpus.aggregate import aggregate_values
from inspector.corpus.atlas import Atlas, distances_path, read_atlas, write_atlas
from inspector.errors import InputError
from inspector.frames import write_frames

NAMES = ("s.parquet", "s.rows.parquet", "s.topk.parquet")


def _old_set(folder: Path) -> dict[str, str]:
    old = {name: f"old {name}" for name in NAMES}
    for name, text in old.items():
        (folder / name).write_text(text)
    return old


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_a_set_replaces_every_file_together(tmp_path: Path) -> None:
    _old_set(tmp_path)
    with atomic_paths([tmp_path / n for n in NAMES]) as tmps:
        assert [t.parent for t in tmps] == [tmp_path] * 3
        for tmp, name in zip(tmps, NAMES, strict=True):
            tmp.write_text(f"new {name}")
        assert _contents(tmp_path)["s.parquet"] == "old s.parquet"  # nothing renamed yet
    assert _contents(tmp_path) == {name: f"new {name}" for name in NAMES}


@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_a_failure_after_the_first_file_leaves_the_old_files_and_no_temporary(
    tmp_path: Path, failure: BaseException
) -> None:
    old = _old_set(tmp_path)
    expected = type(failure) if isinstance(failure, KeyboardInterrupt) else InputError
    with pytest.raises(expected) as info, atomic_paths([tmp_path / n for n in NAMES]) as tmps:
        tmps[0].write_text("new heads")
        raise failure
    assert _contents(tmp_path) == old  # no temporary left, every old file as it was
    if isinstance(failure, OSError):
        message = str(info.value)
        assert "No space left on device" in message
        assert "nothing was written" in message and "are all as they were" in message
        for name in NAMES:
            assert name in message


def test_a_failed_rename_puts_back_the_files_already_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second rename fails (or an interrupt arrives there): the first is undone."""
    old = _old_set(tmp_path)
    real = os.replace
    calls = []

    def flaky(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error", str(src))
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(_io.os, "replace", flaky)
    failed = r"could not write .*s\.rows\.parquet: Input/output error"
    with pytest.raises(InputError, match=failed), atomic_paths([tmp_path / n for n in NAMES]) as ts:
        for tmp in ts:
            tmp.write_text("new")
    monkeypatch.setattr(_io.os, "replace", real)
    assert _contents(tmp_path) == old


def test_an_interrupt_between_renames_puts_back_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s.parquet").write_text("old heads")  # the sidecars are new: removed again
    real = os.replace
    calls = []

    def interrupted(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(_io.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_paths([tmp_path / n for n in NAMES]) as tmps:
        for tmp in tmps:
            tmp.write_text("new")
    monkeypatch.setattr(_io.os, "replace", real)
    assert _contents(tmp_path) == {"s.parquet": "old heads"}


def test_stale_members_of_a_set_are_removed_with_it_or_kept_on_failure(tmp_path: Path) -> None:
    old = _old_set(tmp_path)
    stale = [tmp_path / "s.topk.parquet"]
    with pytest.raises(RuntimeError), atomic_paths([tmp_path / "s.parquet"], remove=stale) as (t,):
        t.write_text("new")
        raise RuntimeError("boom")
    assert _contents(tmp_path) == old
    with atomic_paths([tmp_path / "s.parquet"], remove=stale) as (t,):
        t.write_text("new")
    assert _contents(tmp_path) == {"s.parquet": "new", "s.rows.parquet": "old s.rows.parquet"}


def test_a_set_naming_one_file_twice_is_refused(tmp_path: Path) -> None:
    twice = [tmp_path / "a.csv", tmp_path / "sub" / ".." / "a.csv"]
    with pytest.raises(InputError, match="names one file twice"), atomic_paths(twice):
        pass
    assert list(tmp_path.iterdir()) == [tmp_path / "sub"]


def test_frames_and_atlas_sets_fail_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Parquet writer that fails on the second file of a set: the first stays old."""
    import pyarrow.parquet as pq

    frames = {tmp_path / n: pd.DataFrame({"x": [1.0, 2.0]}) for n in NAMES}
    write_frames(frames)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = pq.write_table
    calls = []

    def full(table: object, where: object, **kw: object) -> None:
        calls.append(where)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(table, where, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pq, "write_table", full)
    changed = {p: f.assign(x=f["x"] * 10) for p, f in frames.items()}
    with pytest.raises(InputError, match="nothing was written"):
        write_frames(changed)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # an atlas with its distances and report
    rng = np.random.default_rng(0)
    agg = aggregate_values(rng.random((5, 1, 2, 2)), ["to_prev"])
    atlas = Atlas.from_aggregate(agg, {"model_name": "toy"})
    monkeypatch.setattr(pq, "write_table", real)
    written = write_atlas(atlas, tmp_path / "a.parquet", extra={tmp_path / "a.html": "<p>page</p>"})
    assert [p.name for p in written] == ["a.parquet", "a.distances.parquet", "a.html"]
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls.clear()
    monkeypatch.setattr(pq, "write_table", full)
    with pytest.raises(InputError, match=r"a\.parquet, a\.distances\.parquet and a\.html in /"):
        write_atlas(atlas, tmp_path / "a.parquet", extra={tmp_path / "a.html": "<p>new</p>"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old


def test_an_atlas_without_distances_removes_the_old_distances_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with_d = Atlas.from_aggregate(aggregate_values(rng.random((5, 1, 2, 2)), ["to_prev"]), {})
    without = Atlas(with_d.summary, None, {})
    write_atlas(with_d, tmp_path / "a.parquet")
    assert distances_path(tmp_path / "a.parquet").exists()
    write_atlas(without, tmp_path / "a.parquet")
    assert not distances_path(tmp_path / "a.parquet").exists()
    assert read_atlas(tmp_path / "a.parquet").distances is None


def test_temporary_names_prove_they_are_ours(tmp_path: Path) -> None:
    names = {temporary_name("out.csv") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert re.fullmatch(r"\.inspector-tmp-[0-9a-f]{16}-out\.csv", name)
        assert is_our_temporary(name, "out.csv") and not is_our_temporary(name, "out.cs")
    for theirs in (
        ".out.csv.backup.tmp",
        ".out.csv.abc123.tmp",
        "out.csv",
        ".inspector-tmp-x-out.csv",
    ):
        assert not is_our_temporary(theirs, "out.csv")
    long = "x" * 250 + ".csv"  # a 254-byte name still gets a temporary that fits 255 bytes
    write_text_atomic(tmp_path / long, "ok")
    assert (tmp_path / long).read_text() == "ok"
    user = tmp_path / ".out.csv.backup.tmp"
    user.write_text("the user's backup")
    write_text_atomic(tmp_path / "out.csv", "x")
    assert user.read_text() == "the user's backup"


def test_a_read_only_output_is_refused_unless_forced(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("keep me")
    target.chmod(0o444)
    with pytest.raises(InputError, match=r"out\.csv is read-only \(mode 0444\).*--force"):
        write_text_atomic(target, "new")
    with pytest.raises(InputError, match="read-only"), atomic_paths([tmp_path / "b.csv", target]):
        pass
    assert target.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv"
    ]
    write_text_atomic(target, "forced", force=True)
    assert target.read_text() == "forced"
    assert target.stat().st_mode & 0o777 == 0o444  # replaced, its mode kept
    with replacing_read_only(), atomic_path(target) as tmp:
        tmp.write_text("in the block")
    assert target.read_text() == "in the block"
    with pytest.raises(InputError, match="read-only"):
        write_text_atomic(target, "outside the block again")
