"""Explain costs on MiniLM at 128 tokens, as ratios to one forward pass measured in the same run.

Goals: ablation of all 72 heads <= 25x a forward pass (one pass that starts with the clean row and
adds each layer's 12 ablated rows at that layer, so layers below are shared: 12·(6+5+...+1)
row-layers instead of 72·6), gradient importance <= 3x, rollout <= 0.1x. Attention flow at
its token limit is timed too (absolute seconds: it is pure Python in networkx, no forward pass
involved).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

N_TOKENS = 128
TEXT = (
    "The committee met on Tuesday to review the budget, and after a long discussion about "
    "schools, roads and the new library, its members agreed to postpone the vote until spring. "
)


def _best_time(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest of ``repeats`` runs after a warm-up: the least disturbed by other processes."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(
    model: str = "minilm", n_tokens: int = N_TOKENS, repeats: int = 3, flow_tokens: int = 0
) -> str:
    """``flow_tokens``: attention flow's input length (0: its limit, ``FLOW_MAX_TOKENS``)."""
    import numpy as np
    import torch

    import inspector
    from inspector import explain as ex
    from inspector.explain.flow import FLOW_SECONDS_AT_LIMIT
    from inspector.explain.model import inputs_for

    m = inspector.load(model)
    bundle = m.bundle
    ids = bundle.tokenizer(TEXT * 8, truncation=True, max_length=n_tokens)["input_ids"]
    text = bundle.tokenizer.decode(ids[1:-1])
    ins = m.inspect(text, truncation=True, max_length=n_tokens)
    n = len(ins.tokens)
    inputs = inputs_for(bundle, ins.stack.query)
    n_heads = len(ins.stack.layers) * len(ins.stack.heads)

    def forward() -> None:
        with torch.inference_mode():
            bundle.model(**inputs)

    t_forward = _best_time(forward, repeats + 4)
    rows: list[tuple[str, float, str]] = []
    t = _best_time(lambda: ex.head_importance(bundle, inputs, method="ablation"), repeats)
    rows.append(
        (f"ablation, all {n_heads} heads (1 pass, shared prefix, 1 to {n_heads + 1} rows)", t,
         "<= 25x")
    )  # fmt: skip
    t = _best_time(
        lambda: ex.head_importance(bundle, inputs, method="ablation", batch_size=9), repeats
    )
    rows.append(("ablation, batches of 9 rows", t, ""))
    t = _best_time(lambda: ex.head_importance(bundle, inputs, method="gradient"), repeats)
    rows.append(("gradient (gates, one forward + backward)", t, "<= 3x"))
    t = _best_time(lambda: ex.rollout(ins.stack), repeats + 4)
    rows.append(("rollout (pure)", t, "<= 0.1x"))
    t = _best_time(lambda: ex.attention_norms(bundle, ins.stack), repeats + 2)
    rows.append(("norm-based attention (forward + value hooks)", t, ""))

    rng = np.random.default_rng(0)
    k = flow_tokens or ex.FLOW_MAX_TOKENS
    w = np.exp(3 * rng.normal(size=(len(ins.stack.layers), len(ins.stack.heads), k, k)))
    w /= w.sum(-1, keepdims=True)
    start = time.perf_counter()
    ex.attention_flow(w)
    t_flow = time.perf_counter() - start

    lines = [
        f"{m.name} ({len(ins.stack.layers)} x {len(ins.stack.heads)} heads), {n} tokens; one "
        f"forward pass: {t_forward * 1000:.1f} ms "
        f"({torch.get_num_threads()} threads)",
        "",
        "| operation | seconds | x forward | goal |",
        "|---|---:|---:|---|",
    ]
    for name, seconds, goal in rows:
        lines.append(f"| {name} | {seconds:.3f} | {seconds / t_forward:.2f} | {goal} |")
    lines.append(
        f"| attention flow at {k} tokens ({len(ins.stack.layers)} layers) | {t_flow:.1f} | - | "
        f"documented: up to about {FLOW_SECONDS_AT_LIMIT:.0f} s |"
    )
    return "\n".join(lines)


def smoke(models: dict[str, str]) -> str:
    """The same table on a tiny decoder: 16 tokens, one repeat, attention flow at 8 tokens."""
    return main(models["decoder"], n_tokens=16, repeats=1, flow_tokens=8)


if __name__ == "__main__":
    print(main())
