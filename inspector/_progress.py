"""Progress bars for long work: one rule for every bar the package draws.

``progress=None`` (the default of every long-running function) means "say how it goes": a tqdm
bar on stderr when stderr is a terminal; otherwise (a log, CI, ``nohup``, a notebook) plain
lines (:class:`Lines`): nothing for work that ends within :data:`LINE_AFTER` seconds, then one
line at most every :data:`LINE_EVERY` seconds and one when it ends. ``True`` always draws a bar
(in Jupyter a widget when ipywidgets is installed, else text on stderr, never the "IProgress not
found" warning), ``False`` prints nothing. The CLI passes ``False`` under ``--quiet``. Imports
nothing else from the package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: Work that ends within this many seconds prints no line when stderr is not a terminal.
LINE_AFTER = 10.0
#: Seconds between two progress lines when stderr is not a terminal (at most one per interval).
LINE_EVERY = 30.0
#: The clock of :class:`Lines` (tests replace it with a fake one).
clock: Callable[[], float] = time.monotonic


def show(progress: bool | None) -> bool:
    """Whether to draw a bar: ``progress`` itself, or (``None``) whether stderr is a terminal."""
    if progress is None:
        return _on_terminal()
    return bool(progress)


def _on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or odd stream
        return False


class Lines:
    """Progress as plain lines on stderr, for a stream that is not a terminal.

    The part of tqdm's interface the package uses (iterate, ``update``, ``close``, a context
    manager). Nothing is printed for work that ends within :data:`LINE_AFTER` seconds; after that,
    a line such as ``scan smollm2: 12/30 layers (40%), 06:05 elapsed, about 09:07 left`` at most
    every :data:`LINE_EVERY` seconds (when work advances), and a last line when it ends.

    Example:
        >>> for text in Lines(["a", "b"], desc="head metrics", unit=" texts"):
        ...     pass
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        **_options: Any,
    ) -> None:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable = iterable
        self.total = total
        self.desc = desc or "working"
        self.unit = unit
        self.n = self.initial = initial
        self.start = clock()
        self.last: float | None = None  # when the last line was printed
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress reporter was made without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total and self.n >= self.total:
            return  # finished: close() says so ("... done in ..."), not a 100% line as well
        now = clock()
        due = self.start + LINE_AFTER if self.last is None else self.last + LINE_EVERY
        if now >= due:
            self._say(self._line(now))
            self.last = now

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = clock()
        if now - self.start >= LINE_AFTER:
            self._say(self._line(now, done=True))

    def _line(self, now: float, *, done: bool = False) -> str:
        from tqdm.std import tqdm

        elapsed = now - self.start
        if done:
            return f"{self.desc}: {self.n}{self.unit} done in {tqdm.format_interval(elapsed)}"
        if self.total:
            fmt = "{desc}: {n_fmt}/{total_fmt}{unit} ({percentage:.0f}%), {elapsed} elapsed"
            if self.initial < self.n < self.total:
                fmt += ", about {remaining} left"
        else:
            fmt = "{desc}: {n_fmt}{unit}, {elapsed} elapsed"
        return str(
            tqdm.format_meter(
                self.n,
                self.total,
                elapsed,
                prefix=self.desc,
                unit=self.unit,
                bar_format=fmt,
                initial=self.initial,
            )
        )

    @staticmethod
    def _say(line: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed stream: never worth a crash
            print(line, file=sys.stderr, flush=True)


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
    """A tqdm bar on stderr following :func:`show` (a disabled one costs nothing); with
    ``progress=None`` and stderr not a terminal, :class:`Lines` instead.

    Example:
        >>> for text in bar(["a", "b"], desc="head metrics", unit="text", progress=False):
        ...     pass
    """
    draw = show(progress)
    if progress is None and not draw:
        return Lines(iterable, total=total, desc=desc, unit=unit, **options)
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


__all__ = ["LINE_AFTER", "LINE_EVERY", "Lines", "bar", "show"]
