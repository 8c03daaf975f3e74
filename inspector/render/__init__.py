"""Rendering: bertviz views and self-contained HTML reports (never imported by lower layers).

Everything here is a pure function of a :class:`inspector.capture.Capture` except
:func:`neuron_view`, which needs the model to compute query and key vectors. Pages embed every
script they need (bertviz's JavaScript, d3 5.7.0, jQuery 2.2.4) and the attention once, quantised
(:mod:`inspector.render.encode`); they never use the network.
"""

from .encode import decode_weights, encode_weights, max_abs_error
from .neuron import neuron_view
from .report import (
    DEFAULT_SECTIONS,
    HEAD_METRICS,
    Report,
    ReportContext,
    Section,
    build_report,
    head_metrics_frame,
)
from .views import RenderedHTML, head_view, model_view

__all__ = [
    "DEFAULT_SECTIONS",
    "HEAD_METRICS",
    "RenderedHTML",
    "Report",
    "ReportContext",
    "Section",
    "build_report",
    "decode_weights",
    "encode_weights",
    "head_metrics_frame",
    "head_view",
    "max_abs_error",
    "model_view",
    "neuron_view",
]
