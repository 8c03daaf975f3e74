"""Pages for long inputs: the scan report and the retrieval-heads report.

Both are built by the one assembler (:func:`~.page.build_page`) from the section builders of
:mod:`.sections.scan`; they embed statistics only (pooled maps, sinks, kept rows), so a scan of
8k tokens on a 30 x 9-head model stays a few MB and draws in a browser in seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..analysis.scan import ScanData
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


__all__ = ["retrieval_report", "scan_report"]
