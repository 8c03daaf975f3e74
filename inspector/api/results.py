"""The facade's result objects: :class:`Comparison` and :class:`Atlas` with a ``report()``.

The lower layers' data classes never render themselves; these wrappers keep one (``data``, by
composition: nothing is copied field by field) and add the convenience methods
(``report(path)``) that call :mod:`inspector.render`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Generic, TypeVar

from ..analysis import compare as _compare
from ..capture.memory import MemoryLimit
from ..capture.types import Capture
from ..corpus import atlas as _atlas
from ..corpus import probe as _probe
from ..errors import InputError
from ..render import report as _report
from ..render.page import Report

D = TypeVar("D")


def saved(rendered: Report, path: str | os.PathLike[str] | None) -> Report:
    """``rendered``, written to ``path`` first when one is given: the tail of every facade
    ``report(path)``."""
    if path is not None:
        rendered.save(path)
    return rendered


class Result(Generic[D]):
    """A facade result around a lower layer's data class, kept as ``data``: its fields and
    methods read through (``result.summary`` is ``result.data.summary``), and the facade adds
    the convenience methods (``report()``). Read-only, as the data class is frozen."""

    __slots__ = ("data",)
    data: D

    def __init__(self, data: D) -> None:
        object.__setattr__(self, "data", data)

    def __getattr__(self, name: str) -> Any:
        if name == "data":  # not set yet (while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.data, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only; build a new one")

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *dir(self.data)})

    def __getstate__(self) -> D:
        return self.data

    def __setstate__(self, data: D) -> None:
        object.__setattr__(self, "data", data)

    def __repr__(self) -> str:
        return repr(self.data)


class Comparison(Result[_compare.Comparison]):
    """:class:`inspector.analysis.compare.Comparison` (``data``: its ``frame``, ``ranked()``,
    ...) plus :meth:`report`.

    Attributes:
        capture: side a's capture (shown in the report's overview), when known.
    """

    __slots__ = ("capture",)
    capture: Capture | None

    def __init__(self, data: _compare.Comparison, capture: Capture | None = None) -> None:
        super().__init__(data)
        object.__setattr__(self, "capture", capture)

    def __getstate__(self) -> Any:
        return self.data, self.capture

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "data", state[0])
        object.__setattr__(self, "capture", state[1])

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
        _report.comparison_estimate(self.capture, max_memory=MemoryLimit.of(max_memory)).check(
            "Compare inspections of fewer layers=[...] / heads=[...], or raise max_memory="
        )
        return saved(_report.comparison_report(self.capture, self.data, k=k, title=title), path)


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
    base = _compare.compare(a, b, labels=labels, max_memory=MemoryLimit.of(max_memory))
    capture = getattr(a, "capture", None)
    return Comparison(base, capture if isinstance(capture, Capture) else None)


class Atlas(Result[_atlas.Atlas]):
    """:class:`inspector.corpus.atlas.Atlas` (``data``: its ``summary``, ``distances``,
    ``metadata``, ``metric()``) plus :meth:`report` and :meth:`save` with its page."""

    __slots__ = ()

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        probe: _probe.ProbeResult | None = None,
        title: str | None = None,
    ) -> Report:
        """The atlas page (heatmaps, roles, distances, MDS, sortable statistics)."""
        return saved(_report.atlas_report(self.data, probe=probe, title=title), path)

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
        return _atlas.write_atlas(self.data, path, extra=extra, force=force)


__all__ = ["Atlas", "Comparison", "Result", "compare", "saved"]
