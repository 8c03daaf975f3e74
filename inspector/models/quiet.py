"""Quiet loads: a library load prints nothing unless asked (no bars, no Jupyter warnings).

Used by :mod:`.loading` around ``from_pretrained``; nothing here loads a model.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any


def import_tqdm_quietly() -> None:
    """Import ``tqdm.auto`` (transformers does) without its Jupyter warning.

    In a notebook without ipywidgets, importing ``tqdm.auto`` warns "IProgress not found" once;
    a load draws no bar, so the warning is noise. Imported here first, with that warning
    filtered, it is never shown (an import runs once).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import tqdm.auto  # noqa: F401


_PROGRESS_LOCK = threading.RLock()


@contextlib.contextmanager
def load_progress(show: bool, gguf: bool = False) -> Iterator[None]:
    """A load prints no progress bar, except the GGUF dequantisation bar when ``show``.

    transformers' "Loading weights" bar stays off (a library load prints nothing; reading
    safetensors takes a second). The GGUF "Converting and de-quantizing" bar is a bare
    ``tqdm.auto`` call (which in Jupyter without ipywidgets warns "IProgress not found"), so it
    is swapped for a plain stderr bar, drawn only when ``show``.
    """
    from transformers.utils import logging as hf_logging

    with _PROGRESS_LOCK:
        was_enabled = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        module: Any = None
        if gguf:
            import transformers.modeling_gguf_pytorch_utils as module
            from tqdm.std import tqdm

            original = module.tqdm
            module.tqdm = functools.partial(tqdm, disable=not show, file=sys.stderr, leave=False)
        try:
            yield
        finally:
            if module is not None:
                module.tqdm = original
            if was_enabled:
                hf_logging.enable_progress_bar()


__all__ = ["import_tqdm_quietly", "load_progress"]
