"""One registry shape for every extension point (metrics, families, report sections, explainers).

A :class:`Registry` is an ordered name -> entry mapping with ``register`` (refuses a taken name
unless ``overwrite=True``), ``get`` (an unknown name is an :class:`~inspector.errors.InputError`
listing the registered ones) and ``scoped()``: a context manager that restores the registry as
it was on exit, so a test (or a notebook experiment) can register entries without leaking them.
Imports nothing else from the package but its errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from .errors import InputError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, named collection of extension entries.

    Args:
        what: what an entry is, for messages (``"metric"``, ``"explainer"``).

    Example:
        >>> r: Registry[int] = Registry("number")
        >>> r.register("one", 1)
        >>> with r.scoped():
        ...     r.register("two", 2)
        ...     list(r)
        ['one', 'two']
        >>> list(r)
        ['one']
    """

    def __init__(
        self,
        what: str,
        entries: Mapping[str, T] | None = None,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.what = what
        self._entries: dict[str, T] = dict(entries or {})
        #: called after every change (a cache over the entries clears itself here)
        self._on_change = on_change

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {list(self._entries)})"

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def get_entry(self, name: str) -> T:
        """The entry named ``name``.

        Raises:
            InputError: no such entry; the message lists the registered names.
        """
        if not isinstance(name, str) or name not in self._entries:
            raise InputError(
                f"unknown {self.what} {name!r}; registered {self.what}s: {self.names()}"
            )
        return self._entries[name]

    def register(
        self, name: str, entry: T, *, overwrite: bool = False, before: str | None = None
    ) -> None:
        """Add ``entry`` under ``name`` (at the end, or before the entry ``before``).

        Raises:
            InputError: the name is taken (and ``overwrite`` is false) or ``before`` is unknown.
        """
        if not isinstance(name, str) or not name:
            raise InputError(f"a {self.what} name must be a non-empty string, got {name!r}")
        if name in self._entries and not overwrite:
            raise InputError(
                f"a {self.what} named {name!r} is already registered; pass overwrite=True to "
                f"replace it"
            )
        if before is None or name in self._entries:
            self._entries[name] = entry
        elif before not in self._entries:
            raise InputError(f"no {self.what} {before!r}; registered: {self.names()}")
        else:
            items = list(self._entries.items())
            at = [k for k, _ in items].index(before)
            items.insert(at, (name, entry))
            self._entries = dict(items)
        self._changed()

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (an unknown name is an :class:`InputError`)."""
        self.get_entry(name)
        del self._entries[name]
        self._changed()

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Restore the registry as it is now when the block ends (entries added, replaced or
        removed inside it do not leak)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries = saved
            self._changed()


__all__ = ["Registry"]
