"""The weights cache: a GGUF file is dequantised once, kept as checked safetensors, reloaded.

Runs on the tiny LLaMA-style GGUF of ``factories.build_tiny_gguf``; every test points
``INSPECTOR_CACHE_DIR`` at its own temporary folder (never the user's cache).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import inspector
from inspector.models import cache
from inspector.models.loading import _load_from_source

TEXT = "The cat sat on the mat."


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(cache.ENV, str(folder))
    return folder


def _entry(gguf: Path) -> Path:
    return cache.gguf_entry(cache.file_sha256(gguf))


def _direct(gguf: Path) -> inspector.LoadedModel:
    """The GGUF file loaded without the cache, as inspector did before it had one."""
    bundle = _load_from_source("direct", str(gguf.parent), None, None, None, False, gguf.name)
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


def test_stale_temporary_folders_are_removed(tiny_gguf, cache_dir):
    stale = cache_dir / "gguf" / ".0123456789abcdef.x.tmp"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    inspector.load(str(tiny_gguf))
    assert not stale.exists()


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
