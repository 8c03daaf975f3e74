"""Rendering: bertviz views and self-contained HTML pages (never imported by lower layers).

Everything here is a pure function of captured data (import-linter checks that rendering never
runs a model). Pages embed every script they need (bertviz's JavaScript, d3 5.7.0, jQuery 2.2.4)
and the attention once, quantised (:mod:`inspector.render.encode`); they never use the network.
One assembler (:mod:`.page`) builds every page from sections (:mod:`.section`,
:mod:`.sections`).
"""

from .bertviz import head_view, model_view, neuron_view
from .encode import decode_weights, encode_weights, max_abs_error
from .page import RenderedHTML, Report
from .report import atlas_report, build_report, comparison_report
from .section import ReportContext, Section
from .sections import REPORT_SECTIONS, register_section
from .trace import trace_page  # also registers the "why this token" page of a Routes result

__all__ = [
    "REPORT_SECTIONS",
    "RenderedHTML",
    "Report",
    "ReportContext",
    "Section",
    "atlas_report",
    "build_report",
    "comparison_report",
    "decode_weights",
    "encode_weights",
    "head_view",
    "max_abs_error",
    "model_view",
    "neuron_view",
    "register_section",
    "trace_page",
]
