"""The "why each generated token" section of a generation report.

For an inspection made by ``m.generate(...)`` (with the model at hand), one forward pass over
the generated sequence gives the direct logit attribution of every generated token
(:func:`inspector.explain.attribution.trace_positions`); :func:`why_section` turns it into a
report section (:func:`inspector.render.trace.generation_trace_section`).
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedModelError
from ..explain.attribution import stack_tokens, trace_positions
from ..render.sections import REPORT_SECTIONS
from ..render.trace import generation_trace_section, step_record

#: Generated tokens a report explains (the first ones).
MAX_STEPS = 64


def why_section(inspection: Any, *, required: bool = False) -> Any:
    """A section builder listing the heads behind every generated token, or ``None`` when the
    inspection generated nothing or was read back without its model (``required=True``: an
    error says why instead; an architecture the attribution does not follow is then an error
    too, otherwise the section is left out)."""
    capture = inspection.capture
    model = inspection.model
    kind = "decoder" if capture.is_encoder_decoder else "self"
    query = capture.stacks[kind].query
    n0 = query.prompt_length
    n_gen = len(query) - n0
    if n_gen <= 0 or model is None:
        if required:
            raise UnsupportedModelError(
                "why=True explains the tokens of m.generate(...) with the model that made them"
            )
        return None
    bundle = model.bundle
    steps = list(range(min(n_gen, MAX_STEPS)))
    positions = [n0 - 1 + s for s in steps]
    tokens = [int(query.ids[n0 + s]) for s in steps]
    try:
        traced = trace_positions(bundle, capture, positions, tokens, per_token=True)
    except UnsupportedModelError:
        if required:
            raise
        return None
    readable = list(stack_tokens(capture, kind).readable or query.tokens)
    records = [
        step_record(s, t.frame, t.per_token, readable) for s, t in zip(steps, traced, strict=True)
    ]
    return generation_trace_section(records)


def after(name: str, builder: Any) -> list[Any]:
    """The default report's section builders with ``builder`` after the section ``name``."""
    names = REPORT_SECTIONS.names()
    at = names.index(name) + 1 if name in names else len(names)
    builders = list(REPORT_SECTIONS.values())
    return [*builders[:at], builder, *builders[at:]]


__all__ = ["MAX_STEPS", "after", "why_section"]
