"""One definition of the facade's file writers: ``to_parquet`` and ``to_csv`` are one ``_write``
method with the file suffix fixed, so the two never drift apart (same options, same checks).

:func:`suffixed` keeps the writer's signature (for type checkers, ``help()`` and
``inspect.signature``) less its ``suffix`` parameter.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def suffixed(
    write: Callable[Concatenate[S, str, P], R], suffix: str, doc: str
) -> Callable[Concatenate[S, P], R]:
    """The public method ``to_<suffix>`` of ``write(self, suffix, path, ...)``, documented by
    ``doc``.

    Example:
        >>> class T:
        ...     def _write(self, suffix: str, path: str) -> str:
        ...         return path + suffix
        ...     to_csv = suffixed(_write, ".csv", "Write CSV.")
        >>> T().to_csv("table"), str(inspect.signature(T.to_csv))
        ('table.csv', "(self, path: 'str') -> 'str'")
    """

    def method(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return write(self, suffix, *args, **kwargs)

    signature = inspect.signature(write)
    params = list(signature.parameters.values())
    name = f"to_{suffix.lstrip('.')}"
    method.__signature__ = signature.replace(parameters=params[:1] + params[2:])  # type: ignore[attr-defined]
    method.__name__ = name
    method.__qualname__ = write.__qualname__.rsplit(".", 1)[0] + "." + name
    method.__doc__ = doc
    method.__module__ = write.__module__
    return method


__all__ = ["suffixed"]
