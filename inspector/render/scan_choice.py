"""Pages for long inputs: the scan report and the retrieval-heads report.

Both are built by the one assembler (:func:`~.page.build_page`) from the section builders of
:mod:`.sections.scan`; they embed statistics only (pooled maps, sinks, kept rows), so a scan of
8k tokens on a 30 x 9-head model stays a few MB and draws in a browser in seconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..analysis.scan import ScanAccumulator, ScanData, replace_metadata, scan_capture
from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import Capture, ScanLayout, ScanPart
from .names import model_label
from .page import Report, build_page
from .sections.scan import SCAN_SECTIONS, ScanContext, made_from_capture

_FOOTER = (
    "Statistics of a {what}: pooled maps (block means), sink shares and kept rows "
    "(stored as uint8, error at most 0.002); no full attention map is embedded."
)


def scan_report(
    data: ScanData,
    *,
    title: str | None = None,
    kind: str | None = None,
    retrieval: pd.DataFrame | None = None,
    trials: pd.DataFrame | None = None,
    banner: str = "",
) -> Report:
    """The scan page of ``data`` (plus retrieval-head tables when given); ``banner``: a notice
    at the top (why this is a scan page)."""
    name = model_label(data.metadata)
    n = len(data.stack(kind).query)
    ctx = ScanContext(data, kind, retrieval, trials, dict(data.metadata))
    what = "full capture" if made_from_capture(data.metadata) else "bounded scan"
    return build_page(
        SCAN_SECTIONS,
        ctx,
        title=title or f"{name}: scan of {n:,} tokens",
        footer=_FOOTER.format(what=what),
        banner=banner,
    )


def retrieval_report(
    heads: pd.DataFrame,
    trials: pd.DataFrame,
    metadata: Mapping[str, Any],
    *,
    title: str | None = None,
) -> Report:
    """The retrieval-heads page: recall per (length, depth), scores per head, the tables."""
    name = model_label(metadata)
    ctx = ScanContext(None, None, heads, trials, dict(metadata))
    return build_page(
        SCAN_SECTIONS,
        ctx,
        title=title or f"{name}: retrieval heads",
        footer=_FOOTER.format(what="bounded scan"),
    )


# ---------------------------------------------------------------- which page a report is

#: Weights (all kinds) above which ``Inspection.report()`` builds the scan page instead of the
#: full one (SmolLM2 at about 350 tokens; MiniLM at its 512-token limit holds 19M: full report).
LONG_REPORT_CELLS = 2**25


#: Bytes a full report's build needs per attention weight, beyond the capture's own 4 (the
#: quantised page data, per-head tables and figures): 8.4 measured on SmolLM2 at 600 tokens.
FULL_REPORT_BYTES_PER_WEIGHT = 8.5


def _cells(capture: Capture) -> int:
    return sum(int(s.weights.size) for s in capture.stacks.values())


def wants_scan_page(capture: Capture, scan: bool | None) -> bool:
    """Whether a report of ``capture`` is the scan page (``scan=None``: when it is long)."""
    if scan is not None:
        return bool(scan)
    return _cells(capture) > LONG_REPORT_CELLS


def scan_page_reason(capture: Capture, *, page: bool = True) -> str | None:
    """Why ``report()`` of ``capture`` makes the scan page by default, with how to get the full
    report and what it costs (``None`` when it makes the full report). ``page=False``: the
    shorter command-line wording."""
    cells = _cells(capture)
    if cells <= LONG_REPORT_CELLS:
        return None
    extra = _memory.format_bytes(cells * FULL_REPORT_BYTES_PER_WEIGHT)
    held = _memory.format_bytes(cells * 4)
    why = (
        f"{cells:,} attention weights are more than the full report draws "
        f"({LONG_REPORT_CELLS:,}; its every-head maps would stall a browser tab)"
    )
    if not page:
        return (
            f"{why}, so the report is the scan page (pooled maps, sinks, rows); the full report "
            f"needs about {extra} more memory while it builds: report(scan=False), CLI "
            f"inspector report ... --full"
        )
    return (
        f"This is the scan page, not the full report: this input's {why}. For the full report "
        f"(every head's map, the bertviz views) run inspector report ... --full, or "
        f"ins.report(path, scan=False) in Python: it needs about {extra} more memory while it "
        f"builds (beyond the {held} the capture holds) and the page is slow to draw."
    )


#: What the scan page holds beside the statistics (templates, assets, its text) ...
SCAN_PAGE_BYTES = 48_000_000
#: ... and per pooled cell of every head: the mean and max maps quantised, compressed and
#: base64-encoded (measured: 17 on SmolLM2 at 512 tokens).
SCAN_PAGE_BYTES_PER_CELL = 20


def scan_page_bytes(layout: Any, pool: int) -> int:
    """What a scan page of ``layout`` pooled to ``pool`` takes to build (an estimate)."""
    return SCAN_PAGE_BYTES + _pooled_cells(layout, pool) * SCAN_PAGE_BYTES_PER_CELL


def _pooled_cells(layout: Any, pool: int) -> int:
    from ..analysis.scan import pool_edges

    n_lh = len(layout.layers) * len(layout.heads)
    return sum(
        n_lh * (len(pool_edges(p.shape[0], pool)) - 1) * (len(pool_edges(p.shape[1], pool)) - 1)
        for p in layout.parts
    )


def capture_scan_estimate(
    capture: Capture, max_memory: MemoryLimit | None = None, *, pool: int = 256
) -> _memory.MemoryEstimate:
    """What :func:`capture_scan_report` allocates beside ``capture``: the statistics a scan
    keeps (:meth:`ScanAccumulator.bytes_needed` with the blocks :func:`scan_capture` feeds),
    and the page drawn from them."""
    from ..analysis.scan import CAPTURE_BLOCK_ROWS

    first = next(iter(capture.stacks.values()))
    parts = tuple(ScanPart(k, s.query, s.key, s.causal) for k, s in capture.stacks.items())
    layout = ScanLayout(parts, first.layers, first.heads, capture.metadata)
    stats = ScanAccumulator(rows=None, pool=pool).bytes_needed(layout, CAPTURE_BLOCK_ROWS)
    cells = sum(int(s.weights.size) for s in capture.stacks.values())
    page = scan_page_bytes(layout, pool)
    return _memory.estimate(
        f"the scan page of {cells:,} weights", {"statistics": stats, "page": page}, max_memory
    )


def capture_scan_report(
    capture: Capture,
    path: str | os.PathLike[str] | None = None,
    *,
    title: str | None = None,
    kind: str | None = None,
    say_why: bool = True,
) -> Report:
    """The scan page of a ready capture (statistics of its weights; the last row kept);
    ``say_why``: a banner atop the page says why it is not the full report (when it is long)."""
    banner = (scan_page_reason(capture) or "") if say_why else ""
    data = scan_capture(capture, rows=None)
    if not banner:  # the banner says it all; without one, a note in the overview
        note = f"this capture holds {_cells(capture):,} weights; shown as a scan page"
        data = replace_metadata(data, note=note)
    rendered = scan_report(data, title=title, kind=kind, banner=banner)
    if path is not None:
        rendered.save(path)
    return rendered


__all__ = [
    "FULL_REPORT_BYTES_PER_WEIGHT",
    "LONG_REPORT_CELLS",
    "capture_scan_estimate",
    "capture_scan_report",
    "retrieval_report",
    "scan_page_bytes",
    "scan_page_reason",
    "scan_report",
    "wants_scan_page",
]
