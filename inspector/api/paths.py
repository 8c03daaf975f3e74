"""The files the command line writes: output checks before any model work, and where an atlas
puts the files beside its output. Nothing here runs a model."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from .. import frames as _frames
from .._io import check_writable, replacing_read_only, same_file
from ..corpus import atlas as _atlas
from ..corpus.checkpoint import default_checkpoint_path
from ..corpus.sources import split_column
from ..errors import InputError


def distances_path(path: str | os.PathLike[str]) -> Path:
    """Where an atlas written to ``path`` puts its head-distance matrix."""
    return _atlas.distances_path(path)


def default_checkpoint(output: str | os.PathLike[str]) -> Path:
    """Where an atlas written to ``output`` keeps its checkpoint by default."""
    return default_checkpoint_path(output)


def save_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a per-head (or any) frame to ``.csv`` or ``.parquet`` atomically, index as columns."""
    if frame.index.names != [None]:
        frame = frame.reset_index()
    return _frames.write_frame(frame, path)


def check_output(
    path: str | os.PathLike[str],
    suffixes: Iterable[str],
    *,
    mkdir: bool = True,
    force: bool = False,
) -> Path:
    """Refuse, before any work, an output path with another suffix, that cannot be written, or
    that is a read-only file (unless ``force``).

    ``mkdir=False`` (the command line without ``--mkdir``) also refuses a path whose folder does
    not exist, rather than creating folders from a mistyped path.
    """
    wanted = tuple(suffixes)
    if Path(path).suffix.lower() not in wanted:
        raise InputError(f"{path}: use a {' or '.join(wanted)} file name")
    parent = Path(path).expanduser().parent
    if not mkdir and not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise InputError(
            f"cannot write {path}: the folder {parent} {what}; create it first, or add --mkdir "
            f"to create it"
        )
    return check_writable(path, force=force)


def check_not_input(
    outputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str] | None] | None,
    inputs: Iterable[str | os.PathLike[str] | None],
) -> None:
    """Refuse an output (or a file written beside it) that is one of the inputs
    (``corpus.parquet:text -o corpus.parquet``, ``--file notes.rows.csv -o notes.csv``).

    Inputs may name a column (``FILE:COLUMN``). Paths are compared resolved (``..``, symbolic
    links) and by inode, so a hard link to the input counts as the input too.
    """
    if outputs is None:
        return
    if isinstance(outputs, str | os.PathLike):
        outputs = [outputs]
    given_inputs = [os.fspath(i) for i in inputs if i is not None]
    for output in outputs:
        if output is None:
            continue
        for given in given_inputs:
            path, _ = split_column(given)
            for candidate in dict.fromkeys((given, path)):
                if os.path.exists(candidate) and same_file(output, candidate):
                    raise InputError(
                        f"the output {output} is the input {given} itself; writing it would "
                        f"destroy the input: choose another output path"
                    )


__all__ = [
    "check_not_input",
    "check_output",
    "default_checkpoint",
    "distances_path",
    "replacing_read_only",
    "save_table",
]
