"""The memory pre-flight on tiny models: read under the model's lock, steps bounded to what is
estimated (logits of one position, ablation rows that fit, metrics and comparisons one layer at
a time), and estimates that follow what a step keeps (a scan's top-k table).

The kernel-enforced version (SmolLM2 under a cgroup limit) is ``tests/e2e/test_memory_limits``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch

import inspector
from inspector.analysis import metrics as _metrics
from inspector.capture import memory as _memory
from inspector.errors import ResourceError
from inspector.explain.budget import ablation_estimate, ablation_rows

TEXT = "The cat sat on the mat because it was tired."


def test_the_budget_is_read_under_the_models_lock(tiny, monkeypatch, tmp_path):
    """Every step that runs the model reads what is free while holding the model's lock, so a
    thread waiting for the lock measures what the one before it keeps."""
    m = tiny["gpt2"]
    lock = m.bundle.lock
    seen: list[bool] = []
    real = _memory.available_memory

    def spy() -> tuple[int, str]:
        seen.append(lock._is_owned())  # an RLock: owned by this thread?
        return real()

    monkeypatch.setattr(_memory, "available_memory", spy)
    ins = m.inspect(TEXT)
    m.generate("The cat", max_new_tokens=2)
    inspector.scan(m, TEXT, topk=2)
    ins.explain(top=1)
    ins.explain.gradient()
    ins.report(tmp_path / "r.html")
    ins.to_parquet(tmp_path / "f.parquet")
    assert len(seen) >= 8 and all(seen), seen


def test_a_waiting_thread_measures_what_the_first_holds(tiny, monkeypatch):
    """Two threads, room for one capture: the second is refused instead of both allocating."""
    m = tiny["gpt2"]
    need = inspector.estimate_memory(m, TEXT).total
    held: list[int] = []
    budget = int(1.5 * need)

    def free() -> tuple[int, str]:
        return budget - sum(held), "a test budget"

    monkeypatch.setattr(_memory, "available_memory", free)
    results: list[str] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        try:
            ins = m.inspect(TEXT)
            results.append("ok" if ins.attention.size else "empty")
        except ResourceError:
            results.append("refused")

    original = inspector.capture.run._record_capture

    def record(*args: Any, **kwargs: Any) -> Any:
        cap = original(*args, **kwargs)
        held.append(need)  # allocated inside the lock, as the real capture's buffers are
        return cap

    monkeypatch.setattr(inspector.capture.run, "_record_capture", record)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok", "refused"], results


def _lm_head_shapes(m: Any) -> tuple[list[tuple[int, ...]], Any]:
    shapes: list[tuple[int, ...]] = []
    handle = m.model.get_output_embeddings().register_forward_hook(
        lambda _m, _a, out: shapes.append(tuple(out.shape))
    )
    return shapes, handle


def test_ablation_passes_keep_the_logits_of_the_targets_position_only(tiny):
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    shapes, handle = _lm_head_shapes(m)
    try:
        fast = ins.explain.ablation(target="predicted", batch_size=5)
        grad = ins.explain.gradient(target="predicted")
    finally:
        handle.remove()
    assert shapes and all(s[1] == 1 for s in shapes), shapes  # (rows, 1 position, vocab)
    # the same deltas as a plain ablation reading the full logits (a callable target)
    full = ins.explain.ablation(target=_logprob_of_predicted(m, ins), batch_size=5)
    np.testing.assert_allclose(fast["delta"], full["delta"], atol=1e-5)
    assert np.isfinite(grad["delta"]).all()


def _logprob_of_predicted(m: Any, ins: Any) -> Any:
    """The log-probability of the token the unablated model predicts next (full logits)."""
    with torch.no_grad():
        ids = torch.tensor(np.array(ins.token_ids))[None]
        token = int(m.model(input_ids=ids).logits[0, -1].argmax())
    return lambda out: torch.log_softmax(out.logits[:, -1].float(), -1)[:, token]


def test_ablation_rows_follow_the_budget(tiny):
    """A budget with room for 4 rows: passes of 4 rows (3 ablations each), the same deltas."""
    m = tiny["gpt2"]
    ins = m.inspect(TEXT)
    inputs = {"input_ids": torch.tensor(np.array(ins.token_ids))[None]}
    four = ablation_estimate(m.bundle, inputs, 4, cut=True).total
    budget = _memory.Budget(four + 1, "max_memory")
    assert ablation_rows(m.bundle, inputs, 73, cut=True, budget=budget) == 4
    passes: list[int] = []
    handle = m.model.register_forward_pre_hook(
        lambda _m, args, kwargs: passes.append(int(kwargs["input_ids"].shape[0])),
        with_kwargs=True,
    )
    try:
        bounded = ins.explain.ablation(max_memory=four + 1)
    finally:
        handle.remove()
    n_heads = m.bundle.n_layers * m.bundle.n_heads
    assert max(passes) <= 4 and len(passes) == -(-n_heads // 3)
    np.testing.assert_allclose(bounded["delta"], ins.explain.ablation()["delta"], atol=1e-6)
    with pytest.raises(ResourceError, match="head ablation, 2 rows"):
        ins.explain.ablation(max_memory=ablation_estimate(m.bundle, inputs, 2, cut=True).total - 1)


def test_metrics_see_one_layer_at_a_time(tiny):
    m = tiny["bert"]
    ins = m.inspect(TEXT)
    shapes: list[tuple[int, ...]] = []

    def probe(w: np.ndarray, ctx: Any) -> np.ndarray:
        shapes.append(w.shape)
        return w[..., 0].mean(-1)

    with _metrics.METRICS.scoped():
        _metrics.register_metric("first_key_probe", probe)
        frame = ins.heads.metrics(["first_key_probe", "to_first"])
    n_l, n_h, n_q, n_k = ins.attention.shape
    assert shapes == [(1, n_h, n_q, n_k)] * n_l
    np.testing.assert_allclose(frame["first_key_probe"], frame["to_first"], atol=1e-12)


def test_a_scans_estimate_counts_its_top_k(tiny):
    m = tiny["gpt2"]
    plain = inspector.estimate_memory(m, n_tokens=40, what="scan")
    top = inspector.estimate_memory(m, n_tokens=40, what="scan", topk=10)
    # the top-k arrays (8 bytes a slot) and the table made of them (17 bytes a slot)
    n_lh = m.bundle.n_layers * m.bundle.n_heads
    assert top.total - plain.total == n_lh * 40 * 10 * (8 + 17)
