"""The report's generation section: prompt vs generated tokens and a step-by-step table.

A section builder (see :mod:`inspector.render.report`): it returns ``None`` for a capture that
generated nothing, so it can sit in the default section list. Data comes from
:func:`inspector.analysis.steps.generation_steps`; nothing here runs a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.steps import StepOptions, generation_steps
from ..section import ReportContext, Section, styled_section

#: Inputs listed per generation step.
TOP_K = 5
#: The first token is called an attention sink when it takes at least this share of every step.
SINK_SHARE = 0.3


def generation_context(capture: Any, top_k: int = TOP_K) -> dict[str, Any] | None:
    """The template values of the generation section, or ``None`` when nothing was generated."""
    kind = "decoder" if capture.is_encoder_decoder else "self"
    query = capture.stacks[kind].query
    generated = np.asarray(query.generated)
    if not generated.any():
        return None
    attend = "cross" if capture.is_encoder_decoder else "self"
    stack = capture.stacks[attend]
    keys = stack.key
    readable = list(keys.readable or keys.tokens)
    # one extra input per step, so the list stays top_k long when the sink is left out
    steps = generation_steps(capture, StepOptions(top_k + 1, kind=attend, skip_special=True))
    # the first key's share of each step's attention (mean over layers and heads)
    first = stack.weights[:, :, :, 0].mean(axis=(0, 1))
    rows = []
    for step in sorted(set(steps["step"].tolist())):
        records = steps[steps["step"] == step].to_dict("records")
        head = records[0]
        inputs = [
            {
                "pos": int(r["key_pos"]),
                "token": readable[int(r["key_pos"])],
                "raw": str(r["key_token"]),
                "weight": float(r["weight"]),
                "generated": bool(r["key_generated"]),
            }
            for r in records
        ]
        rows.append(
            {
                "step": int(step),
                "position": int(head["position"]),
                "token": list(query.readable or query.tokens)[int(head["position"])],
                "raw": str(head["token"]),
                "query_pos": int(head["query_pos"]),
                "first_share": float(first[int(head["query_pos"])]),
                "with_sink": inputs[:top_k],
                "without_sink": [i for i in inputs if i["pos"] != 0][:top_k],
            }
        )
    shares = [r["first_share"] for r in rows]
    sink = {
        "token": readable[0],
        "raw": keys.tokens[0],
        "special": bool(keys.special[0]),
        "low": min(shares) if shares else 0.0,
        "high": max(shares) if shares else 0.0,
        "is_sink": bool(shares) and min(shares) >= SINK_SHARE,
    }
    meta = capture.metadata
    return {
        "tokens": [
            {
                "pos": i,
                "token": (query.readable or query.tokens)[i],
                "raw": t,
                "generated": bool(generated[i]),
                "special": bool(query.special[i]),
            }
            for i, t in enumerate(query.tokens)
        ],
        "prompt_length": query.prompt_length,
        "n_generated": int(generated.sum()),
        "stopped": meta.get("stopped", ""),
        "generated_text": meta.get("generated_text", ""),
        "options": sorted((meta.get("generation_kwargs") or {}).items()),
        "kind": attend,
        "n_layers": len(stack.layers),
        "n_heads": len(stack.heads),
        "top_k": top_k,
        "steps": rows,
        "sink": sink,
    }


def generation_section(ctx: ReportContext) -> Section | None:
    """Section builder: prompt vs generated tokens, and what each step attended to most."""
    return styled_section("generation", "Generation", generation_context(ctx.capture))
