"""Head metrics, roles, detectors and head distances: hand-built patterns, then the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis import detectors as D
from inspector.analysis import distances as DI
from inspector.analysis import metrics as M
from inspector.analysis import roles as R
from inspector.capture.types import AttentionStack, Tokens
from inspector.errors import InputError

from factories import make_tokens

TOKS = ["[CLS]", "the", "cat", ",", "sat", ".", "[SEP]"]


SPECIAL = [True, False, False, False, False, False, True]


N = len(TOKS)


def identity(n: int = N) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def shifted(n: int = N) -> np.ndarray:
    w = np.zeros((n, n), dtype=np.float32)
    w[0, 0] = 1.0
    w[np.arange(1, n), np.arange(n - 1)] = 1.0
    return w


def uniform(n: int = N) -> np.ndarray:
    return np.full((n, n), 1.0 / n, dtype=np.float32)


def column(j: int, n: int = N) -> np.ndarray:
    w = np.zeros((n, n), dtype=np.float32)
    w[:, j] = 1.0
    return w


def stack_of(*maps: np.ndarray, tokens: Tokens | None = None, causal: bool = False):
    tokens = tokens or make_tokens(TOKS, SPECIAL)
    w = np.stack([np.stack(maps)])  # one layer, len(maps) heads
    return AttentionStack(w, tokens, tokens, "self", causal)


def test_identity_shifted_uniform() -> None:
    m = M.head_metrics(stack_of(identity(), shifted(), uniform()))
    ident, shift, uni = (m.loc[(0, h)] for h in range(3))
    assert ident["to_self"] == pytest.approx(1.0)
    assert ident["entropy"] == pytest.approx(0.0)
    assert ident["max_weight"] == pytest.approx(1.0)
    assert ident["mean_distance"] == pytest.approx(0.0)
    assert ident["to_prev"] == pytest.approx(0.0)
    assert shift["to_prev"] == pytest.approx(1.0)
    assert shift["to_self"] == pytest.approx(1.0 / N)  # only row 0 attends to itself
    assert shift["mean_distance"] == pytest.approx((N - 1) / N)
    assert uni["entropy_norm"] == pytest.approx(1.0, abs=1e-6)
    assert uni["entropy"] == pytest.approx(np.log(N), abs=1e-6)
    assert uni["max_weight"] == pytest.approx(1.0 / N)


def test_next_first_special_sep_punct_and_sink() -> None:
    nxt = np.zeros((N, N), dtype=np.float32)
    nxt[np.arange(N - 1), np.arange(1, N)] = 1.0
    nxt[N - 1, N - 1] = 1.0
    m = M.head_metrics(stack_of(nxt, column(0), column(N - 1), uniform()))
    assert m.loc[(0, 0), "to_next"] == pytest.approx(1.0)  # over the N-1 rows with a next key
    assert m.loc[(0, 1), "to_first"] == pytest.approx(1.0)
    assert m.loc[(0, 1), "to_special"] == pytest.approx(1.0)
    assert m.loc[(0, 1), "to_sep"] == pytest.approx(0.0)  # [CLS] is special, not a separator
    assert m.loc[(0, 2), "to_sep"] == pytest.approx(1.0)
    assert m.loc[(0, 3), "to_punct"] == pytest.approx(2.0 / N)  # "," and "."
    assert m.loc[(0, 1), "sink_token"] == "[CLS]"
    assert m.loc[(0, 1), "sink_share"] == pytest.approx(1.0)
    assert m.loc[(0, 2), "sink_token"] == "[SEP]"
    assert m.loc[(0, 2), "sink_pos"] == N - 1
    assert list(m.columns) == [*M.list_metrics(), *M.SINK_COLUMNS]


def test_separator_detection_is_not_hard_coded() -> None:
    roberta = make_tokens(
        ["<s>", "Ġa", "</s>", "</s>", "Ġb", "</s>"], [1, 0, 1, 1, 0, 1], [0, 5, 2, 2, 6, 2]
    )
    assert M.separator_mask(roberta).tolist() == [False, False, True, True, False, True]
    gpt2 = make_tokens(["The", "Ġcat"])
    assert not M.separator_mask(gpt2).any()
    m = M.head_metrics(stack_of(uniform(2), tokens=gpt2))
    assert np.isnan(m["to_sep"]).all()
    explicit = M.separator_mask(roberta, sep_ids=[0])
    assert explicit.tolist() == [True, False, False, False, False, False]


def test_causal_rows() -> None:
    lower = np.tril(np.ones((N, N), dtype=np.float32))
    causal_uniform = lower / lower.sum(axis=1, keepdims=True)
    m = M.head_metrics(stack_of(causal_uniform, shifted(), causal=True))
    assert m.loc[(0, 0), "entropy_norm"] == pytest.approx(1.0, abs=1e-6)  # row 0 is skipped
    assert np.isnan(m.loc[(0, 0), "to_next"])  # causal rows never see their next key
    assert m.loc[(0, 1), "to_prev"] == pytest.approx(1.0)


def test_cross_attention_positional_metrics_are_nan() -> None:
    q = make_tokens(["<pad>", "a", "b"], [True, False, False])
    k = make_tokens(["a", "b", "c", "</s>"], [False, False, False, True])
    w = np.full((1, 1, 3, 4), 0.25, dtype=np.float32)
    m = M.head_metrics(AttentionStack(w, q, k, "cross"))
    for name in ("to_self", "to_prev", "to_next", "mean_distance"):
        assert np.isnan(m[name]).all(), name
    assert m["entropy_norm"].iloc[0] == pytest.approx(1.0, abs=1e-6)
    assert m["to_sep"].iloc[0] == pytest.approx(0.25)


def test_registry() -> None:
    assert "entropy" in M.list_metrics()
    name = "to_last_for_test"
    with M.METRICS.scoped():
        M.register_metric(name, lambda w, ctx: w[..., -1].mean(-1))
        with pytest.raises(InputError, match="already registered"):
            M.register_metric(name, lambda w, ctx: w[..., -1].mean(-1))
        arrays = M.compute_metric_arrays(stack_of(column(N - 1)), [name])
        assert arrays[name].shape == (1, 1) and arrays[name][0, 0] == pytest.approx(1.0)
    assert name not in M.list_metrics()
    with pytest.raises(InputError, match="unknown metric"):
        M.compute_metric_arrays(stack_of(identity()), ["nope"])
    with pytest.raises(InputError, match="reserved"):
        M.register_metric("sink_share", lambda w, ctx: w[..., 0].mean(-1))


def test_roles_and_thresholds() -> None:
    stack = stack_of(identity(), shifted(), uniform(), column(0))
    roles = R.head_roles(M.head_metrics(stack))
    assert roles["role"].tolist() == ["self", "previous", "broad", "sink"]
    assert roles["label"].iloc[3] == "sink [CLS]"
    strict = R.head_roles(M.head_metrics(stack), R.RoleThresholds(self=1.0))
    assert strict["role"].iloc[0] == "other"
    with pytest.raises(InputError):
        R.RoleThresholds(sink=2.0)
    summary = R.layer_summary(M.head_metrics(stack))
    assert summary.loc[0, "share_sink"] == pytest.approx(0.25)
    top = R.top_heads(M.head_metrics(stack), k=1)
    assert top.set_index("role").loc["previous", "head"] == 1


def test_detectors_causal_and_bidirectional() -> None:
    ids = [7, 3, 4, 5, 3, 4, 5]  # a special-free prefix token, then "3 4 5" twice
    toks = make_tokens([str(i) for i in ids], ids=ids)
    n = len(ids)
    induction = np.zeros((n, n), dtype=np.float32)
    duplicate = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        induction[i, i] = duplicate[i, i] = 1.0
    for i in (4, 5, 6):  # second half: query token at i, earlier copy at i-3, next key i-2
        induction[i] = 0
        induction[i, i - 2] = 1.0
        duplicate[i] = 0
        duplicate[i, i - 3] = 1.0
    st = AttentionStack(
        np.stack([np.stack([induction, duplicate, shifted(n)])]), toks, toks, causal=True
    )
    scores = D.detector_scores(st)
    assert scores.loc[(0, 0), "induction"] == pytest.approx(1.0)
    assert scores.loc[(0, 1), "duplicate_token"] == pytest.approx(1.0)
    assert scores.loc[(0, 2), "previous_token"] == pytest.approx(1.0)
    # bidirectional: the first half's rows also have expected keys (the later copies)
    bi = AttentionStack(st.weights, toks, toks, causal=False)
    masks = D.detector_masks(M.MetricContext.from_stack(bi))
    assert masks["duplicate_token"][1, 4] and masks["induction"][1, 5]
    assert D.detector_scores(bi).loc[(0, 1), "duplicate_token"] == pytest.approx(0.5)


def test_repeated_random_text() -> None:
    words = D.vocabulary_words(["Ġcat", "Ġdog", "ing", "<s>", "Ġmat", "Ġ1"], special=["<s>"])
    assert words == ["cat", "dog", "mat"]
    text = D.repeated_random_text(["alpha", "beta", "gamma", "delta"], 3, seed=1)
    half = text.split()
    assert half[:3] == half[3:]


def test_special_tokens_are_never_expected_positions() -> None:
    """All three detectors skip special tokens as keys and as queries: a head parked on [CLS]
    is not a previous-token head for the first word (TransformerLens' pattern would count it)."""
    toks = make_tokens(["[CLS]", "a", "b", "c", "[SEP]"])
    n = len(toks)
    parked = np.zeros((n, n), dtype=np.float32)
    parked[:, 0] = 1.0  # every row on [CLS]
    prev = shifted(n)
    st = AttentionStack(np.stack([np.stack([parked, prev])]), toks, toks, causal=True)
    masks = D.detector_masks(M.MetricContext.from_stack(st))
    assert not masks["previous_token"][1, 0]  # a -> [CLS]
    assert not masks["previous_token"][4].any()  # [SEP] is not a scored query
    assert masks["previous_token"][2, 1] and masks["previous_token"][3, 2]
    scores = D.detector_scores(st)
    assert scores.loc[(0, 0), "previous_token"] == pytest.approx(0.0)
    assert scores.loc[(0, 1), "previous_token"] == pytest.approx(1.0)


def test_repeated_random_ids_are_an_exact_token_repeat() -> None:
    vocab = {"Ġcat": 5, "Ġdog": 6, "ing": 7, "<s>": 0, "Ġmat": 8, "Ġ1": 9, "Ġvacant": 10}
    pool = D.vocabulary_token_ids(vocab, special=["<s>"])
    assert pool == [5, 6, 8, 10]
    ids = D.repeated_random_ids(pool, 6, seed=1)
    assert ids[:6] == ids[6:] and set(ids) <= set(pool)
    with pytest.raises(InputError):
        D.repeated_random_ids([], 3)


def test_head_distances_js_and_cosine() -> None:
    st = stack_of(identity(), identity(), shifted(), uniform())
    for method in ("js", "cosine"):
        d = DI.head_distances(st, method)
        assert d.shape == (4, 4)
        np.testing.assert_allclose(d, d.T)
        assert np.all(np.diag(d) == 0) and d[0, 1] == pytest.approx(0.0, abs=1e-6)
        assert (d >= 0).all() and (d <= 1 + 1e-9).all()
    d = DI.head_distances(st, "js")
    # identity vs shifted: disjoint rows (distance 1) except row 0 where both are e_0
    assert d[0, 2] == pytest.approx((N - 1) / N, abs=1e-6)
    frame = DI.head_distance_frame(st)
    assert frame.index.names == ["layer", "head"] and frame.shape == (4, 4)
    # the chunked loop gives the same numbers
    np.testing.assert_allclose(DI.head_distances(st, block=1), d)
    with pytest.raises(InputError):
        DI.head_distances(st, "euclid")


@pytest.mark.parametrize("causal", [False, True])
def test_head_distances_js_match_pairwise_rows(causal: bool) -> None:
    """The mixture-only formulation equals JS distances computed pair by pair."""
    rng = np.random.default_rng(2)
    logits = 3 * rng.normal(size=(3, 4, 17, 17))
    if causal:  # zeros above the diagonal, as in decoders
        logits = np.where(np.tril(np.ones((17, 17), dtype=bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w = (w / w.sum(-1, keepdims=True)).astype(np.float32)
    w[1, 2] = w[0, 1]  # an identical pair: exactly 0
    x = w.reshape(12, 17, 17)
    ref = np.array(
        [[np.sqrt(DI.js_divergence_rows(x[a], x[b])).mean() for b in range(12)] for a in range(12)]
    )
    np.fill_diagonal(ref, 0.0)
    for workers in (1, 2, 3):
        for block in (1, 17 * 17 * 5, 1 << 22):
            d = DI.head_distances(w, "js", block=block, workers=workers)
            np.testing.assert_allclose(d, ref, atol=1e-5, rtol=0)
            assert d[1, 6] == 0.0 and d[6, 1] == 0.0


def test_js_rows_match_scipy() -> None:
    from scipy.spatial.distance import jensenshannon

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(9), size=5).astype(np.float32)
    q = rng.dirichlet(np.ones(9), size=5).astype(np.float32)
    ours = np.sqrt(DI.js_divergence_rows(p, q))
    ref = [jensenshannon(p[i], q[i], base=2) for i in range(5)]
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_clusters_embedding_nearest() -> None:
    st = stack_of(identity(), identity(), shifted(), uniform())
    d = DI.head_distance_frame(st)
    clusters = DI.cluster_heads(d, n_clusters=3)
    assert clusters.loc[(0, 0), "cluster"] == clusters.loc[(0, 1), "cluster"]
    assert sorted(clusters["order"]) == [0, 1, 2, 3]
    emb = DI.head_embedding(d)
    assert list(emb.columns) == ["x", "y"]
    assert np.allclose(emb.loc[(0, 0)], emb.loc[(0, 1)], atol=1e-6)
    near = DI.nearest_heads(d, 0, 0, k=2)
    assert (near["layer"].iloc[0], near["head"].iloc[0]) == (0, 1)
    assert DI.cluster_order(d).shape == (4, 4)


def test_batch_mean_equals_mean_of_inputs() -> None:
    rng = np.random.default_rng(1)
    toks = make_tokens(TOKS, SPECIAL)
    stacks = []
    for _ in range(3):
        w = rng.dirichlet(np.ones(N), size=(2, 3, N)).astype(np.float32)
        stacks.append(AttentionStack(w, toks, toks))
    agg = M.aggregate_head_metrics(stacks)
    singles = [M.head_metrics(s) for s in stacks]
    for name in M.list_metrics():
        expected = np.mean([f[name].to_numpy() for f in singles], axis=0)
        np.testing.assert_allclose(agg[name].to_numpy(), expected, rtol=1e-9, atol=1e-12)
    assert (agg["n"] == 3).all()
    assert {f"{n}_std" for n in M.list_metrics()} <= set(agg.columns)
    dist = DI.mean_head_distances(stacks)
    np.testing.assert_allclose(
        dist.to_numpy(), np.mean([DI.head_distances(s) for s in stacks], axis=0)
    )
    with pytest.raises(InputError):
        M.aggregate_head_metrics([])
