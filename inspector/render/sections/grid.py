"""The report's "Every head" section: each head's map as small multiples, hover and zoom."""

from __future__ import annotations

from ..section import ReportContext, Section


def head_grid_section(ctx: ReportContext) -> Section:
    grids = []
    for kind, stack in ctx.capture.stacks.items():
        ctx.page.stack(kind)
        grids.append(
            {
                "kind": kind,
                "label": f"{kind} attention" if kind != "self" else "self-attention",
                "cells": len(stack.layers) * len(stack.heads),
                "shape": stack.shape,
            }
        )
    return Section("head-grid", "Every head", "sections/head_grid.html.j2", {"grids": grids})
