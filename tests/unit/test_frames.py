"""Tidy frames: exact columns, compact dtypes, word level, Parquet/CSV round trips."""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.capture.types import AttentionStack, Capture, Tokens
from inspector.errors import InputError
from inspector.frames import FrameSpec, capture_frame, stack_frame, word_level


def test_word_level_by_hand():
    # tokens: [CLS] un ##believ ##able cat [SEP] -> words: [CLS] unbelievable cat [SEP]
    toks = Tokens(
        ("[CLS]", "un", "##believ", "##able", "cat", "[SEP]"),
        np.arange(6),
        np.array([1, 0, 0, 0, 0, 1], bool),
        np.array([-1, 0, 0, 0, 1, -1], np.int32),
        np.array([-1, 0, 0, 0, 0, -1], np.int8),
        np.array([[-1, -1], [0, 2], [2, 8], [8, 12], [13, 16], [-1, -1]], np.int32),
        ("unbelievable cat",),
    )
    rng = np.random.default_rng(0)
    w = rng.random((1, 1, 6, 6)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    merged = word_level(AttentionStack(w, toks, toks))
    assert merged.query.tokens == ("[CLS]", "unbelievable", "cat", "[SEP]")
    a = w[0, 0].astype(np.float64)
    # query word "unbelievable" = mean of rows 1..3; key word = sum of columns 1..3
    want = a[1:4].mean(axis=0)
    want = np.array([want[0], want[1:4].sum(), want[4], want[5]])
    np.testing.assert_allclose(merged.weights[0, 0, 1], want, rtol=1e-6)


def test_read_parquet_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        inspector.read_parquet(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(InputError, match="not a readable Parquet"):
        inspector.read_parquet(bad)


def test_pure_frames_need_no_model():
    import torch

    w = torch.softmax(torch.randn(2, 3, 5, 5), -1).numpy()
    toks = Tokens(
        tuple("abcde"),
        np.arange(5),
        np.zeros(5, bool),
        np.arange(5, dtype=np.int32),
        np.zeros(5, np.int8),
        np.full((5, 2), -1, np.int32),
    )
    frame = stack_frame(AttentionStack(w, toks, toks))
    assert len(frame) == w.size
    cap = Capture({"self": AttentionStack(w, toks, toks)}, {"model_name": "random"})
    word_frame = capture_frame(cap, FrameSpec(level="word"))
    assert word_frame["weight"].sum() == pytest.approx(2 * 3 * 5, rel=1e-5)
