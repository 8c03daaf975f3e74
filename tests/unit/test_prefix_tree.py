"""The prefix tree that decoder deletions run as (``inspector.capture.prefix``): its nodes,
depths and subtrees on a hand-made example, and its block-sparse attention layout against a
brute-force walk up the parents."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.capture.prefix import PrefixTree
from inspector.errors import InputError


def test_nodes_are_each_distinct_beginning_once_in_depth_first_order():
    rows = [[1, 2, 3], [1, 2, 4], [1, 5], [1, 2], [7]]
    tree = PrefixTree.of(rows)
    # sorted rows [1,2] [1,2,3] [1,2,4] [1,5] [7]: nodes 1 2 3 4 5 | 7
    assert tree.ids.tolist() == [1, 2, 3, 4, 5, 7]
    assert tree.depth.tolist() == [0, 1, 2, 2, 1, 0]
    assert tree.parent.tolist() == [-1, 0, 1, 1, 0, -1]
    assert tree.size.tolist() == [5, 3, 1, 1, 1, 1]
    assert tree.ends.tolist() == [2, 3, 4, 1, 5]  # in the rows' own order
    # every row is read back by walking up from its end
    for row, end in zip(rows, tree.ends, strict=True):
        path = [*tree.ancestors(int(end)), int(end)]
        assert tree.ids[path].tolist() == row
        assert tree.depth[path].tolist() == list(range(len(row)))


def test_a_row_twice_or_inside_another_adds_no_node():
    tree = PrefixTree.of([[4, 4, 4], [4, 4], [4, 4, 4]])
    assert len(tree) == 3
    assert tree.ends.tolist() == [2, 1, 2]


@pytest.mark.parametrize("block", [1, 3, 8, 64])
def test_block_layout_is_each_nodes_ancestors_and_itself(block):
    rng = np.random.default_rng(5)
    base = rng.integers(0, 9, size=12)
    rows = []
    for _ in range(40):
        keep = np.sort(rng.choice(12, size=int(rng.integers(1, 13)), replace=False))
        rows.append(base[keep].tolist())
    tree = PrefixTree.of(rows)
    keys, mask = tree.blocks(block)
    n = len(tree)
    assert keys.shape[0] == mask.shape[0] == -(-n // block)
    for b in range(keys.shape[0]):
        for r in range(block):
            i = b * block + r
            seen = {int(k) for k, m in zip(keys[b], mask[b, r], strict=True) if m}
            if i >= n:  # padding past the last node reads key 0 alone
                assert mask[b, r].sum() == 1 and mask[b, r, 0]
                continue
            assert seen == {*tree.ancestors(i), i}
            assert mask[b, r].sum() == tree.depth[i] + 1  # no key twice


def test_empty_rows_are_refused():
    with pytest.raises(InputError, match="at least one"):
        PrefixTree.of([])
    with pytest.raises(InputError, match="at least one"):
        PrefixTree.of([[1], []])
