"""The self-contained HTML report: one file with every view, figure and the data, no network.

A report is a list of :class:`Section` objects rendered into ``templates/report.html.j2``.
Each section is built by a *section builder*, a function ``(ReportContext) -> Section | None``;
:data:`DEFAULT_SECTIONS` lists the standard ones in page order:

``overview`` (model facts, input, tokens) · ``head-view`` and ``model-view`` (bertviz) ·
``head-grid`` (every head's map, small multiples with hover and zoom) · ``head-metrics``
("Head metrics & roles" from :mod:`inspector.render.heads`: roles at a glance, a layer x head
heatmap per metric, head distances in cluster order, MDS scatter, sortable table) · ``data``
(CSV downloads).

Figures are data: a section passes :class:`inspector.render.figures.FigureSpec` objects to
``sections/_figures.html.j2`` and lists ``figures.js`` in its ``scripts``; the page draws them as
SVG (with SVG and PNG downloads), so building a report draws nothing in Python.

Adding a section (head analysis, "what mattered", generation, ...) needs no change here::

    def my_section(ctx: ReportContext) -> Section | None:
        return Section("my-id", "My title", "sections/my.html.j2", {"rows": ...})

    build_report(capture, extra_sections=[my_section])  # or pass sections=(...) to reorder

Put the section's template under ``templates/sections/`` (autoescaped; pass data to scripts with
``|tojson``), or give ready ``html=Markup(...)``. A section's ``scripts`` / ``css`` name files in
``static/``; each is inlined once per page. Scripts run after ``inspector.js`` and get the decoded
attention through ``inspector.onReady(function (api) { api.stacks[kind].get(l, h, q, k) })``.
Builders may add bertviz views with ``ctx.page`` (see :mod:`inspector.render.views`).

Head metrics come from :func:`head_metrics_frame`, which reads ``inspector.metrics``' registry.
The page is deterministic: the same capture gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from .. import metrics as _metrics
from ..capture import Capture
from ..errors import InputError
from . import _assets
from .generation_section import generation_section
from .heads import head_analysis_section
from .views import (
    PageData,
    RenderedHTML,
    add_head_view,
    add_model_view,
    render_page,
    render_view_container,
)

#: The head metrics of the report: ``(column, label)``; the columns of :func:`head_metrics_frame`.
HEAD_METRICS: tuple[tuple[str, str], ...] = (
    ("entropy", "entropy (nats)"),
    ("max_weight", "max weight"),
    ("to_first", "attention to first token"),
    ("to_special", "attention to special tokens"),
)


@dataclass(frozen=True)
class Section:
    """One part of a report.

    Attributes:
        id: HTML id (anchor) of the section, unique in the report.
        title: heading shown and listed in the navigation.
        template: template under ``templates/`` rendered with ``context`` (autoescaped).
        context: values for the template.
        html: ready HTML instead of a template (must already be safe ``Markup``).
        scripts: static files (``static/``) the section needs, inlined once per page.
        css: static stylesheets the section needs.
    """

    id: str
    title: str
    template: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    html: Markup | None = None
    scripts: tuple[str, ...] = ()
    css: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.template is None) == (self.html is None):
            raise InputError(f"section {self.id!r}: give either template= or html=")
        if self.html is not None and not isinstance(self.html, Markup):
            raise InputError(f"section {self.id!r}: html= must be markupsafe.Markup (escaped)")

    def render(self) -> Markup:
        if self.html is not None:
            return self.html
        env = _assets.environment()
        return Markup(env.get_template(self.template).render(**self.context))


@dataclass
class ReportContext:
    """What section builders get: the capture, the page data and shared, cached results."""

    capture: Capture
    page: PageData
    options: Mapping[str, Any] = field(default_factory=dict)
    _metrics: pd.DataFrame | None = None

    @property
    def metrics(self) -> pd.DataFrame:
        if self._metrics is None:
            self._metrics = head_metrics_frame(self.capture)
        return self._metrics


SectionBuilder = Callable[[ReportContext], "Section | None"]


# --------------------------------------------------------------------------- head metrics


def head_metrics_frame(capture: Capture, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (kind, layer, head) with the metrics ``names`` (default :data:`HEAD_METRICS`),
    computed by :func:`inspector.metrics.head_metrics` (its registry: any registered name works).
    """
    names = list(names) if names is not None else [m for m, _ in HEAD_METRICS]
    frames = []
    for kind, stack in capture.stacks.items():
        frame = _metrics.head_metrics(stack, names)[names].reset_index()
        frame.insert(0, "kind", kind)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- standard sections


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
                        "token": t,
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
        ("model", m.get("model_name", "unknown")),
        ("source", m.get("model_source", "")),
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


def data_section(ctx: ReportContext) -> Section:
    n_rows = sum(int(np.prod(s.shape)) for s in ctx.capture.stacks.values())
    return Section(
        "data",
        "Data",
        "sections/data.html.j2",
        {
            "n_rows": n_rows,
            "precision": ctx.page.precision,
            "encoder_decoder": ctx.capture.is_encoder_decoder,
            "stem": _file_stem(str(ctx.capture.metadata.get("model_name", "attention"))),
        },
    )


def _file_stem(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.rsplit("/", 1)[-1])
    return keep.strip("-.") or "attention"


#: The standard sections, in page order.
DEFAULT_SECTIONS: tuple[SectionBuilder, ...] = (
    overview_section,
    generation_section,  # only when the capture generated tokens
    head_view_section,
    model_view_section,
    head_grid_section,
    head_analysis_section,  # "Head metrics & roles" (inspector.render.heads)
    data_section,
)


class Report(RenderedHTML):
    """A rendered report; ``sections`` lists what it contains."""

    def __init__(self, html: str, *, title: str, sections: Sequence[Section]) -> None:
        super().__init__(html, title=title, height=900)
        self.sections = list(sections)


def build_report(
    capture: Capture,
    *,
    title: str | None = None,
    sections: Sequence[SectionBuilder] = DEFAULT_SECTIONS,
    extra_sections: Sequence[SectionBuilder] = (),
    precision: str = "uint8",
    head_view: Mapping[str, Any] | None = None,
    model_view: Mapping[str, Any] | None = None,
) -> Report:
    """Build the self-contained report of one capture.

    Args:
        capture: the captured attention.
        title: page title (default: model name and "attention report").
        sections: section builders, in order (default :data:`DEFAULT_SECTIONS`).
        extra_sections: builders appended after ``sections``.
        precision: ``"uint8"`` (error <= 0.002) or ``"uint16"`` (error <= 7.6e-6).
        head_view, model_view: keyword options for the bertviz views (see
            :func:`inspector.render.views.add_head_view` / ``add_model_view``).

    Returns:
        A :class:`Report`; ``report.save(path)`` writes the file.
    """
    if not isinstance(capture, Capture):
        raise InputError("build_report needs a Capture (Inspection.capture)")
    page = PageData(capture, precision)
    page.stack(next(iter(capture.stacks)))  # validates precision early
    options = {"head_view": dict(head_view or {}), "model_view": dict(model_view or {})}
    ctx = ReportContext(capture, page, options)
    built: list[Section] = []
    for builder in (*sections, *extra_sections):
        section = builder(ctx)
        if section is None:
            continue
        if any(s.id == section.id for s in built):
            raise InputError(f"two report sections have the id {section.id!r}")
        built.append(section)
    title = title or f"{capture.metadata.get('model_name', 'model')} — attention report"
    env = _assets.environment()
    body = Markup(
        env.get_template("report.html.j2").render(
            title=title, sections=[(s, s.render()) for s in built]
        )
    )
    scripts = _unique(name for s in built for name in s.scripts)
    css = _unique(name for s in built for name in s.css)
    html = render_page(
        page,
        body,
        title=title,
        extra_scripts=("report.js", *(n for n in scripts if n != "report.js")),
        extra_css=("report.css", *(n for n in css if n != "report.css")),
    )
    return Report(html, title=title, sections=built)


def _unique(names: Any) -> tuple[str, ...]:
    out: list[str] = []
    for n in names:
        if n not in out:
            out.append(n)
    return tuple(out)
