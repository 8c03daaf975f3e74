"""Tidy frames: exact columns, compact dtypes, word level, Parquet/CSV round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import inspector
from inspector.errors import InputError
from inspector.frames import COLUMNS, word_level

TEXT = "The unbelievable cat sat on the mat."


def test_columns_and_compact_dtypes(tiny):
    frame = tiny["bert"].inspect(TEXT).frame()
    assert tuple(frame.columns) == COLUMNS
    assert frame["weight"].dtype == np.float32
    for col in ("layer", "head", "query_pos", "key_pos"):
        assert frame[col].dtype.kind == "i" and frame[col].dtype.itemsize <= 2
    for col in ("query_token", "key_token"):
        assert isinstance(frame[col].dtype, pd.CategoricalDtype)
    # no Python object per row: deep memory stays within a few bytes per weight
    assert frame.memory_usage(deep=True).sum() < 16 * len(frame) + 4096


def test_frame_rows_follow_the_array(tiny):
    ins = tiny["gpt2"].inspect(TEXT)
    frame = ins.frame()
    row = frame.iloc[len(frame) // 2 + 3]
    li, hi, qi, ki = int(row.layer), int(row["head"]), int(row.query_pos), int(row.key_pos)
    assert row.weight == ins.attention[li, hi, qi, ki]
    assert row.query_token == ins.tokens[qi] and row.key_token == ins.tokens[ki]


def test_frame_layer_head_filter(tiny):
    frame = tiny["bert"].inspect(TEXT).frame(layers=[1], heads=[0])
    assert set(frame["layer"]) == {1} and set(frame["head"]) == {0}
    with pytest.raises(InputError, match="layer 1 was not captured"):
        tiny["bert"].inspect(TEXT, layers=[0]).frame(layers=[1])


def test_frame_does_not_alias_the_capture(tiny):
    ins = tiny["bert"].inspect(TEXT)
    frame = ins.frame()
    before = ins.attention.copy()
    frame.loc[0, "weight"] = 99.0
    frame["weight"] *= 2
    np.testing.assert_array_equal(ins.attention, before)


@pytest.mark.parametrize("family, marker", [("bert", "##"), ("gpt2", "Ġ"), ("t5", "▁")])
def test_word_level_merges_pieces_and_rows_sum_to_one(tiny, family, marker):
    kw = {"target": "A dog barked."} if family == "t5" else {}
    ins = tiny[family].inspect("The mailmanship cat sat on the mat.", **kw)
    part = ins.encoder if ins.is_encoder_decoder else ins
    stack = part.stack
    assert any(marker in t for t in stack.query.tokens)  # the input really has sub-word pieces
    words = word_level(stack)
    n_specials = int(stack.query.special.sum())
    assert len(words.query) == stack.query.n_words + n_specials
    np.testing.assert_allclose(words.weights.sum(-1), 1.0, atol=1e-5)
    # the tiny vocabulary splits "mailmanship" into pieces; the word level reads it whole
    assert "mailmanship" not in stack.query.tokens
    assert "mailmanship" in words.query.tokens
    frame = part.frame(level="word")
    sums = frame.groupby(["layer", "head", "query_pos"], observed=True)["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)


def test_word_level_keeps_causality(tiny):
    words = word_level(tiny["gpt2"].inspect(TEXT).stack)
    n = words.weights.shape[-1]
    assert np.all(words.weights[..., np.triu(np.ones((n, n), bool), 1)] == 0)


def test_tokens_frame(tiny):
    ins = tiny["bert"].inspect("The cat sat.", "It slept.")
    tf = ins.tokens_frame()
    assert list(tf.columns) == [
        "position",
        "token",
        "readable",
        "token_id",
        "word_id",
        "sequence",
        "special",
        "start",
        "end",
    ]
    assert tf.token.tolist() == ins.tokens
    row = tf[tf.token == "cat"].iloc[0]
    assert "The cat sat."[row.start : row.end].lower() == "cat"
    assert tf.special.sum() == 3


def test_parquet_round_trip_is_lossless(tiny, tmp_path):
    ins = tiny["bart"].inspect(TEXT, target="A dog.")
    path = ins.to_parquet(tmp_path / "a.parquet")
    back = inspector.read_parquet(path)
    frame = ins.frame()
    pd.testing.assert_frame_equal(back, frame, check_categorical=False)
    assert back["weight"].dtype == np.float32
    meta = back.attrs["inspector"]
    assert meta["model_type"] == "bart"
    assert meta["tokens"]["encoder"] == ins.encoder.tokens
    assert meta["text"] == TEXT


def test_csv_export(tiny, tmp_path):
    ins = tiny["bert"].inspect(TEXT)
    path = ins.to_csv(tmp_path / "a.csv", layers=[0])
    back = pd.read_csv(path)
    assert list(back.columns) == list(COLUMNS)
    assert len(back) == ins.attention[0].size
    np.testing.assert_allclose(back.weight, ins.attention[0].reshape(-1), rtol=1e-6)


def test_wrong_suffix(tiny, tmp_path):
    with pytest.raises(InputError, match=r"\.parquet"):
        tiny["bert"].inspect(TEXT).to_parquet(tmp_path / "a.csv")


def test_position_arithmetic_does_not_wrap(tiny):
    frame = tiny["bert"].inspect(TEXT).frame()
    distance = frame["query_pos"] - frame["key_pos"]
    assert distance.min() < 0  # signed: a key after the query gives a negative distance
    assert (distance.abs() < len(frame["query_pos"].unique())).all()
    assert frame["layer"].dtype.kind == "i" and frame["query_pos"].dtype.kind == "i"
