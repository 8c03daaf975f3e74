"""Options as values at the facade: a public function's keyword arguments become one frozen
options value (:mod:`inspector.corpus.options`, :class:`~inspector.corpus.retrieval.
RetrievalOptions`), built once and passed down unchanged.

The public signatures keep their keywords (and defaults); the value's fields name what it
takes, so no function relays its keywords one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from ..capture.memory import MemoryLimit

T = TypeVar("T")


def options_of(cls: type[T], arguments: Mapping[str, Any]) -> T:
    """``cls`` (a dataclass) built from a facade function's ``arguments`` (its ``locals()``)
    that name one of its fields; ``max_memory`` is parsed here, once (:class:`MemoryLimit`).

    Example:
        >>> from inspector.corpus.options import ProbeOptions
        >>> options_of(ProbeOptions, {"model": "minilm", "batch_size": 8}).batch_size
        8
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in arguments.items() if k in names}
    if "max_memory" in values:
        values["max_memory"] = MemoryLimit.of(values["max_memory"])
    return cls(**values)


__all__ = ["options_of"]
