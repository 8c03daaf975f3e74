"""Long inputs without a model: scan statistics from blocks, memory budgets, retrieval scoring.

A ready capture fed through the scan accumulator (block by block, as a scan feeds it) must give
the numbers computed on the whole array: head metrics, sinks, rows, top-k, pooled maps.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inspector.analysis import metrics as M
from inspector.analysis import retrieval as rt
from inspector.analysis import scan_tables as lg
from inspector.analysis.scan import (
    ScanAccumulator,
    distance_edges,
    pool_edges,
    resolve_rows,
    scan_capture,
)
from inspector.capture import memory as mem
from inspector.capture.types import AttentionStack, Capture, ScanLayout, ScanPart
from inspector.errors import InputError, ResourceError
from inspector.render.sections.scan import repool

from factories import make_tokens, random_weights

STRINGS = ["[CLS]", *[f"w{i}" for i in range(40)], ",", "w", ".", "[SEP]"]


def _capture(causal: bool, seed: int = 1) -> Capture:
    toks = make_tokens(STRINGS)
    w = random_weights(2, 3, len(STRINGS), seed=seed, causal=causal, sharp=3.0)
    return Capture({"self": AttentionStack(w, toks, toks, causal=causal)}, {"model_name": "toy"})


def _numpy_pool(w: np.ndarray, pool: int, how: str) -> np.ndarray:
    """Reference pooling of a full (layer, head, q, k) array into equal bins (last shorter)."""
    rows, cols = pool_edges(w.shape[2], pool), pool_edges(w.shape[3], pool)
    out = np.zeros((*w.shape[:2], len(rows) - 1, len(cols) - 1))
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            cell = w[:, :, rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            out[:, :, i, j] = cell.mean(axis=(2, 3)) if how == "mean" else cell.max(axis=(2, 3))
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_scan_of_blocks_equals_metrics_of_the_whole_map(causal, block_rows):
    cap = _capture(causal)
    stack = cap.stacks["self"]
    data = scan_capture(cap, rows=[-1, 3], topk=5, pool=8, block_rows=block_rows)
    s = data.stack()
    want = M.head_metrics(stack)
    got = lg.scan_head_metrics(s)
    assert list(got.columns) == list(want.columns)
    assert got.index.equals(want.index)
    numeric = [c for c in want.columns if c != "sink_token"]
    np.testing.assert_allclose(
        got[numeric].to_numpy(float), want[numeric].to_numpy(float), atol=1e-6
    )
    assert (got["sink_token"] == want["sink_token"]).all()
    # exact rows
    np.testing.assert_array_equal(s.rows, stack.weights[:, :, [3, len(STRINGS) - 1]])
    # pooled maps: mean and max of every block, as numpy pooling of the full array (stored as
    # float16: within half a float16 step)
    assert s.pooled_mean.dtype == np.float16
    want_mean, want_max = (
        _numpy_pool(stack.weights, 8, "mean"),
        _numpy_pool(stack.weights, 8, "max"),
    )
    np.testing.assert_allclose(s.pooled_mean, want_mean, rtol=2**-11, atol=2**-25)
    np.testing.assert_array_equal(s.pooled_max, want_max.astype(np.float16))
    # first-k share of every row
    np.testing.assert_allclose(s.first_share, stack.weights[..., :4].sum(-1), atol=1e-6)


def test_distance_edges_are_log2_bins_ending_at_n():
    assert distance_edges(1).tolist() == [0, 1]
    assert distance_edges(3).tolist() == [0, 1, 2, 3]
    assert distance_edges(4).tolist() == [0, 1, 2, 4]
    assert distance_edges(5000).tolist()[-3:] == [2048, 4096, 5000]
    assert distance_edges(8192).tolist() == [0, *(2**i for i in range(14))]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block_rows", [1, 7, 64])
def test_distance_mass_is_each_rows_mass_per_log_distance_bin(causal, block_rows):
    cap = _capture(causal, seed=3)
    w = cap.stacks["self"].weights.astype(np.float64)
    n = w.shape[-1]
    s = scan_capture(cap, pool=8, block_rows=block_rows).stack()
    edges = distance_edges(n)
    assert s.distance_edges is not None and s.distance_mass is not None
    assert s.distance_edges.tolist() == edges.tolist()
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    bins = np.searchsorted(edges, distance, side="right") - 1
    bins[:, : s.sink_tokens] = -1  # the first keys are counted by first_share instead
    want = np.stack([(w * (bins == j)).sum(-1).mean(-1) for j in range(len(edges) - 1)], -1)
    np.testing.assert_allclose(s.distance_mass, want, atol=1e-6)
    total = s.distance_mass.sum(-1) + s.first_share.mean(-1)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert want[..., 0].min() > 0 and want[..., -1].max() > 0


def test_topk_is_exact_and_best_first():
    cap = _capture(causal=True)
    w = cap.stacks["self"].weights
    s = scan_capture(cap, topk=3, block_rows=5).stack()
    frame = lg.topk_frame(s)
    assert list(frame.columns) == ["layer", "head", "query_pos", "key_pos", "weight"]
    for (layer, head, q), group in frame.groupby(["layer", "head", "query_pos"]):
        row = w[layer, head, q]
        expect = np.sort(row[: q + 1])[::-1][:3]  # a causal row sees keys 0..q
        np.testing.assert_array_equal(group["weight"].to_numpy(), expect)
        np.testing.assert_array_equal(row[group["key_pos"].to_numpy()], group["weight"].to_numpy())
    # a causal row 0 sees one key: one entry, not three
    first = frame[(frame["layer"] == 0) & (frame["head"] == 0) & (frame["query_pos"] == 0)]
    assert len(first) == 1


def test_rows_spec():
    assert resolve_rows(None, 10) == (9,)
    assert resolve_rows([-1, 0, 0], 10) == (0, 9)
    assert resolve_rows(slice(2, 5), 10) == (2, 3, 4)
    assert resolve_rows([], 10) == ()
    with pytest.raises(InputError, match="out of range"):
        resolve_rows([10], 10)
    assert resolve_rows([3, 12], 5, strict=False) == (3,)


def test_metric_without_row_form_is_nan_on_blocks_only():
    cap = _capture(causal=False)
    with M.METRICS.scoped():
        M.register_metric("to_last_t", lambda w, ctx: w[..., -1].mean(-1), bounds=(0, 1))
        acc = ScanAccumulator(["to_last_t", "entropy"])
        assert acc.wants_full_layers
        with pytest.warns(RuntimeWarning, match="no row form"):
            part = cap.stacks["self"]
            acc.start(ScanLayout((ScanPart("self", part.query, part.key),), (0, 1), (0, 1, 2)))
            for li in range(2):
                acc.block("self", li, 0, part.weights[li])
            data = acc.result()
        assert np.isnan(data.stack().metrics["to_last_t"]).all()
        # fed whole layers (the eager path does), it is exact
        full = scan_capture(cap, metrics=["to_last_t"]).stack().metrics["to_last_t"]
        np.testing.assert_allclose(full, cap.stacks["self"].weights[..., -1].mean(-1))


def test_sinks_and_spans():
    toks = make_tokens([f"t{i}" for i in range(12)], text=" ".join(f"t{i}" for i in range(12)))
    w = np.zeros((1, 2, 12, 12), np.float32)
    w[:, :, :, 0] = 0.6  # a sink on the first token
    w[0, 0, :, 5:8] = 0.4 / 3  # head 0 reads a span 5..7
    w[0, 1, :, 9] = 0.4
    cap = Capture({"self": AttentionStack(w, toks, toks)}, {})
    s = scan_capture(cap, sink_tokens=1).stack()
    table = lg.sink_table(s)
    np.testing.assert_allclose(table["first_k_share"], 0.6, atol=1e-6)
    assert (table["sink_pos"] == 0).all()
    spans = lg.context_spans(s, -1, k=4)
    head0 = spans[spans["head"] == 0]
    assert head0.iloc[0][["start", "end"]].tolist() == [0, 1]
    assert head0.iloc[1][["start", "end"]].tolist() == [5, 8]
    assert lg.merge_spans(np.array([7, 5, 6, 2]), np.ones(4))[0] == (5, 8, 3.0)
    curve = lg.sink_curve(s, bins=3)
    assert len(curve) == 1 * 2 * 3 and np.allclose(curve["first_k_share"], 0.6)
    with pytest.raises(InputError, match="was not kept"):
        lg.context_spans(s, 3)


def test_repool_is_the_mean_of_the_merged_cells():
    rng = np.random.default_rng(0)
    w = rng.random((1, 1, 50, 37)).astype(np.float32)
    fine = _numpy_pool(w, 20, "mean")
    coarse, rows, cols = repool(fine, pool_edges(50, 20), pool_edges(37, 20), 4)
    for i in range(len(rows) - 1):
        for j in range(len(cols) - 1):
            cell = w[0, 0, rows[i] : rows[i + 1], cols[j] : cols[j + 1]]
            assert coarse[0, 0, i, j] == pytest.approx(cell.mean(), rel=1e-6)
    assert coarse.shape[-2] <= 4 and coarse.shape[-1] <= 4


# ------------------------------------------------------------------------------ retrieval


def test_retrieval_scoring_of_a_hand_made_step_sequence():
    # prompt: 10 tokens, the needle is positions 4..7 (ids 40 41 42 43)
    prompt = [1, 2, 3, 9, 40, 41, 42, 43, 5, 6]
    generated = [40, 41, 42, 7, 43]
    # (step, layer=1, head=3): head 0 copies every needle token it generates (4 of 4);
    # head 1 looks at the right token only at steps 0 and 2; head 2 points at a needle token
    # that is not the one generated, or outside the needle.
    pos = np.array(
        [
            [[4, 4, 5]],
            [[5, 0, 6]],
            [[6, 6, 4]],
            [[0, 7, 7]],  # token 7 is not in the needle: no head copies it
            [[7, 3, 9]],
        ]
    )
    scores = rt.retrieval_step_scores(pos, generated, prompt, (4, 8))
    np.testing.assert_allclose(scores, [[1.0, 0.5, 0.0]])
    # steps beyond the generated tokens are ignored
    more = rt.retrieval_step_scores(np.concatenate([pos, pos]), generated, prompt, (4, 8))
    np.testing.assert_allclose(more, scores)


def test_trial_summary_uses_successful_trials_only():
    a = rt.Trial(1000, 0.5, 0.49, 998, 10, 20, 12, 18, "yes", 0.9, np.array([[1.0, 0.0]]))
    b = rt.Trial(1000, 1.0, 1.0, 998, 10, 20, 12, 18, "no", 0.1, np.array([[0.0, 1.0]]))
    heads = rt.head_scores([a, b], [0], [0, 1])
    assert heads["retrieval_score"].tolist() == [1.0, 0.0]
    assert heads["score_all_trials"].tolist() == [0.5, 0.5]
    assert (heads["n_success"] == 1).all()
    assert rt.success_table([a, b]).loc[1000].tolist() == [0.9, 0.1]


def test_rouge_and_needle_insertion():
    assert rt.rouge1_recall("Eat a sandwich in Dolores Park.", "eat a SANDWICH") == 0.5
    assert rt.rouge1_recall("", "x") == 0.0
    text, at = rt.insert_needle("One. Two three. Four five six.", "NEEDLE.", 0.5)
    assert text[at:].startswith("NEEDLE.")
    assert text.startswith("One. Two three. NEEDLE.") or text.startswith("One. NEEDLE.")
    assert rt.insert_needle("abc", "N", 0.0) == ("N abc", 0)
    assert rt.insert_needle("abc", "N", 1.0)[0] == "abc N"
    with pytest.raises(InputError):
        rt.insert_needle("abc", "N", 1.5)


def test_last_row_consumer_keeps_argmax_per_step():
    toks = make_tokens(6)
    layout = ScanLayout((ScanPart("self", toks, toks, True),), (0,), (0, 1))
    acc = rt.LastRowArgmax(prompt_length=4, max_steps=3)
    acc.start(layout)
    for step, hot in enumerate([1, 2, 3]):
        row = np.zeros((2, 1, 4 + step), np.float32)
        row[:, 0, hot] = 1.0
        acc.block("self", 0, 3 + step, row)
    assert acc.argmax[:, 0, 0].tolist() == [1, 2, 3]
    assert acc.steps == 3


# -------------------------------------------------------------------------------- memory


def test_parse_memory():
    assert mem.parse_memory("4GB") == 4 * 10**9
    assert mem.parse_memory("512MiB") == 512 * 2**20
    assert mem.parse_memory("1.5G") == int(1.5 * 2**30)
    assert mem.parse_memory(1000) == 1000
    for bad in ("lots", "-1GB", 0, True, None, "4 parsecs"):
        with pytest.raises(InputError):
            mem.parse_memory(bad)


def test_budget_and_refusal_name_estimate_budget_and_advice():
    est = mem.estimate("inspect() of 4,096 tokens", {"kept attention": 3 * 10**9}, "1GB")
    assert not est.fits
    with pytest.raises(ResourceError) as info:
        est.check(mem.ADVICE["inspect"])
    text = str(info.value)
    assert "3 GB" in text and "1 GB (max_memory)" in text and "scan()" in text
    assert mem.estimate("x", {"a": 10}, "1GB").fits
    free, source = mem.available_memory()
    assert free > 0 and source


def test_cgroup_headroom_reads_v1_and_v2(tmp_path, monkeypatch):
    """A fake cgroup tree: the tightest limit minus usage (less inactive cache) wins."""
    from pathlib import Path

    root = tmp_path / "cg"
    leaf = root / "a" / "b"
    leaf.mkdir(parents=True)
    (root / "a" / "memory.max").write_text("1000000\n")
    (root / "a" / "memory.current").write_text("300000\n")
    (root / "a" / "memory.stat").write_text("inactive_file 100000\n")
    (leaf / "memory.max").write_text("max\n")
    (leaf / "memory.current").write_text("1\n")
    files = {
        "/proc/self/cgroup": "0::/a/b\n",
        "/proc/self/mountinfo": f"30 25 0:26 / {root} rw - cgroup2 cgroup2 rw\n",
    }
    real = Path.read_text

    def fake(self: Path, *a: object, **k: object) -> str:
        return files[str(self)] if str(self) in files else real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", fake)
    free, where = mem.cgroup_headroom() or (0, "")
    assert free == 1000000 - (300000 - 100000)
    assert "1 MB" in where


def test_frame_estimate_grows_with_rows():
    small = mem.attention_bytes(2, 3, 10, 10)
    assert small == 2 * 3 * 10 * 10 * 4
    assert mem.format_bytes(1.5e9) == "1.5 GB" and mem.format_bytes(12) == "12 B"


def test_scan_tables_are_per_head_frames():
    s = scan_capture(_capture(False)).stack()
    table = lg.sink_table(s)
    assert table.index.names == ["layer", "head"]
    assert isinstance(lg.layer_sinks(s), pd.DataFrame)
