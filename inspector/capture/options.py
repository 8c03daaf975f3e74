"""Options as values: what a capture keeps and what it runs on, validated once at the facade.

:class:`Selection` (the kept layers and heads) and :class:`InputOptions` (how the input is
built: pair text, decoder target, truncation, chat) are frozen values that the facade builds
once from its keywords and passes down unchanged to :func:`~.run.capture`,
:func:`~.scan.scan_layout`, :func:`~.generation.generate` and :func:`~.vision.capture_image`.
Pure data: nothing here tokenizes or runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InputError
from .types import Indexes, index_list, select_indexes


def positive_int(value: object, name: str) -> int:
    """``value`` when it is a positive integer (not a bool), else an :class:`InputError`
    naming the option: ``"max_new_tokens must be a positive integer, got 0"``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_given(indexes: Indexes, what: str) -> tuple[int, ...] | None:
    """``indexes`` as a tuple of ints (``None``: all), checked for what needs no model."""
    return None if indexes is None else tuple(index_list(indexes, what))


@dataclass(frozen=True)
class Selection:
    """The layers and heads a run keeps, as given (negative counts from the end; ``None``:
    all). Resolved against a model's depth and head count by :meth:`resolve`.

    Example:
        >>> Selection.of([0, -1], 2).resolve(6, 12)
        ((0, 5), (2,))
    """

    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None

    @classmethod
    def of(cls, layers: Indexes = None, heads: Indexes = None) -> Selection:
        """A validated selection of ``layers`` and ``heads`` (an index, several, or ``None``).

        Raises:
            InputError: an index is not an integer, or none is selected.
        """
        return cls(_as_given(layers, "layer"), _as_given(heads, "head"))

    def resolve(
        self, n_layers: int, n_heads: int, prefix: str = ""
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The sorted ``(layers, heads)`` indexes of a stack of ``n_layers`` x ``n_heads``
        (``prefix`` names the stack in errors, e.g. ``"decoder "``).

        Raises:
            InputError: an index is out of range.
        """
        return (
            select_indexes(self.layers, n_layers, f"{prefix}layer"),
            select_indexes(self.heads, n_heads, f"{prefix}head"),
        )


#: Keep everything.
ALL = Selection()


@dataclass(frozen=True)
class InputOptions:
    """How a text becomes the model's input, besides the text itself.

    Attributes:
        text_pair: an optional second text (sentence pair).
        target: decoder input of an encoder-decoder model (default: its start token only).
        truncation: keep the first ``max_length`` tokens instead of raising on longer inputs.
        max_length: a lower token limit than the model's.
        messages: instead of the text, a chat rendered with the tokenizer's chat template.
        add_generation_prompt: with ``messages``, end with the assistant's turn header.
    """

    text_pair: str | None = None
    target: str | None = None
    truncation: bool = False
    max_length: int | None = None
    messages: Sequence[Mapping[str, str]] | None = None
    add_generation_prompt: bool = False


#: A plain text input: no pair, no target, no truncation, no chat.
PLAIN = InputOptions()

__all__ = ["ALL", "PLAIN", "Indexes", "InputOptions", "Selection", "positive_int"]
