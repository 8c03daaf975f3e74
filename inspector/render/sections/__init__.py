"""Report sections, one module each, and the registries that put them in page order.

A section builder is ``(context) -> Section | None`` (see :mod:`inspector.render.section`).
Adding a section to the default report is one module here and one line in
:data:`REPORT_SECTIONS` (or ``register_section`` at run time).
"""

from __future__ import annotations

from collections.abc import Callable

from ..._registry import Registry
from ..section import ReportContext, Section
from .atlas import DEFAULT_ATLAS_SECTIONS
from .data import data_section
from .generation import generation_section
from .grid import head_grid_section
from .heads import comparison_section, head_analysis_section
from .image import image_section
from .overview import overview_section
from .views import head_view_section, model_view_section

ReportSection = Callable[[ReportContext], "Section | None"]


REPORT_SECTIONS: Registry[ReportSection] = Registry(
    "report section",
    {
        "overview": overview_section,
        "generation": generation_section,  # only when the capture generated tokens
        "image": image_section,  # only for a vision transformer's image
        "head-view": head_view_section,
        "model-view": model_view_section,
        "head-grid": head_grid_section,
        "head-metrics": head_analysis_section,
        "data": data_section,
    },
)
"""The single-input report's sections by name, in page order (``REPORT_SECTIONS.scoped()``
restores it when a block ends)."""


def register_section(name: str, builder: ReportSection, *, before: str | None = None) -> None:
    """Add ``builder`` to the default report (at the end, or before the section ``before``)."""
    from ...errors import InputError

    if not callable(builder):
        raise InputError(f"section {name!r}: the builder must be callable")
    REPORT_SECTIONS.register(name, builder, before=before)


def list_sections() -> list[str]:
    """The default report's section names, in page order."""
    return REPORT_SECTIONS.names()


__all__ = [
    "DEFAULT_ATLAS_SECTIONS",
    "REPORT_SECTIONS",
    "comparison_section",
    "list_sections",
    "register_section",
]
