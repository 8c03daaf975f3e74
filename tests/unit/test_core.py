"""Loading and capture on tiny models of every family and on the real embedded MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.capture.types import AttentionStack, verify_weights
from inspector.errors import (
    CaptureError,
    InputError,
    ModelLoadError,
)

from factories import make_tokens


def test_unknown_short_name_lists_known():
    with pytest.raises(ModelLoadError, match="minilm"):
        inspector.load("definitely-not-a-model")


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        inspector.load(str(tmp_path / "nope" / "model"))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelLoadError, match=r"config\.json"):
        inspector.load(str(tmp_path))


def test_broken_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="config"):
        inspector.load(str(tmp_path))


def test_not_a_model_object():
    with pytest.raises(InputError, match="not int"):
        inspector.load(42)


def test_unknown_dtype():
    with pytest.raises(InputError, match="dtype"):
        inspector.load("minilm", dtype="float7")


def test_verification_catches_bad_rows():
    w = np.full((1, 2, 3, 3), 1 / 3, dtype=np.float32)
    w[0, 1, 2] = [0.5, 0.5, 0.5]
    with pytest.raises(CaptureError, match=r"layer 0 head 1 query 2 sums to 1\.5"):
        AttentionStack(w, make_tokens(3), make_tokens(3))


def test_verification_catches_nan_and_names_head():
    w = np.full((2, 2, 3, 3), 1 / 3, dtype=np.float32)
    w[1, 0, 0, 0] = np.nan
    with pytest.raises(CaptureError, match="layer 1 head 0"):
        verify_weights(w)


def test_verification_catches_causal_leak():
    w = np.full((1, 1, 3, 3), 1 / 3, dtype=np.float32)
    with pytest.raises(CaptureError, match="causal"):
        verify_weights(w, causal=True)


def test_verification_catches_shape_mismatch():
    w = np.full((1, 1, 3, 3), 1 / 3, dtype=np.float32)
    with pytest.raises(CaptureError, match="3 x 3 positions but there are 4"):
        AttentionStack(w, make_tokens(4), make_tokens(4))


def test_verification_catches_negative_weights():
    w = np.full((1, 1, 3, 3), 1 / 3, dtype=np.float32)
    w[0, 0, 1] = [0.8, 0.4, -0.2]
    with pytest.raises(CaptureError, match="negative weight"):
        verify_weights(w)


def test_readable_tokens_show_spaces_newlines_and_controls() -> None:
    from inspector.capture.types import readable_token, visible_whitespace

    assert readable_token("Ġcapital") == "␣capital"
    assert readable_token("▁the") == "␣the"
    assert readable_token("Ċ") == "⏎"
    assert readable_token("##ing") == "##ing"
    assert visible_whitespace("a\tb\x00") == "a⇥b\\x00"
    assert visible_whitespace("") == "∅"
    toks = make_tokens(["[CLS]", "Ġthe", "[SEP]"])
    assert toks.readable == ("[CLS]", "␣the", "[SEP]")
