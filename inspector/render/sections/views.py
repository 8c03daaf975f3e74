"""The report's bertviz sections: the head view and the model view (bertviz's own JavaScript)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..bertviz import add_head_view, add_model_view, render_view_container
from ..section import ReportContext, Section


def _view_section(
    ctx: ReportContext, kind: str, title: str, add: Callable[..., dict[str, Any]]
) -> Section:
    """The ``kind`` view added to the page with the report's ``{kind}_view`` options."""
    spec = add(ctx.page, **ctx.options.get(f"{kind}_view", {}))
    return Section(
        f"{kind}-view",
        title,
        "sections/bertviz.html.j2",
        {"view": render_view_container(spec), "kind": kind},
    )


def head_view_section(ctx: ReportContext) -> Section:
    return _view_section(ctx, "head", "Head view (bertviz)", add_head_view)


def model_view_section(ctx: ReportContext) -> Section:
    return _view_section(ctx, "model", "Model view (bertviz)", add_model_view)
