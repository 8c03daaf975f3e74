"""Where a definition differs on purpose from the reference code, the difference the README
states: ``detect_heads`` against TransformerLens' ``detect_head`` (``error_measure="mul"`` in
``transformer_lens/head_detector.py``: the attention on the expected keys summed over *all*
rows, divided by the attention's sum, with the pattern it builds from the token ids)."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis import detectors as D
from inspector.capture.types import AttentionStack

from factories import make_tokens


def _transformer_lens_mul(attention: np.ndarray, pattern: np.ndarray) -> float:
    """TransformerLens' "mul" score of one head, as its docstring defines it."""
    return float((attention * pattern).sum() / attention.sum())


def _induction_pattern(ids: list[int]) -> np.ndarray:
    """TransformerLens' induction pattern: earlier duplicates of the query's token, shifted one
    key to the right, lower triangular."""
    a = np.array(ids)
    dup = np.tril((a[:, None] == a[None, :]).astype(float), -1)
    shifted = np.zeros_like(dup)
    shifted[:, 1:] = dup[:, :-1]
    return np.tril(shifted)


def test_a_perfect_induction_head_scores_1_here_and_about_half_in_transformer_lens():
    n = 8
    rand = [11, 14, 12, 19, 17, 13, 18, 16]  # distinct ids, repeated once after <s>
    ids = [0, *rand, *rand]
    strings = ["<s>", *(f"t{i}" for i in ids[1:])]
    toks = make_tokens(strings, ids=ids)
    t = len(ids)
    head = np.zeros((t, t), dtype=np.float32)
    head[: n + 1, 0] = 1.0  # first half: nothing to induce from, rows rest on <s>
    for q in range(n + 1, t):
        head[q, q - n + 1] = 1.0  # the token after the earlier copy of the query's token
    stack = AttentionStack(head[None, None], toks, toks, causal=True)
    ours = D.detector_scores(stack).loc[(0, 0), "induction"]
    theirs = _transformer_lens_mul(head, _induction_pattern(ids))
    assert ours == pytest.approx(1.0)
    assert theirs == pytest.approx(n / t)  # 8 of 17 rows: "about 0.5 there"
