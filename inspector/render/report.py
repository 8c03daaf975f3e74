"""The pages: the single-input report, the corpus atlas page and the comparison page.

Each is a list of section builders run by :func:`inspector.render.page.build_page` (the one
assembler): the default report's sections come from
:data:`inspector.render.sections.REPORT_SECTIONS` (overview, generation, head view, model view,
every head, head metrics & roles, data); extra builders (the "what mattered" section, say) are
appended. Figures are data drawn in the page by ``figures.js``; nothing here runs a model, and the
same input gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..analysis.compare import Comparison
from ..analysis.faithfulness_table import Faithfulness
from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import Capture
from ..corpus.atlas import Atlas
from ..corpus.probe import ProbeResult
from ..errors import InputError
from .budget import warn_budgets
from .data import PageData
from .names import model_label
from .page import Report, build_page
from .section import ReportContext, Section
from .sections import REPORT_SECTIONS, comparison_section
from .sections.atlas import DEFAULT_ATLAS_SECTIONS, probe_section
from .sections.faithfulness import faithfulness_section
from .sections.overview import overview_section

SectionBuilder = Callable[[ReportContext], "Section | None"]


def build_report(
    capture: Capture,
    *,
    title: str | None = None,
    sections: Sequence[SectionBuilder] | None = None,
    extra_sections: Sequence[SectionBuilder] = (),
    precision: str = "uint8",
    head_view: Mapping[str, Any] | None = None,
    model_view: Mapping[str, Any] | None = None,
) -> Report:
    """Build the self-contained report of one capture.

    Args:
        capture: the captured attention.
        title: page title (default: model name and "attention report").
        sections: section builders, in order (default: :data:`REPORT_SECTIONS`).
        extra_sections: builders appended after ``sections``.
        precision: ``"uint8"`` (error <= 0.002) or ``"uint16"`` (error <= 7.6e-6).
        head_view, model_view: keyword options for the bertviz views (see
            :func:`inspector.render.bertviz.add_head_view` / ``add_model_view``).

    Returns:
        A :class:`~inspector.render.page.Report`; ``report.save(path)`` writes the file.

    Warns:
        :class:`~inspector.render.budget.PageBudgetWarning` when a view shows part of the
        attention to stay within its drawing budget (a token window, pooled thumbnails).
    """
    if not isinstance(capture, Capture):
        raise InputError("build_report needs a Capture (Inspection.capture)")
    page = PageData(capture, precision)
    options = {"head_view": dict(head_view or {}), "model_view": dict(model_view or {})}
    builders = [*(REPORT_SECTIONS.values() if sections is None else sections), *extra_sections]
    title = title or f"{model_label(capture.metadata)} — attention report"
    report = build_page(builders, ReportContext(capture, page, options), title=title, data=page)
    warn_budgets(page.notes)  # before anyone writes the page
    return report


#: Bytes a report takes per embedded weight while it is built: the quantised copy, its
#: compressed and base64 text, the thumbnails and views' windows (measured: about 5 on
#: SmolLM2 at 256 tokens), and fixed costs (templates, assets, the page's text).
REPORT_BYTES_PER_WEIGHT = 6
REPORT_FIXED_BYTES = 48_000_000


def report_estimate(
    capture: Capture, precision: str = "uint8", max_memory: MemoryLimit | None = None
) -> _memory.MemoryEstimate:
    """What :func:`build_report` of ``capture`` allocates beside it, against the budget."""
    cells = sum(int(s.weights.size) for s in capture.stacks.values())
    per = REPORT_BYTES_PER_WEIGHT + (1 if precision == "uint16" else 0)
    return _memory.estimate(
        f"a report of {cells:,} weights",
        {"page data": cells * per, "page": REPORT_FIXED_BYTES},
        max_memory,
    )


def comparison_estimate(
    capture: Capture, max_memory: MemoryLimit | None = None
) -> _memory.MemoryEstimate:
    """What :func:`comparison_report` allocates beside ``capture``: its overview and the top
    heads' maps (a few layers' worth of weights, float copies), and the page (measured: 73 MB
    on SmolLM2 at 512 tokens)."""
    layer = max(int(s.weights[0].size) for s in capture.stacks.values())
    return _memory.estimate(
        "a comparison page",
        {"maps": 16 * layer, "page": REPORT_FIXED_BYTES + 16_000_000},
        max_memory,
    )


def atlas_report(
    atlas: Atlas,
    *,
    probe: ProbeResult | None = None,
    title: str | None = None,
    sections: Sequence[Callable[[Atlas], Section | None]] = DEFAULT_ATLAS_SECTIONS,
) -> Report:
    """The corpus atlas as one self-contained page (``report.save(path)`` writes it).

    Args:
        atlas: from :func:`inspector.atlas` or :func:`inspector.corpus.atlas.read_atlas`.
        probe: an optional :class:`~inspector.corpus.probe.ProbeResult` shown as a last section.
        title: page title.
        sections: section builders ``(Atlas) -> Section | None``, in order.
    """
    if not isinstance(atlas, Atlas):
        raise InputError("atlas_report needs an Atlas (inspector.atlas(...))")
    builders: list[Callable[[Atlas], Section | None]] = list(sections)
    if probe is not None:
        builders.append(lambda _atlas: probe_section(probe))
    bins = atlas.metadata.get("bins", "")
    footer = (
        "Per-input metrics are averaged with every input counted once; quantiles come from "
        f"fixed-bin histograms (1/{bins} of the range per bin)."
    )
    title = title or f"{model_label(atlas.metadata)} — corpus head atlas"
    return build_page(builders, atlas, title=title, footer=footer)


def comparison_report(
    capture: Capture, comparison: Comparison, *, k: int = 5, title: str | None = None
) -> Report:
    """A report page for ``comparison`` (``capture`` is side a's, for the overview)."""
    if not isinstance(capture, Capture):
        raise InputError("comparison_report needs side a's Capture (Inspection.capture)")
    return build_report(
        capture,
        title=title or f"{comparison.labels[0]} vs {comparison.labels[1]}",
        sections=(overview_section, comparison_section(comparison, k=k)),
    )


def faithfulness_report(result: Faithfulness, *, title: str | None = None) -> Report:
    """The faithfulness scoreboard as one page: the "Which map to trust" table and what it
    measured (``report.save(path)`` writes it)."""
    if not isinstance(result, Faithfulness):
        raise InputError("faithfulness_report needs a faithfulness result (inspector.faithfulness)")
    meta = result.metadata
    footer = (
        f"{result.n_texts} text(s); {meta.get('forward_rows', 0):,} inputs run in "
        f"{meta.get('forward_passes', 0):,} forward passes (deletions deduplicated and batched)."
    )
    title = title or f"{model_label(meta)} — which map to trust"
    return build_page([faithfulness_section(result)], result, title=title, footer=footer)


__all__ = [
    "REPORT_BYTES_PER_WEIGHT",
    "REPORT_FIXED_BYTES",
    "atlas_report",
    "build_report",
    "comparison_estimate",
    "comparison_report",
    "faithfulness_report",
    "report_estimate",
]
