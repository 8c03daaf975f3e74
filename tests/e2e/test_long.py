"""Long inputs on the real models: SmolLM2 scans equal inspect, the pre-flight refuses at once,
a needle at 1k tokens, and corpus batches that survive a memory limit the kernel enforces.

The memory-limit test runs the CLI in a child process inside a fresh cgroup (``memlimits``)
whose limit the kernel enforces lazily, as in a container: an unbounded batch is killed there,
a bounded one finishes. ``test_memory_limits`` runs every other command the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

import inspector
from inspector.errors import ResourceError

from factories import EWT_DEV
from memlimits import killed, memory_cgroup, run_in


def _ewt_text(n_sentences: int = 2000) -> str:
    if not EWT_DEV.exists():
        pytest.skip(f"treebank not found at {EWT_DEV}")
    lines = EWT_DEV.read_text(encoding="utf-8").splitlines()
    texts = [line[len("# text = ") :] for line in lines if line.startswith("# text = ")]
    return " ".join(texts[:n_sentences])


@pytest.mark.slow
def test_smollm2_scan_equals_inspect_at_1k_tokens(smollm2):
    text = _ewt_text()
    ins = smollm2.inspect(text, truncation=True, max_length=1024)
    want = ins.heads.metrics()
    numeric = [c for c in want.columns if c != "sink_token"]
    scans = {
        method: smollm2.scan(
            text, truncation=True, max_length=1024, rows=[-1, 500], topk=4, method=method
        )
        for method in ("eager", "blockwise")
    }
    for scan in scans.values():
        got = scan.head_metrics()
        np.testing.assert_allclose(
            got[numeric].to_numpy(float), want[numeric].to_numpy(float), atol=1e-4, rtol=1e-6
        )
        assert (got["sink_token"] == want["sink_token"]).all()
        np.testing.assert_allclose(
            scan.rows, ins.attention[:, :, list(scan.row_positions)], atol=1e-5
        )
    eager, block = scans["eager"], scans["blockwise"]
    np.testing.assert_allclose(block.rows, eager.rows, atol=1e-5)
    np.testing.assert_allclose(block.pooled, eager.pooled, rtol=2**-10, atol=1e-5)
    np.testing.assert_allclose(block.stack().first_share, eager.stack().first_share, atol=1e-5)


@pytest.mark.slow
def test_smollm2_refuses_a_4k_capture_before_running_the_model(smollm2):
    text = _ewt_text()
    calls = []
    handle = smollm2.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(ResourceError) as info:
            smollm2.inspect(text, truncation=True, max_length=4096, max_memory="4GB")
    finally:
        handle.remove()
    assert calls == []  # refused from the estimate (its time: make bench, bench_long)
    message = str(info.value)
    assert "4 GB (max_memory)" in message and "scan()" in message
    est = inspector.estimate_memory(smollm2, n_tokens=4096)
    assert est.parts["kept attention"] == 30 * 9 * 4096 * 4096 * 4


@pytest.mark.slow
def test_smollm2_generate_8000_tokens_is_refused_with_its_own_advice(smollm2):
    est = inspector.estimate_memory(smollm2, n_tokens=5, what="generate", max_new_tokens=8000)
    with pytest.raises(ResourceError) as info:
        smollm2.generate("Hello", max_new_tokens=8000, max_memory=est.total // 2)
    text = str(info.value)
    assert "max_new_tokens" in text and "shorter input" not in text


@pytest.mark.slow
def test_smollm2_needle_at_1k_tokens_under_the_papers_protocol(smollm2):
    from inspector.corpus.retrieval import KNOWN_ANSWERS, needle_prompt

    hay = _ewt_text()
    result = inspector.retrieval_heads(smollm2, hay, lengths=[1000], depths=[0.5])
    meta = result.metadata
    assert (meta["protocol"], meta["max_new_tokens"]) == ("wu", 50)
    answer = KNOWN_ANSWERS[meta["needle"]]
    assert meta["answer"] == answer
    trial = result.trials.iloc[0]
    assert 990 <= trial["n_tokens"] <= 1000
    assert abs(trial["depth_used"] - 0.5) < 0.02
    # the scored span is the answer's 13 tokens, found as the paper's find_needle_idx finds them:
    # the first window holding > 90% of their 12 distinct ids starts one token early, at "is"
    # (11 of 12), so it ends before "day"; the restated question is not scored
    span = (int(trial["answer_start"]), int(trial["answer_end"]))
    start = int(trial["needle_start"])
    assert span == (start + 8, start + 21)
    prompt = needle_prompt(smollm2.bundle, hay, meta["needle"], meta["question"], 1000, 0.5, answer)
    assert prompt.answer == span
    tok = smollm2.bundle.tokenizer
    ids = prompt.tokens.ids.tolist()
    assert tok.decode(ids[start : start + 8]).strip() == "The best thing to do in San Francisco"
    text = tok.decode(ids[span[0] : span[1]]).strip()
    assert text == "is eat a sandwich and sit in Dolores Park on a sunny"
    # at most 50 tokens, and nothing after a newline
    assert len(tok(trial["response"], add_special_tokens=False)["input_ids"]) <= 50
    assert "\n" not in trial["response"]
    # the answer is recalled, and the heads the README names copy it
    assert trial["success"] and trial["recall"] == 1.0
    top = result.top(5).index.tolist()
    assert set(top) == {(18, 7), (18, 6), (17, 3), (23, 2), (20, 6)}, top
    assert result.heads["score_all_trials"].between(0, 1).all()


# ------------------------------------------------------------------ a kernel-enforced limit


@pytest.mark.slow
def test_atlas_batches_survive_a_kernel_enforced_memory_limit(tmp_path):
    """``--batch-size 100000`` on 512-token texts needs ~6 GB at once; under a 1.5 GB cgroup the
    unbounded batch is killed by the kernel (the limit is real), the bounded one finishes."""
    with memory_cgroup(int(1.5 * 2**30)) as folder:
        words = _ewt_text().split()
        corpus = tmp_path / "long.txt"
        corpus.write_text(
            "\n".join(" ".join(words[i * 450 : (i + 1) * 450]) for i in range(40)) + "\n",
            encoding="utf-8",
        )
        base = ["atlas", "minilm", str(corpus), "--batch-size", "100000", "--no-progress"]
        base += ["--metrics", "entropy,to_prev", "--no-distances", "--max-length", "512"]
        dead = run_in(folder, [*base, "--max-memory", "100GB", "-o", str(tmp_path / "a.parquet")])
        assert killed(dead), (dead.returncode, dead.stderr[-2000:])
        assert not (tmp_path / "a.parquet").exists()
        ok = run_in(folder, [*base, "-o", str(tmp_path / "b.parquet")])
        assert ok.returncode == 0, ok.stderr[-2000:]
        assert "40 texts" in ok.stdout
        atlas = inspector.read_atlas(tmp_path / "b.parquet")
        assert atlas.metadata["n_texts"] == 40
