"""The one page assembler: every HTML page (report, atlas, comparison, single views) is built here.

A page is a list of :class:`~.section.Section` objects (or one bare body) inside
``templates/page.html.j2``, with every script and stylesheet it needs inlined once and, when it
shows attention, the weights embedded once (:class:`PageData`, quantised by
:mod:`~inspector.render.encode`). The runtime (``static/inspector.js``) decodes them, draws the
bertviz views and then runs the other scripts (:data:`~.figures.FIGURE_SCRIPTS`, with
``figures.js``, draw every figure; ``report.js`` makes tables sortable and downloadable). Pages
never use the network and are deterministic: the same input gives the same bytes.
"""

from __future__ import annotations

import html as _html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from .._io import check_writable, write_text_atomic
from ..errors import InputError
from . import _assets
from .data import PageData
from .encode import max_abs_error
from .figures import FIGURE_SCRIPTS
from .section import Section

#: Scripts every assembled page runs after the runtime (figures, tables, downloads).
PAGE_SCRIPTS: tuple[str, ...] = (*FIGURE_SCRIPTS, "report.js")
#: Stylesheets every assembled page has.
PAGE_CSS: tuple[str, ...] = ("inspector.css", "report.css")


class RenderedHTML:
    """A rendered page: ``_repr_html_`` for Jupyter, ``__html__`` for templates, ``save(path)``.

    In notebooks and templates the page is placed in an ``<iframe srcdoc>``, which keeps its
    scripts, ids and the require.js shim apart from the host page (Jupyter ships a real
    require.js). ``str(view)`` / ``.html`` is the standalone page.
    """

    def __init__(self, html: str, *, title: str = "inspector", height: int = 600) -> None:
        self.html = html
        self.title = title
        self.height = int(height)

    def __str__(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title!r}: {len(self.html):,} characters>"

    def _iframe(self) -> str:
        return (
            f'<iframe srcdoc="{_html.escape(self.html, quote=True)}" title="'
            f'{_html.escape(self.title, quote=True)}" style="width:100%;height:{self.height}px;'
            f'border:0" loading="eager"></iframe>'
        )

    def _repr_html_(self) -> str:
        return self._iframe()

    def __html__(self) -> str:
        return self._iframe()

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> Path:
        """Write the standalone page (UTF-8) atomically and return its path (``force``: also
        over a read-only file)."""
        check_writable(path, force=force)  # a folder, a place that cannot be written: say so
        if Path(path).suffix.lower() not in (".html", ".htm"):
            raise InputError(f"{path}: a page is saved as .html; give a file name ending in .html")
        return write_text_atomic(path, self.html, force=force)


class Report(RenderedHTML):
    """An assembled page of sections; ``sections`` lists what it contains."""

    def __init__(self, html: str, *, title: str, sections: Sequence[Section]) -> None:
        super().__init__(html, title=title, height=900)
        self.sections = list(sections)

    def section(self, section_id: str) -> Section:
        """The section with ``section_id`` (an :class:`InputError` names the ones there are)."""
        for s in self.sections:
            if s.id == section_id:
                return s
        raise InputError(
            f"no section {section_id!r} in this report; it has {[s.id for s in self.sections]}"
        )


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def assemble(
    *,
    title: str,
    sections: Sequence[Section] = (),
    body: Markup | None = None,
    data: PageData | None = None,
    footer: str = "",
    banner: str = "",
) -> str:
    """The complete standalone HTML page.

    Args:
        title: the page title (and the heading of a page of sections).
        sections: built sections, in order: a header with navigation, then each section.
        body: instead of sections, ready HTML (a single view).
        data: the attention (and views) the page embeds; ``None`` for pages without attention.
        footer: what the page says about itself (after the common credits).
        banner: a notice shown first, under the title (what this page is, when it is not what
            was asked for).
    """
    if (body is None) == (not sections):
        raise InputError("a page has either sections or a body")
    data = data if data is not None else PageData()
    env = _assets.environment()
    if body is None:
        body = Markup(
            env.get_template("report.html.j2").render(
                title=title, sections=[(s, s.render()) for s in sections], banner=banner
            )
        )
    scripts = _unique([*PAGE_SCRIPTS, *(n for s in sections for n in s.scripts)])
    css = _unique([*PAGE_CSS, *(n for s in sections for n in s.css)])
    views = {v["kind"] for v in data.views}
    return str(
        env.get_template("page.html.j2").render(
            title=title,
            body=body,
            css=[Markup(_assets.static_text(name)) for name in css],
            data=data.to_json(),
            scripts=_assets.runtime_scripts(views, scripts),
            embeds_attention=bool(data.stacks),
            precision=data.precision,
            max_error=max_abs_error(data.precision),
            versions=_assets.versions(),
            footer=footer,
        )
    )


def build_page(
    builders: Iterable[Any],
    context: Any,
    *,
    title: str,
    data: PageData | None = None,
    footer: str = "",
    banner: str = "",
) -> Report:
    """Run section builders ``(context) -> Section | None`` in order and assemble their page.

    A builder returning ``None`` adds nothing (a section that does not apply); two sections with
    one id are refused.
    """
    built: list[Section] = []
    for builder in builders:
        section = builder(context)
        if section is None:
            continue
        if not isinstance(section, Section):
            raise InputError(f"a section builder returned {type(section).__name__}, not a Section")
        if any(s.id == section.id for s in built):
            raise InputError(f"two report sections have the id {section.id!r}")
        built.append(section)
    html = assemble(title=title, sections=built, data=data, footer=footer, banner=banner)
    return Report(html, title=title, sections=built)


__all__ = [
    "PAGE_CSS",
    "PAGE_SCRIPTS",
    "PageData",
    "RenderedHTML",
    "Report",
    "assemble",
    "build_page",
]
