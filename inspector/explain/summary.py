"""The "what mattered" summary of one input: raw vs norm-based vs rollout, head importance, sinks.

Runs the model (norms and importance) through the explain methods; the result, an
:class:`~.result.Explanation`, is pure data the report renders.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import Capture
from ..errors import InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from .budget import explain_estimate
from .flow import renormalise, rollout
from .importance import Method, head_importance
from .model import default_kind
from .norms import attention_norms
from .result import Explanation, sink_heads
from .target import Target


def explain(
    bundle: ModelBundle,
    capture: Capture,
    *,
    target: Target | str | Callable[[Any], Any] | None = None,
    method: Method = "ablation",
    layer: int | None = None,
    top: int = 4,
    progress: bool | None = None,
    kind: str | None = None,
    max_memory: MemoryLimit | None = None,
) -> Explanation:
    """Compute the "what mattered" summary of one self-attention stack of a capture.

    Args:
        progress: a bar over head ablations on stderr (``None``: on a terminal; elsewhere a
            line every 30 s, see :mod:`inspector._progress`).
        kind: the stack: ``self``, or an encoder-decoder's ``encoder`` (default) or ``decoder``
            (cross attention has no square map to roll out; use its norms and importance).
        max_memory: memory budget (``"4GB"``; default: what is free now). The whole summary
            (:func:`explain_estimate`: norms, rollout, the importance passes with as many rows
            per pass as fit) is checked under the model's lock before anything runs.
    """
    kind = kind or default_kind(bundle)
    if kind not in capture.stacks:
        raise InputError(f"explain: no {kind!r} attention here; available: {list(capture.stacks)}")
    if kind == "cross":
        raise UnsupportedModelError(
            "explain needs a self-attention stack (its maps and rollout are token x token): use "
            ".encoder or .decoder; cross attention has attention_norms() and head_importance()"
        )
    stack = capture.stacks[kind]
    n_l, n_h = bundle.stack_shape(kind)
    if stack.layers != tuple(range(n_l)) or stack.heads != tuple(range(n_h)):
        raise InputError("explain needs a capture of every layer and head (no layers=/heads=)")
    timings: dict[str, float] = {}
    plan: list[tuple[int, int]] = []

    def estimate() -> _memory.MemoryEstimate:
        est, rows, held = explain_estimate(
            bundle, stack, capture, target, method, budget=_memory.memory_budget(max_memory)
        )
        plan.append((rows, held))
        return est

    with _memory.preflight(bundle.lock, estimate, "Use a shorter input"):
        rows, held = plan[-1]
        t0 = time.perf_counter()
        norms = attention_norms(bundle, stack, capture=capture, max_memory=max_memory)
        timings["norms"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        roll = rollout(stack)
        timings["rollout"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        imp = head_importance(
            bundle, capture, target=target, method=method, kind=kind, progress=progress,
            batch_size=rows, max_memory=max_memory,
            reserved=held if MemoryLimit.of(max_memory).bytes is not None else 0,
        )  # fmt: skip
        timings["importance"] = time.perf_counter() - t0
    chosen = n_l // 2 if layer is None else (layer + n_l if layer < 0 else layer)
    if not 0 <= chosen < n_l:
        raise InputError(f"layer {layer} is out of range for {n_l} layers")
    ranked = imp.sort_values("importance", ascending=False, kind="stable").head(top)
    top_heads = [(int(li), int(hi)) for li, hi in cast(Any, ranked.index)]
    return Explanation(
        tokens=stack.query,
        layer=chosen,
        raw=stack.weights[chosen].mean(axis=0),
        norm=renormalise(norms.norms[chosen]).mean(axis=0),
        rollout=roll,
        importance=imp,
        top_heads=top_heads,
        top_maps=[stack.weights[li, hi] for li, hi in top_heads],
        sinks=sink_heads(stack.weights, norms.norms, stack.query),
        target=str(imp.attrs["inspector"]["target"]),
        timings=timings,
    )


__all__ = ["explain"]
