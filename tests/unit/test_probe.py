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
