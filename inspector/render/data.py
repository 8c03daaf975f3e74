"""What a page embeds: the attention of a capture (once, quantised) and the specs of its views.

Pure data for :mod:`inspector.render.page`; the browser decodes it (``static/inspector.js``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..capture.types import Capture
from ..errors import InputError
from .encode import encode_weights, max_abs_error


@dataclass
class PageData:
    """What a page embeds: each stack once (compact) plus the specs of the views drawing it."""

    capture: Capture | None = None
    precision: str = "uint8"
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        max_abs_error(self.precision)  # validates the precision early

    def stack(self, kind: str) -> dict[str, Any]:
        """Encode the ``kind`` stack the first time it is needed; later calls reuse it."""
        if self.capture is None:
            raise InputError("this page embeds no attention")
        if kind not in self.stacks:
            s = self.capture.stacks[kind]
            entry = encode_weights(s.weights, self.precision)
            entry.update(
                kind=kind,
                layers=list(s.layers),
                heads=list(s.heads),
                causal=bool(s.causal),
                query_tokens=list(s.query.tokens),
                key_tokens=list(s.key.tokens),
                query_special=[bool(x) for x in s.query.special],
                key_special=[bool(x) for x in s.key.special],
            )
            self.stacks[kind] = entry
        return self.stacks[kind]

    def next_id(self, kind: str) -> str:
        return f"bertviz-{kind}-{sum(v['kind'] == kind for v in self.views)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "precision": {
                "dtype": self.precision,
                "max_abs_error": max_abs_error(self.precision),
            },
            "stacks": self.stacks,
            "vectors": self.vectors,
            "views": self.views,
        }


__all__ = ["PageData"]
