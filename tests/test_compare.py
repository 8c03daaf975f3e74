"""Comparing two inputs or two models head by head."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.capture import AttentionStack, Tokens
from inspector.compare import COLUMNS, align_tokens, compare
from inspector.errors import InputError


def make_tokens(strings: list[str]) -> Tokens:
    n = len(strings)
    return Tokens(
        tuple(strings),
        np.arange(n, dtype=np.int64),
        np.zeros(n, dtype=bool),
        np.arange(n, dtype=np.int32),
        np.zeros(n, dtype=np.int8),
        np.full((n, 2), -1, dtype=np.int32),
    )


def random_stack(strings: list[str], seed: int) -> AttentionStack:
    toks = make_tokens(strings)
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(len(strings)), size=(2, 2, len(strings))).astype(np.float32)
    return AttentionStack(w, toks, toks)


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


def test_compare_two_models_sharing_a_tokenizer(tiny) -> None:
    import inspector

    bert = tiny["bert"]
    c = inspector.compare(bert.inspect("the cat sat."), bert.inspect("the cat sat."))
    assert c.frame["js"].max() == 0
    enc = tiny["t5"].inspect("the cat sat.")
    with pytest.raises(InputError, match="encoder-decoder"):
        compare(enc, enc)
    assert compare(enc.encoder, enc.encoder).frame["js"].max() == 0


def test_comparison_report_and_cli(tiny, tmp_path) -> None:
    from html.parser import HTMLParser

    from inspector.cli import main

    out = tmp_path / "diff.html"
    folder = tiny["bert"].bundle.source
    rc = main(["compare", str(folder), "the cat sat.", "--text-b", "the dog sat.", "-o", str(out)])
    assert rc == 0 and out.exists()
    ids: list[str] = []

    class Ids(HTMLParser):
        def handle_starttag(self, tag, attrs) -> None:
            ids.extend(v for k, v in attrs if k == "id" and v)

    Ids().feed(out.read_text(encoding="utf-8"))
    assert "comparison" in ids
    csv = tmp_path / "diff.csv"
    assert (
        main(["compare", str(folder), "the cat sat.", "--text-b", "the cat.", "-o", str(csv)]) == 0
    )
    assert main(["compare", str(folder), "the cat sat."]) != 0  # nothing to compare with
    heads = tmp_path / "heads.parquet"
    assert main(["heads", str(folder), "the cat sat.", "a dog.", "-o", str(heads)]) == 0
    import pandas as pd

    frame = pd.read_parquet(heads)
    assert {"layer", "head", "entropy", "role", "n"} <= set(frame.columns) and len(frame) == 4


def test_head_analysis_section(tiny) -> None:
    from inspector.render.heads import head_analysis_section
    from inspector.render.report import build_report

    ins = tiny["gpt2"].inspect("the cat sat on the mat.")
    report = build_report(ins.capture, sections=(head_analysis_section,))
    assert [s.id for s in report.sections] == ["head-metrics"]
    names = [f.name for part in report.sections[0].context["parts"] for f in part["figures"]]
    assert names == ["head-roles-self", "head-metrics-self", "head-distances-self", "head-mds-self"]
    assert report.html.count('<figure class="ins-figure ins-fig"') == 4


def test_comparison_figures_are_diverging_maps(tiny) -> None:
    import inspector
    from inspector.render.heads import comparison_figure

    bert = tiny["bert"]
    c = inspector.compare(bert.inspect("the cat sat."), bert.inspect("the dog sat."))
    spec = comparison_figure(c, 1, 0).data()
    a, b, diff = spec["panels"]
    assert spec["name"] == "compare-1-0" and spec["title"].startswith("head 1.0: JS divergence")
    assert (a["cmap"], b["cmap"], diff["cmap"]) == ("blues", "blues", "rdbu")
    assert (diff["vmin"], diff["vmax"]) == (-1.0, 1.0)
    assert len(a["rows"]) == len(a["values"]) and "cat" in a["cols"] and "dog" in b["cols"]
