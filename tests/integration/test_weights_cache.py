"""The weights cache: a GGUF file is dequantised once, kept as checked safetensors, reloaded.

Runs on the tiny LLaMA-style GGUF of ``factories.build_tiny_gguf``; every test points
``INSPECTOR_CACHE_DIR`` at its own temporary folder (never the user's cache).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import InspectorWarning
from inspector.models import cache, loading
from inspector.models.loading import LoadOptions, _load_from_source

TEXT = "The cat sat on the mat."
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(folder))
    return folder


def _entry(gguf: Path) -> Path:
    return cache.gguf_entry(cache.file_sha256(gguf))


def _direct(gguf: Path) -> inspector.LoadedModel:
    """The GGUF file loaded without the cache, as inspector did before it had one."""
    bundle = _load_from_source(
        "direct", str(gguf.parent), None, None, LoadOptions(gguf_file=gguf.name)
    )
    return inspector.load(bundle)


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.ENV, str(tmp_path / "mine"))
    assert cache.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "inspector"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == Path.home() / ".cache" / "inspector"


def test_the_suite_never_uses_the_user_cache():
    home = Path.home() / ".cache" / "inspector"
    assert os.environ[cache.ENV] and cache.cache_dir() != home


def test_first_load_fills_the_cache_and_later_loads_read_it(tiny_gguf, cache_dir, capfd):
    first = inspector.load(str(tiny_gguf))
    entry = _entry(tiny_gguf)
    assert first.bundle.extra["weights_cache"] == str(entry)
    assert first.bundle.source == str(tiny_gguf.parent)  # the GGUF, not the cache folder
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert manifest["gguf_sha256"] == entry.name
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # no temp left
    built = (entry / "model.safetensors").stat().st_mtime_ns

    second = inspector.load(str(tiny_gguf))
    assert (entry / "model.safetensors").stat().st_mtime_ns == built  # read, not rebuilt
    err = capfd.readouterr().err  # no bars: the first load's one line, nothing from the second
    assert err.count("\n") == 1 and "first load: dequantising" in err, err

    # The numbers are the GGUF's own: cached weights equal the dequantised GGUF exactly.
    direct = _direct(tiny_gguf)
    ours, theirs = second.model.state_dict(), direct.model.state_dict()
    assert set(ours) == set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    a, b = second.inspect(TEXT), direct.inspect(TEXT)
    assert a.tokens == b.tokens
    np.testing.assert_array_equal(a.attention, b.attention)
    assert second.tokenizer.chat_template == direct.tokenizer.chat_template
    g1 = second.generate("The cat", max_new_tokens=4)
    g2 = direct.generate("The cat", max_new_tokens=4)
    assert g1.tokens == g2.tokens
    np.testing.assert_array_equal(g1.attention, g2.attention)


@pytest.mark.parametrize(
    "damage",
    ["flip-a-byte", "truncate", "no-manifest", "bad-manifest", "other-version", "missing-file"],
)
def test_a_damaged_entry_is_detected_and_rebuilt(tiny_gguf, cache_dir, damage):
    reference = inspector.load(str(tiny_gguf)).inspect(TEXT).attention
    entry = _entry(tiny_gguf)
    weights = entry / "model.safetensors"
    manifest = entry / cache.MANIFEST
    if damage == "flip-a-byte":
        data = bytearray(weights.read_bytes())
        data[-5] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        with weights.open("r+b") as fh:
            fh.truncate(weights.stat().st_size // 2)
    elif damage == "no-manifest":  # an entry a crash left unfinished
        manifest.unlink()
    elif damage == "bad-manifest":
        manifest.write_text("{not json")
    elif damage == "other-version":
        meta = json.loads(manifest.read_text())
        meta["transformers"] = "0.0.1"
        manifest.write_text(json.dumps(meta))
    else:
        (entry / "tokenizer.json").unlink()
    assert cache.check_entry(entry) is not None
    again = inspector.load(str(tiny_gguf))
    assert cache.check_entry(entry) is None  # rebuilt whole
    np.testing.assert_array_equal(again.inspect(TEXT).attention, reference)


_KILLED_WRITER = """
import os, signal, sys
import inspector
from inspector.models import cache

def write_then_die(model, tokenizer, folder):
    (folder / "model.safetensors").write_bytes(b"x" * 4096)  # part of what a load writes
    os.kill(os.getpid(), signal.SIGKILL)

cache.save_folder = write_then_die
inspector.load(sys.argv[1])
"""


def test_a_killed_first_load_leaves_a_folder_the_next_load_removes(tiny_gguf, cache_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tiny_gguf)], env=env, capture_output=True
    )
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    left = [p for p in (cache_dir / "gguf").iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and (left[0] / "model.safetensors").exists()
    # Young, but its writer is dead: the next load removes it (at once, not after an hour).
    m = inspector.load(str(tiny_gguf))
    assert not left[0].exists()
    assert "weights_cache" in m.bundle.extra
    assert [p.name for p in (cache_dir / "gguf").iterdir()] == [_entry(tiny_gguf).name]


def test_cleaning_spares_live_writers_and_folders_that_are_not_ours(tiny_gguf, cache_dir):
    gguf = cache_dir / "gguf"
    gguf.mkdir(parents=True)
    live = gguf / ".0123456789abcdef.k2j4_9xz.tmp"  # a name store() makes
    dead = gguf / ".fedcba9876543210.a1b2c3d4.tmp"
    theirs = gguf / ".notes.backup.tmp"  # not a name store() makes
    for folder in (live, dead, theirs):
        folder.mkdir()
        os.utime(folder, (0, 0))
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a writer building this folder right now
        inspector.load(str(tiny_gguf))
        assert live.exists() and theirs.exists()
        assert not dead.exists()
    finally:
        os.close(fd)
    inspector.load(str(tiny_gguf))
    assert not live.exists() and theirs.exists()  # its writer has gone


def test_the_cache_is_private_whatever_the_umask(tiny_gguf, cache_dir):
    old = os.umask(0)
    try:
        inspector.load(str(tiny_gguf))
    finally:
        os.umask(old)
    entry = _entry(tiny_gguf)
    for folder in (cache_dir, cache_dir / "gguf", entry):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    for path in entry.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def _owned_by_someone_else(entry: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    os.chown(entry, 4321, 4321)


@pytest.mark.parametrize(
    "tamper",
    ["entry-owned-by-another-user", "entry-world-writable", "file-group-writable", "symlink"],
)
def test_an_entry_others_could_write_is_refused_and_rebuilt(tiny_gguf, cache_dir, tamper):
    reference = inspector.load(str(tiny_gguf)).inspect(TEXT).attention
    entry = _entry(tiny_gguf)
    if tamper == "entry-owned-by-another-user":
        _owned_by_someone_else(entry)
        why = "owned by user id 4321"
    elif tamper == "entry-world-writable":
        os.chmod(entry, 0o777)
        why = "writable by group and others"
    elif tamper == "file-group-writable":
        os.chmod(entry / "tokenizer.json", 0o660)
        why = "tokenizer.json is writable by group"
    else:  # the whole entry replaced by a link to a folder someone else controls
        elsewhere = cache_dir.parent / "elsewhere"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
        why = "is a symbolic link"
    assert cache.check_entry(entry) is not None
    with pytest.warns(InspectorWarning, match=f"refused: .*{why}.*rebuilt from the GGUF"):
        again = inspector.load(str(tiny_gguf))
    assert cache.check_entry(entry) is None  # rebuilt, ours and private
    assert not entry.is_symlink() and entry.stat().st_uid == os.geteuid()
    np.testing.assert_array_equal(again.inspect(TEXT).attention, reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        inspector.load(str(tiny_gguf))  # warned once: the rebuilt entry is used quietly


def test_a_cache_folder_others_can_write_is_not_used(tiny_gguf, cache_dir):
    inspector.load(str(tiny_gguf))
    os.chmod(cache_dir / "gguf", 0o777)
    with pytest.warns(InspectorWarning, match="writable by group and others.*loaded directly"):
        m = inspector.load(str(tiny_gguf))
    assert "weights_cache" not in m.bundle.extra
    np.testing.assert_array_equal(
        m.inspect(TEXT).attention, _direct(tiny_gguf).inspect(TEXT).attention
    )


@pytest.mark.parametrize("how", ["unlisted-file", "file-dropped-from-manifest"])
def test_a_file_the_manifest_omits_invalidates_the_entry(tiny_gguf, cache_dir, how):
    reference = inspector.load(str(tiny_gguf)).inspect(TEXT).attention
    entry = _entry(tiny_gguf)
    manifest = entry / cache.MANIFEST
    if how == "unlisted-file":  # transformers reads added_tokens.json if it is there
        (entry / "added_tokens.json").write_text('{"<evil>": 5}')
    else:
        meta = json.loads(manifest.read_text())
        del meta["files"]["tokenizer_config.json"]
        manifest.write_text(json.dumps(meta))
    assert "is not in the manifest" in (cache.check_entry(entry) or "")
    again = inspector.load(str(tiny_gguf))
    assert cache.check_entry(entry) is None
    assert not (entry / "added_tokens.json").exists()
    np.testing.assert_array_equal(again.inspect(TEXT).attention, reference)


def _unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` cannot be read: mode 000, and where that does not stop this user (root), a
    PermissionError from every read of it."""
    os.chmod(path, 0)
    if not os.access(path, os.R_OK):
        return
    real_open = open

    def guarded(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        if os.fspath(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded)


def test_an_unreadable_cached_file_falls_back_to_the_gguf(tiny_gguf, cache_dir, monkeypatch):
    reference = inspector.load(str(tiny_gguf)).inspect(TEXT).attention
    entry = _entry(tiny_gguf)
    _unreadable(entry / "model.safetensors", monkeypatch)
    with pytest.warns(InspectorWarning, match="model.safetensors cannot be read"):
        m = inspector.load(str(tiny_gguf))
    monkeypatch.undo()
    np.testing.assert_array_equal(m.inspect(TEXT).attention, reference)
    assert cache.check_entry(entry) is None  # rebuilt


def test_a_cache_entry_that_fails_to_load_falls_back_to_the_gguf(tiny_gguf, cache_dir, monkeypatch):
    """Checked a moment before, unreadable when transformers opens it: the GGUF, with a warning."""
    reference = inspector.load(str(tiny_gguf)).inspect(TEXT).attention
    entry = str(_entry(tiny_gguf))
    real = loading._load_from_source

    def failing(name, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        if source == entry:
            raise PermissionError(13, "Permission denied", f"{entry}/model.safetensors")
        return real(name, source, *args, **kwargs)

    monkeypatch.setattr(loading, "_load_from_source", failing)
    with pytest.warns(InspectorWarning, match="could not be loaded .*Permission denied.*directly"):
        m = inspector.load(str(tiny_gguf))
    assert "weights_cache" not in m.bundle.extra
    np.testing.assert_array_equal(m.inspect(TEXT).attention, reference)


def test_an_unwritable_cache_falls_back_to_the_gguf(tiny_gguf, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.ENV, str(blocker / "cache"))
    m = inspector.load(str(tiny_gguf))
    assert "weights_cache" not in m.bundle.extra
    np.testing.assert_array_equal(
        m.inspect(TEXT).attention, _direct(tiny_gguf).inspect(TEXT).attention
    )


def test_dtype_applies_to_cached_weights(tiny_gguf, cache_dir):
    inspector.load(str(tiny_gguf))
    half = inspector.load(str(tiny_gguf), dtype="bfloat16")
    assert half.bundle.dtype == "bfloat16" and "weights_cache" in half.bundle.extra
    manifest = json.loads((_entry(tiny_gguf) / cache.MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"]["size"] > 0  # the entry stays float32


def test_the_first_load_says_what_it_does_in_one_line(tiny_gguf, cache_dir, capfd):
    inspector.load(str(tiny_gguf))  # progress=False: no bar, but the one line
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "\r" not in err, err
    assert "first load: dequantising tiny.gguf" in err and "once into the weights cache" in err
    assert str(cache_dir) in err and "later loads read it in a few seconds" in err
    inspector.load(str(tiny_gguf), progress=True)
    assert "dequantising" not in capfd.readouterr().err  # said once: the cache is there now


def test_first_load_note_says_how_long(tmp_path):
    from inspector.models.cache import first_load_note

    gguf = tmp_path / "model.gguf"
    with gguf.open("wb") as fh:
        fh.truncate(98_000_000)  # a sparse file of SmolLM2's size
    note = first_load_note("smollm2", str(gguf), "model.gguf")
    assert "(98 MB)" in note and "about 20-59 s on 2 CPU cores" in note, note


def test_clear_empties_the_cache(tiny_gguf, cache_dir):
    inspector.load(str(tiny_gguf))
    assert any((cache_dir / "gguf").iterdir())
    assert cache.clear() == cache_dir
    assert not (cache_dir / "gguf").exists()


def test_loads_in_jupyter_print_only_the_first_load_line(tiny_dirs, tiny_gguf, cache_dir):
    """In a kernel without ipywidgets, importing tqdm.auto warns "IProgress not found"; a load
    must show neither that nor any bar: only a first GGUF load's one line on stderr."""
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(kernel_name="python3", env=dict(os.environ))
    code = (
        "import inspector\n"
        f"inspector.load({str(tiny_dirs['bert'])!r})\n"
        f"m = inspector.load({str(tiny_gguf)!r})\n"
        "inspector.head_metrics(m, ['The cat sat.'] * 3)\n"
        "print('done')\n"
    )
    try:
        msg_id = kc.execute(code)
        streams = []
        while True:
            msg = kc.get_iopub_msg(timeout=300)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("stream", "error"):
                streams.append((msg["content"].get("name"), str(msg["content"])))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert [name for name, _ in streams] == ["stderr", "stdout"], streams
    assert "first load: dequantising tiny.gguf" in streams[0][1], streams
    assert "IProgress" not in streams[0][1] and "\\r" not in streams[0][1], streams
    assert streams[1][1] == str({"name": "stdout", "text": "done\n"}), streams
