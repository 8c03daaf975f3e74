"""Hooked capture of kept layers/heads, float16 storage, GQA metadata, GGUF loading, SmolLM2."""

from __future__ import annotations

import pytest

import inspector
from inspector.errors import InputError, ModelLoadError


def test_load_gguf_file_path_means_folder_plus_file(tmp_path, monkeypatch):
    from inspector.models import loading

    seen = {}

    def fake(name, source, tokenizer, dtype, options):
        seen.update(source=source, gguf_file=options.gguf_file)
        raise ModelLoadError("stop here")

    monkeypatch.setattr(loading, "_load_from_source", fake)
    path = tmp_path / "model.Q4.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="stop here"):
        inspector.load(str(path))
    assert seen == {"source": str(tmp_path), "gguf_file": "model.Q4.gguf"}
    with pytest.raises(ModelLoadError, match=r"model\.Q4\.gguf"):
        inspector.load(str(tmp_path), gguf_file="other.gguf")
    with pytest.raises(InputError, match="two GGUF files"):
        inspector.load(str(path), gguf_file="other.gguf")
