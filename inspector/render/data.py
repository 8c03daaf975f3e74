"""What a page embeds: the attention of a capture (once, quantised) and the specs of its views.

Pure data for :mod:`inspector.render.page`; the browser decodes it (``static/inspector.js``).
Each stack is stored one zlib stream per layer; a stack bigger than
:data:`~inspector.render.budget.EAGER_BYTES` is decoded layer by layer when a view needs it, and
carries max-pooled thumbnails (``thumbs``) for the "Every head" grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..capture.types import Capture
from ..errors import InputError
from .budget import THUMB_SIZE, eager
from .encode import encode_layers, encode_weights, max_abs_error, max_pool


@dataclass
class PageData:
    """What a page embeds: each stack once (compact) plus the specs of the views drawing it."""

    capture: Capture | None = None
    precision: str = "uint8"
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    vectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: list[dict[str, Any]] = field(default_factory=list)
    #: What the page shows in part to stay within its drawing budgets (warned before writing).
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        max_abs_error(self.precision)  # validates the precision early

    def stack(self, kind: str) -> dict[str, Any]:
        """Encode the ``kind`` stack the first time it is needed; later calls reuse it."""
        if self.capture is None:
            raise InputError("this page embeds no attention")
        if kind not in self.stacks:
            s = self.capture.stacks[kind]
            entry = encode_layers(s.weights, self.precision)
            itemsize = 1 if self.precision == "uint8" else 2
            entry.update(
                kind=kind,
                layers=list(s.layers),
                heads=list(s.heads),
                causal=bool(s.causal),
                eager=eager(s.weights.shape, itemsize),
                query_tokens=list(s.query.tokens),
                key_tokens=list(s.key.tokens),
                query_readable=list(s.query.readable or s.query.tokens),
                key_readable=list(s.key.readable or s.key.tokens),
                query_special=[bool(x) for x in s.query.special],
                key_special=[bool(x) for x in s.key.special],
            )
            if not entry["eager"]:
                pooled, block = max_pool(s.weights, THUMB_SIZE)
                self.notes.append(
                    f"the {kind} attention ({s.weights.size:,} weights) "
                    "decodes layer by layer when a view needs it, and the head grid draws "
                    f"{block} x {block} max-pooled thumbnails"
                )
                entry["thumbs"] = encode_weights(pooled, "uint8")
                entry["thumbs"]["block"] = block
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
