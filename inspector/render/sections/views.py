"""The report's bertviz sections: the head view and the model view (bertviz's own JavaScript)."""

from __future__ import annotations

from ..bertviz import add_head_view, add_model_view, render_view_container
from ..section import ReportContext, Section


def head_view_section(ctx: ReportContext) -> Section:
    spec = add_head_view(ctx.page, **ctx.options.get("head_view", {}))
    return Section(
        "head-view",
        "Head view (bertviz)",
        "sections/bertviz.html.j2",
        {"view": render_view_container(spec), "kind": "head"},
    )


def model_view_section(ctx: ReportContext) -> Section:
    spec = add_model_view(ctx.page, **ctx.options.get("model_view", {}))
    return Section(
        "model-view",
        "Model view (bertviz)",
        "sections/bertviz.html.j2",
        {"view": render_view_container(spec), "kind": "model"},
    )
