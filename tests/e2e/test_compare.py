"""Comparing two inputs or two models head by head."""

from __future__ import annotations


def test_compare_minimal_pair_minilm(minilm) -> None:
    import inspector

    a = minilm.inspect("The keys to the cabinet are")
    b = minilm.inspect("The key to the cabinet is")
    c = inspector.compare(a, b)
    assert c.method == "lcs" and len(c.key_pairs) == len(a.tokens)
    assert (c.frame["js"] > 0).any()
    assert c.ranked(5)["js"].is_monotonic_decreasing
    same = a.compare(minilm.inspect("The keys to the cabinet are"))
    assert same.frame["js"].max() == 0 and same.frame["d_entropy"].abs().max() == 0
