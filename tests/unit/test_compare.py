"""Comparing two inputs or two models head by head."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis.compare import COLUMNS, align_tokens, compare
from inspector.capture.types import AttentionStack
from inspector.errors import InputError

from factories import make_tokens, random_stack


def test_alignment_identical_lcs_and_substitution() -> None:
    a = make_tokens(["[CLS]", "the", "keys", "to", "the", "cabinet", "are", "[SEP]"])
    b = make_tokens(["[CLS]", "the", "key", "to", "the", "cabinet", "is", "[SEP]"])
    pairs, method = align_tokens(a, a)
    assert method == "identical" and (pairs[:, 0] == pairs[:, 1]).all()
    pairs, method = align_tokens(a, b)
    assert method == "lcs" and len(pairs) == 8  # keys<->key, are<->is as substitutions
    strict, _ = align_tokens(a, b, substitutions=False)
    assert [a.tokens[i] for i in strict[:, 0]] == ["[CLS]", "the", "to", "the", "cabinet", "[SEP]"]
    c = make_tokens(["[CLS]", "the", "key", "##s", "to", "the", "cabinet", "[SEP]"])
    pairs, _ = align_tokens(a, c)  # a 1-token vs 2-token gap stays unaligned
    assert (2, 2) not in {tuple(p) for p in pairs} and len(pairs) == 6
    assert np.all(np.diff(pairs, axis=0) > 0)


def test_compare_with_itself_is_zero() -> None:
    st = random_stack(["a", "b", "c", "d", "e"], 0)
    c = compare(st, st)
    assert list(c.frame.columns) == list(COLUMNS)
    assert (c.frame[["js", "js_max", "d_entropy", "d_sink_share"]].to_numpy() == 0).all()
    np.testing.assert_allclose(c.frame["aligned_mass_a"], 1.0, rtol=1e-6)


def test_compare_ranks_the_changed_head() -> None:
    a = random_stack(["a", "b", "c", "d"], 0)
    w = a.weights.copy()
    w[1, 0] = np.eye(4, dtype=np.float32)
    b = AttentionStack(w, a.query, a.key)
    c = compare(a, b)
    assert c.ranked(1).index[0] == (1, 0)
    assert c.frame.loc[(0, 0), "js"] == 0
    assert c.frame.loc[(1, 0), "d_entropy"] < 0
    _, mb = c.aligned_maps(1, 0)
    np.testing.assert_array_equal(mb, np.eye(4))
    assert "Comparison(" in repr(c)


def test_compare_different_tokens_uses_aligned_rows() -> None:
    a = random_stack(["x", "the", "cat", "sat"], 1)
    b = random_stack(["x", "the", "dog", "sat", "down"], 2)
    c = compare(a, b)
    assert len(c.key_pairs) == 4
    assert ((c.frame["js"] >= 0) & (c.frame["js"] <= 1)).all()
    assert (c.frame["aligned_mass_b"] < 1).all()


def test_compare_rejects_mismatched_heads() -> None:
    a = random_stack(["a", "b"], 0)
    toks = a.query
    b = AttentionStack(a.weights[:1], toks, toks)
    with pytest.raises(InputError, match="different heads"):
        compare(a, b)
    with pytest.raises(InputError):
        compare(a, "not a stack")
