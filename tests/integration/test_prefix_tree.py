"""Decoder deletions run as prefix trees give the numbers of each input run alone.

The tree's logits equal the model run on each row by itself (a GQA LLaMA, GPT-2's absolute
positions); every causal family of the family matrix either runs its deletions as trees with the
same values as one input at a time, or is refused with a reason and runs them one length at a
time; a tree whose check against the input run alone fails falls back the same way; the passes
cover every row once within their caps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import inspector
from inspector.capture import memory as _memory
from inspector.capture import prefix
from inspector.capture.prefix import PrefixTree, plan_trees, tree_logits
from inspector.explain.perturbation import Deletions
from inspector.explain.registry import ExplainRequest

from factories import FAMILY_SPECS, FAMILY_TEXT, build_family, build_tiny_llama, bytelevel_tokenizer

CAUSAL = [
    t
    for t, (_, cls, _) in FAMILY_SPECS.items()
    if cls.endswith("ForCausalLM") or cls == "GPT2LMHeadModel"
]
#: Families whose deletions must run as trees (a regression here costs the scoreboard its speed).
TREE_FAMILIES = {"llama", "gpt2", "mistral", "qwen2", "qwen3", "gemma", "olmo", "starcoder2"}


def _rows(ids: list[int], n: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    rows = {tuple(ids)}
    while len(rows) < n:
        keep = np.sort(rng.choice(len(ids), size=int(rng.integers(1, len(ids) + 1)), replace=False))
        rows.add(tuple(ids[i] for i in keep))
    return [list(r) for r in sorted(rows, key=lambda r: (len(r), r))]


def _alone(model, row: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([row]), use_cache=False).logits[0, -1]


@pytest.fixture(scope="module")
def tiny_llama():
    model, tok = build_tiny_llama(bytelevel_tokenizer(template=False), heads=4, kv_heads=2)
    return inspector.load((model, tok))


def test_tree_logits_equal_each_row_run_alone(tiny_llama, tiny):
    for m in (tiny_llama, tiny["gpt2"]):
        ids = m.bundle.tokenizer(FAMILY_TEXT)["input_ids"]
        rows = _rows(ids, 30)
        tree = PrefixTree.of(rows)
        assert len(tree) < sum(len(r) for r in rows)  # shared beginnings ran once
        logits, nodes = tree_logits(m.bundle, rows)
        assert nodes == len(tree) and logits.shape[:2] == (len(rows), 1)
        for i, row in enumerate(rows):
            torch.testing.assert_close(logits[i, 0], _alone(m.model, row), atol=2e-5, rtol=1e-4)
        # the model is left as it was: its own attention implementation, no hook
        assert m.model.config._attn_implementation == "eager"


def _request(m):
    ins = m.inspect(FAMILY_TEXT)
    return ExplainRequest(ins.capture, "self", m.bundle)


def _keeps(m: int, n: int = 40) -> list[tuple[int, ...]]:
    rng = np.random.default_rng(1)
    keeps = [tuple(j for j in range(m) if j != i) for i in range(m)]  # leave-one-out
    keeps += [
        tuple(sorted(rng.choice(m, size=int(rng.integers(0, m)), replace=False))) for _ in range(n)
    ]
    return keeps


@pytest.mark.parametrize("model_type", CAUSAL)
def test_every_causal_family_gets_the_values_of_one_input_at_a_time(model_type):
    m = inspector.load(build_family(model_type))
    request = _request(m)
    shared = Deletions(request)
    plain = Deletions(request, share_prefixes=False)
    keeps = _keeps(len(shared.content))
    got, want = shared.values(keeps), plain.values(keeps)
    for k in keeps:
        assert got[k] == pytest.approx(want[k], rel=1e-4, abs=1e-6), (model_type, k)
    assert plain.tree_refused == "share_prefixes=False"
    assert plain.run_tokens == plain.input_tokens
    if shared.tree_refused is None:
        assert shared.run_tokens < shared.input_tokens
    else:
        assert model_type not in TREE_FAMILIES, shared.tree_refused
        assert shared.run_tokens == shared.input_tokens
    if model_type == "gemma2":  # soft-capped attention: no tree
        assert shared.tree_refused is not None


def test_a_tree_that_fails_its_check_falls_back(tiny_llama, monkeypatch):
    class Wrong(prefix.TreeAttention):
        def __call__(self, module, query, key, value, attention_mask, **kwargs):
            out, weights = super().__call__(module, query, key, value, attention_mask, **kwargs)
            return out.flip(1), weights  # each node gets another node's attention output

    monkeypatch.setattr(prefix, "TreeAttention", Wrong)
    request = _request(tiny_llama)
    shared = Deletions(request)
    keeps = _keeps(len(shared.content))
    got = shared.values(keeps)
    assert "differs from the input run alone" in shared.tree_refused
    want = Deletions(request, share_prefixes=False).values(keeps)
    for k in keeps:
        assert got[k] == pytest.approx(want[k], rel=1e-5, abs=1e-7)


def test_passes_cover_each_row_once_within_their_caps(tiny_llama):
    ids = tiny_llama.bundle.tokenizer(FAMILY_TEXT * 2)["input_ids"]
    rows = _rows(ids, 120)
    budget = _memory.memory_budget(None)
    for max_nodes, max_rows in ((10**6, None), (200, None), (10**6, 7), (1, None)):
        passes = plan_trees(
            tiny_llama.bundle, rows, budget=budget, max_nodes=max_nodes, max_rows=max_rows
        )
        flat = [r for p in passes for r in p]
        assert sorted(flat) == list(range(len(rows)))
        assert [tuple(rows[r]) for r in flat] == sorted(tuple(r) for r in rows)
        for p in passes:
            nodes = len(PrefixTree.of([rows[r] for r in p]))
            assert nodes <= max_nodes or len(p) == 1
            assert max_rows is None or len(p) <= max_rows
    assert len(plan_trees(tiny_llama.bundle, rows, budget=budget)) == 1
    # a budget that holds about one row a pass cuts the rows into many passes
    small = _memory.Budget(prefix._pass_bytes(tiny_llama.bundle, len(ids), len(ids), 1) * 2, "test")
    assert len(plan_trees(tiny_llama.bundle, rows, budget=small)) > len(rows) // 4


def test_the_result_says_whether_inputs_shared_beginnings(tiny_llama):
    texts = ["The cat sat on the mat.", "A dog barked."]
    r = inspector.faithfulness(tiny_llama, texts, ["random", "occlusion"], progress=False)
    assert r.metadata["prefix_tree"] == ["used"]
    assert r.metadata["run_tokens"] < r.metadata["deletion_tokens"]
    one = tiny_llama.inspect(texts[0]).explain.faithfulness(["random"])
    assert one.metadata["prefix_tree"] == "used"
    bloom = inspector.load(build_family("bloom"))
    r = inspector.faithfulness(bloom, texts[:1], ["random"], progress=False)
    assert r.metadata["prefix_tree"] == [
        "BloomForCausalLM does not dispatch attention through AttentionInterface"
    ]
    assert r.metadata["run_tokens"] == r.metadata["deletion_tokens"]
