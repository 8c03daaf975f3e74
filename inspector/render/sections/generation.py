"""The report's generation section: prompt vs generated tokens and a step-by-step table.

A section builder (see :mod:`inspector.render.report`): it returns ``None`` for a capture that
generated nothing, so it can sit in the default section list. Data comes from
:func:`inspector.analysis.steps.generation_steps`; nothing here runs a model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.steps import generation_steps
from ..section import ReportContext, Section

#: Inputs listed per generation step.
TOP_K = 5


def generation_context(capture: Any, top_k: int = TOP_K) -> dict[str, Any] | None:
    """The template values of the generation section, or ``None`` when nothing was generated."""
    kind = "decoder" if capture.is_encoder_decoder else "self"
    query = capture.stacks[kind].query
    generated = np.asarray(query.generated)
    if not generated.any():
        return None
    attend = "cross" if capture.is_encoder_decoder else "self"
    stack = capture.stacks[attend]
    steps = generation_steps(capture, top_k=top_k, kind=attend, skip_special=True)
    rows = []
    for step in sorted(set(steps["step"].tolist())):
        records = steps[steps["step"] == step].to_dict("records")
        first = records[0]
        rows.append(
            {
                "step": int(step),
                "position": int(first["position"]),
                "token": str(first["token"]),
                "query_pos": int(first["query_pos"]),
                "inputs": [
                    {
                        "pos": int(r["key_pos"]),
                        "token": str(r["key_token"]),
                        "weight": float(r["weight"]),
                        "generated": bool(r["key_generated"]),
                    }
                    for r in records
                ],
            }
        )
    meta = capture.metadata
    return {
        "tokens": [
            {
                "pos": i,
                "token": t,
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
    }


def generation_section(ctx: ReportContext) -> Section | None:
    """Section builder: prompt vs generated tokens, and what each step attended to most."""
    context = generation_context(ctx.capture)
    if context is None:
        return None
    return Section(
        "generation",
        "Generation",
        "sections/generation.html.j2",
        context,
        css=("generation.css",),
    )
