"""The report's "Every head" section: each head's map as small multiples, hover and zoom.

One ``grid`` figure panel per attention stack (:func:`inspector.render.figures.head_grid`),
drawn by ``head-grid.js`` from the attention the page embeds; a click on a head opens its map
(a ``stack`` panel) in a zoom box kept in view.
"""

from __future__ import annotations

from ..figures import FIGURE_SCRIPTS, FigureSpec, head_grid
from ..section import ReportContext, Section


def head_grid_section(ctx: ReportContext) -> Section:
    figures = []
    for kind, stack in ctx.capture.stacks.items():
        ctx.page.stack(kind)
        label = f"{kind} attention" if kind != "self" else "self-attention"
        figures.append(
            FigureSpec(
                f"head-grid-{kind}",
                f"every head — {label}",
                (head_grid(kind),),
                caption=(
                    f"{len(stack.layers)} layers x {len(stack.heads)} heads, "
                    f"{stack.shape[2]} x {stack.shape[3]} tokens"
                ),
            )
        )
    return Section(
        "head-grid",
        "Every head",
        "sections/head_grid.html.j2",
        {"figures": figures},
        scripts=FIGURE_SCRIPTS,
    )
