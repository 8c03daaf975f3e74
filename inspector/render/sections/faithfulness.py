"""The "Which map to trust" section: how faithful each token-level explanation was.

A small table, most faithful first (AOPC comprehensiveness, ties by τ), with the 95% interval of
each mean over the texts scored and the paired difference to the random floor, and the sentence
saying which map the page shows first because of it. The numbers come ready in a
:class:`~inspector.analysis.faithfulness_table.Faithfulness` (computing them runs the model,
which rendering must not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...analysis.faithfulness import METRICS
from ...analysis.faithfulness_table import FLOOR, Faithfulness
from ..names import model_label
from ..section import Section

#: The maps the explain page draws, by the explainer that scores them.
EXPLAIN_MAPS = ("attention", "norms", "rollout")
#: How the table names the metrics.
METRIC_LABELS = {
    "comprehensiveness": "comprehensiveness ↑",
    "sufficiency": "sufficiency ↓",
    "tau_loo": "τ with leave-one-out ↑",
}


def map_order(result: Faithfulness, maps: Sequence[str] = EXPLAIN_MAPS) -> list[str]:
    """``maps`` most faithful first (those the result did not score keep their order, last)."""
    ranking = [m for m in result.ranking() if m in maps]
    return ranking + [m for m in maps if m not in ranking]


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if value is not None and np.isfinite(value) else "–"


def trust_context(
    result: Faithfulness, *, shown: Sequence[str] = (), note: str = ""
) -> dict[str, Any]:
    """The template values: rows best first, the first map shown and why."""
    stats = result.stats()
    labels = result.metadata.get("labels") or {}
    rows = []
    for method in result.ranking():
        cells = []
        for metric in METRICS:
            s = stats[(method, metric)]
            low, high = s["ci95_low"], s["ci95_high"]
            cells.append(
                {
                    "mean": _fmt(s["mean"]),
                    "interval": f"[{_fmt(low)}, {_fmt(high)}]" if np.isfinite(low) else "",
                    "vs_random": _fmt(s.get("vs_random")) if "vs_random" in s else "",
                }
            )
        rows.append({"method": method, "label": labels.get(method, method), "cells": cells})
    first = next((m for m in result.ranking() if m in shown), None)
    sentence = ""
    if first is not None:
        s = stats[(first, "comprehensiveness")]
        others = [labels.get(m, m) for m in shown if m != first]
        sentence = (
            f"This page shows {labels.get(first, first)} first: of the maps it draws "
            f"({', '.join([labels.get(first, first), *others])}), it was the most faithful here "
            f"(AOPC comprehensiveness {_fmt(s['mean'])}"
            + (
                f", 95% interval [{_fmt(s['ci95_low'])}, {_fmt(s['ci95_high'])}]"
                if np.isfinite(s["ci95_low"])
                else ""
            )
            + ")."
        )
    n = result.n_texts
    return {
        "metrics": [METRIC_LABELS[m] for m in METRICS],
        "rows": rows,
        "sentence": sentence,
        "note": note,
        "n_texts": n,
        "target": result.metadata.get("target", ""),
        "model": model_label(result.metadata) if result.metadata.get("model_name") else "",
        "has_floor": FLOOR in result.methods,
        "steps": result.metadata.get("steps", "k"),
        "skipped": len(result.metadata.get("skipped") or []),
    }


def faithfulness_section(
    result: Faithfulness, *, shown: Sequence[str] = (), note: str = ""
) -> Callable[[Any], Section]:
    """A section builder (any page's context) showing ``result``; ``shown``: the maps the page
    draws, in the order it draws them (the sentence names the first); ``note``: a line after
    the sentence."""

    def build(_ctx: Any) -> Section:
        return Section(
            "which-map-to-trust",
            "Which map to trust",
            "sections/faithfulness.html.j2",
            trust_context(result, shown=shown, note=note),
        )

    return build


__all__ = ["EXPLAIN_MAPS", "faithfulness_section", "map_order", "trust_context"]
