"""The facade's result objects: :class:`Comparison` and :class:`Atlas` with a ``report()``.

The lower layers' data classes never render themselves; these subclasses add the convenience
methods (``report(path)``) that call :mod:`inspector.render`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..analysis import compare as _compare
from ..capture.types import Capture
from ..corpus import atlas as _atlas
from ..corpus import probe as _probe
from ..errors import InputError
from ..render import report as _report
from ..render.page import Report


def saved(rendered: Report, path: str | os.PathLike[str] | None) -> Report:
    """``rendered``, written to ``path`` first when one is given: the tail of every facade
    ``report(path)``."""
    if path is not None:
        rendered.save(path)
    return rendered


@dataclass(frozen=True, eq=False, repr=False)
class Comparison(_compare.Comparison):
    """:class:`inspector.analysis.compare.Comparison` plus :meth:`report`.

    Attributes:
        capture: side a's capture (shown in the report's overview), when known.
    """

    capture: Capture | None = None

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        k: int = 5,
        title: str | None = None,
        max_memory: int | str | None = None,
    ) -> Report:
        """The comparison page: ranked changes and the top ``k`` heads' maps side by side
        (``max_memory``: the budget of building it; default: what is free now)."""
        if self.capture is None:
            raise InputError("this comparison has no capture of side a; use inspector.compare()")
        _report.comparison_estimate(self.capture, max_memory=max_memory).check(
            "Compare inspections of fewer layers=[...] / heads=[...], or raise max_memory="
        )
        return saved(_report.comparison_report(self.capture, self, k=k, title=title), path)


def compare(
    a: Any,
    b: Any,
    *,
    labels: tuple[str, str] | None = None,
    max_memory: int | str | None = None,
) -> Comparison:
    """Compare two inspections (or stacks) head by head (see :mod:`inspector.analysis.compare`;
    ``max_memory``: the budget of what the comparison allocates beside them)."""
    # warns (InspectorWarning) on few shared tokens
    base = _compare.compare(a, b, labels=labels, max_memory=max_memory)
    capture = getattr(a, "capture", None)
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    return Comparison(**values, capture=capture if isinstance(capture, Capture) else None)


@dataclass(frozen=True, eq=False, repr=False)
class Atlas(_atlas.Atlas):
    """:class:`inspector.corpus.atlas.Atlas` plus :meth:`report`."""

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        probe: _probe.ProbeResult | None = None,
        title: str | None = None,
    ) -> Report:
        """The atlas page (heatmaps, roles, distances, MDS, sortable statistics)."""
        return saved(_report.atlas_report(self, probe=probe, title=title), path)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        report: str | os.PathLike[str] | None = None,
        force: bool = False,
    ) -> list[Path]:
        """Write the atlas as Parquet, its distances beside it and, with ``report=``, its page,
        as one set: every file is new, or none changed. Returns the written paths."""
        extra: dict[str | os.PathLike[str], str] = {}
        if report is not None:
            if Path(report).suffix.lower() not in (".html", ".htm"):
                raise InputError(f"{report}: a page is saved as .html; give a name ending in .html")
            extra[report] = self.report().html
        return _atlas.write_atlas(self, path, extra=extra, force=force)


def facade_atlas(result: _atlas.Atlas) -> Atlas:
    return Atlas(**{f.name: getattr(result, f.name) for f in fields(result)})


__all__ = ["Atlas", "Comparison", "compare", "facade_atlas", "saved"]
