"""The report's first section: model facts, the input and its tokens, package versions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...capture.types import Capture
from .. import _assets
from ..names import model_label, source_label
from ..section import ReportContext, Section


def _size(n: Any) -> str:
    if not isinstance(n, int | np.integer) or n <= 0:
        return "unknown"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit} parameters"
    return f"{n} parameters"


def _token_rows(capture: Capture) -> list[dict[str, Any]]:
    """Token sequences to list: the input (and the decoder input for encoder-decoder models)."""
    seqs = []
    if capture.is_encoder_decoder:
        seqs.append(("encoder input", capture.stacks["encoder"].query))
        seqs.append(("decoder input", capture.stacks["decoder"].query))
    else:
        seqs.append(("input", capture.stacks["self"].query))
    out = []
    for label, toks in seqs:
        out.append(
            {
                "label": label,
                "tokens": [
                    {
                        "pos": i,
                        "token": (toks.readable or toks.tokens)[i],
                        "raw": t,
                        "id": int(toks.ids[i]),
                        "word": int(toks.word_ids[i]),
                        "seq": int(toks.sequence_ids[i]),
                        "special": bool(toks.special[i]),
                    }
                    for i, t in enumerate(toks.tokens)
                ],
            }
        )
    return out


def overview_section(ctx: ReportContext) -> Section:
    m = ctx.capture.metadata
    first = next(iter(ctx.capture.stacks.values()))
    versions = dict(m.get("versions") or {})
    versions.update(_assets.versions())
    facts = [
        ("model", model_label(m)),
        ("source", source_label(str(m.get("model_source") or ""))),
        ("type", f"{m.get('model_type', 'unknown')} ({m.get('architecture', '')})"),
        ("class", m.get("model_class", "")),
        ("size", _size(m.get("n_parameters"))),
        (
            "layers x heads",
            f"{m.get('n_layers', len(first.layers))} x {m.get('n_heads', len(first.heads))}"
            + (
                f" (shown: {len(first.layers)} x {len(first.heads)})"
                if (len(first.layers), len(first.heads)) != (m.get("n_layers"), m.get("n_heads"))
                else ""
            ),
        ),
        ("attention", str(m.get("attn_implementation", "unknown"))),
        ("dtype / device", f"{m.get('dtype', '?')} / {m.get('device', '?')}"),
    ]
    texts = [("text", m.get("text"))]
    if m.get("text_pair"):
        texts.append(("pair", m.get("text_pair")))
    if m.get("target"):
        texts.append(("target", m.get("target")))
    return Section(
        "overview",
        "Model and input",
        "sections/overview.html.j2",
        {
            "facts": [(k, str(v)) for k, v in facts if v not in (None, "")],
            "texts": [(k, v) for k, v in texts if v],
            "versions": sorted(versions.items()),
            "sequences": _token_rows(ctx.capture),
            "truncated": bool(m.get("truncated")),
        },
    )
