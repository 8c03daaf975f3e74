"""Progress bars for long work: one rule for every bar the package draws.

``progress=None`` (the default of every long-running function) means "when a person is watching":
a tqdm bar on stderr only when stderr is a terminal, so pipes, logs, CI and Jupyter stay quiet;
``True`` always draws one (in Jupyter a widget when ipywidgets is installed, else text on
stderr, never the "IProgress not found" warning), ``False`` never does. The CLI passes ``False``
under ``--quiet``. Imports nothing else from the package.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from typing import Any


def show(progress: bool | None) -> bool:
    """Whether to draw a bar: ``progress`` itself, or (``None``) whether stderr is a terminal."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        try:
            return bool(isatty and isatty())
        except (OSError, ValueError):  # a closed or odd stream
            return False
    return bool(progress)


def _tqdm_class(draw: bool) -> Any:
    if draw and "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets"):
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm
    from tqdm.std import tqdm

    return tqdm


def bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    progress: bool | None = None,
    **options: Any,
) -> Any:
    """A tqdm bar on stderr following :func:`show` (a disabled one costs nothing).

    Example:
        >>> for text in bar(["a", "b"], desc="head metrics", unit="text", progress=False):
        ...     pass
    """
    draw = show(progress)
    cls = _tqdm_class(draw)
    kwargs: dict[str, Any] = {
        "total": total,
        "desc": desc,
        "unit": unit,
        "disable": not draw,
        "dynamic_ncols": True,
        "leave": False,
        **options,
    }
    if cls.__module__ == "tqdm.std":
        kwargs.setdefault("file", sys.stderr)
    return cls(iterable, **kwargs)


__all__ = ["bar", "show"]
