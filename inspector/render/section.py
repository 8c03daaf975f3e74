"""The section protocol every page is built from.

A section builder is a function ``(context) -> Section | None``: the single-input report passes
a :class:`ReportContext` (the capture, the page data, options, cached metrics), the atlas page an
:class:`~inspector.corpus.atlas.Atlas`. A :class:`Section` names its anchor, title, template
(under ``templates/``, autoescaped; data goes to scripts with ``|tojson``) and the static scripts
and stylesheets it needs, which the page inlines once (:func:`inspector.render.page.assemble`).
Adding a report section is one module under ``render/sections/`` plus one line in that
package's registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from markupsafe import Markup

from ..capture.types import Capture
from ..errors import InputError
from . import _assets
from .data import PageData

C = TypeVar("C")


@dataclass(frozen=True)
class Section:
    """One part of a page.

    Attributes:
        id: HTML id (anchor) of the section, unique in the page.
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


SectionBuilder = Callable[[C], "Section | None"]


def styled_section(key: str, title: str, context: Mapping[str, Any] | None) -> Section | None:
    """The section ``key`` drawn by ``sections/{key}.html.j2`` with its own stylesheet
    ``{key}.css``, or ``None`` when there is nothing to show (``context`` is ``None``)."""
    if context is None:
        return None
    return Section(key, title, f"sections/{key}.html.j2", context, css=(f"{key}.css",))


@dataclass
class ReportContext:
    """What the single-input report's section builders get: the capture, the page data, options."""

    capture: Capture
    page: PageData
    options: Mapping[str, Any] = field(default_factory=dict)


def table_context(**kw: Any) -> dict[str, Any]:
    """A template context of the table-and-figures sections (atlas and scan pages): their
    common keys with empty defaults, then ``kw``."""
    base: dict[str, Any] = {
        "intro": "",
        "facts": [],
        "figures": [],
        "columns": [],
        "rows": [],
        "table_id": "",
        "text_columns": (),
    }
    base.update(kw)
    return base


def frame_table(
    frame: pd.DataFrame, table_id: str, text_columns: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The table keys of :func:`table_context` for ``frame``: its columns, its rows (numpy
    scalars as Python values), the table's id and its text (left-aligned) columns."""
    rows = [
        [v.item() if isinstance(v, np.generic) else v for v in row]
        for row in frame.itertuples(index=False)
    ]
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": rows,
        "table_id": table_id,
        "text_columns": text_columns,
    }


__all__ = [
    "ReportContext",
    "Section",
    "SectionBuilder",
    "frame_table",
    "styled_section",
    "table_context",
]
