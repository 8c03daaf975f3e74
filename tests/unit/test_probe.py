"""Syntactic head probe on a slice of UD English EWT (CC BY-SA 4.0, UD_English-EWT dev set)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.corpus.probe import word_predictions
from inspector.corpus.treebank import GoldSentence, read_treebank
from inspector.errors import InputError

from factories import MINI_CONLLU


def test_read_treebank_skips_ranges_and_empty_nodes(tmp_path: Path) -> None:
    path = tmp_path / "mini.conllu"
    path.write_text(MINI_CONLLU, encoding="utf-8")
    (sent,) = list(read_treebank(path))
    assert sent.words == ("Do", "n't", "stop", "now", ".")
    assert sent.heads == (3, 3, 0, 3, 3)
    assert sent.relations[-2:] == ("advmod:tmod", "punct")
    with pytest.raises(InputError, match="does not exist"):
        list(read_treebank(tmp_path / "missing.conllu"))


def test_word_predictions_never_pick_self() -> None:
    w = np.zeros((1, 1, 3, 3))
    w[0, 0] = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]]
    assert word_predictions(w)[0, 0].tolist() == [1, 0, 1]


def test_gold_sentence_validation() -> None:
    with pytest.raises(InputError, match="differ in length"):
        GoldSentence(("a",), (0, 1), ("root",))


def test_head_to_dependent_is_clarks_transpose_reading() -> None:
    """Clark et al.'s ``attn_head_predictor(mode="transpose")``: each dependent is predicted the
    word attending to it most, so a head word with two dependents can be right for both."""
    from inspector.corpus.probe import probe_predictions, probe_result, score_sentence

    # "cat sat down": cat -> sat (nsubj), sat = root, down -> sat (advmod)
    sent = GoldSentence(("cat", "sat", "down"), (2, 0, 2), ("nsubj", "root", "advmod"))
    w = np.zeros((1, 1, 3, 3))
    # sat attends to cat and down about equally (cat a little more); cat and down attend to
    # each other, so the row reading (dependent→head) is wrong for both
    w[0, 0] = [[0.25, 0.35, 0.4], [0.45, 0.1, 0.45], [0.4, 0.35, 0.25]]
    pred, transposed = probe_predictions(w)
    np.testing.assert_array_equal(transposed, word_predictions(w.swapaxes(-1, -2)))
    counts: dict = {}
    score_sentence(sent, pred, counts, {"punct"}, False, 1, 1, transposed)
    result = probe_result(counts, 1, 1, {})
    rows = result.table.set_index("relation")
    assert rows.loc["nsubj", "direction"] == rows.loc["advmod", "direction"] == "head→dependent"
    assert rows.loc["nsubj", "accuracy"] == rows.loc["advmod", "accuracy"] == 1.0
    dep = result.scores[result.scores["direction"] == "dependent→head"]
    assert (dep["accuracy"] == 0).all()
