"""The package's own exceptions. Every message says what went wrong and how to fix it.

All errors derive from :class:`InspectorError`; the ones caused by a caller's argument also derive
from :class:`ValueError` so ordinary ``except ValueError`` code keeps working.
"""

from __future__ import annotations


class InspectorError(Exception):
    """Base class of every error raised on purpose by ``inspector``."""


class InputError(InspectorError, ValueError):
    """A caller's argument is unusable (empty text, unknown name, index out of range, ...)."""


class ModelLoadError(InspectorError):
    """A model or tokenizer could not be loaded from what the caller named."""


class AttentionUnavailableError(InspectorError):
    """The model ran but did not hand back attention weights."""


class CaptureError(InspectorError):
    """Captured attention failed verification (shape, finiteness, rows summing to 1)."""


class UnsupportedModelError(InspectorError):
    """The model's architecture is not supported by the requested feature."""


class ResourceError(InspectorError):
    """The machine ran out of memory; the message says what to keep less of."""


class InputTooLongError(InputError):
    """The input has more tokens than the model (or ``max_length``) accepts."""


class InspectorWarning(UserWarning):
    """Something worked but is worth knowing (a task head initialised at random, a comparison
    on few aligned tokens). The CLI prints it as one ``inspector: warning: ...`` line."""
