"""Checkpoints of a faithfulness run over a corpus: the rows scored so far, how far the source
was read, and what the source was.

The same promise as the atlas checkpoints (:mod:`.checkpoint`): a compressed ``.npz`` holding
the result frames so far and one JSON record (format version, items consumed, the run's
settings, the source's identity and a running SHA-256 of the items consumed). A resumed run
must name the same settings and the same source, and re-reading the first ``n`` items must give
the same digest; otherwise one line says what differs. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..analysis.faithfulness_table import Faithfulness, empty_frames
from .checkpoint import open_resumable, read_run, save_checkpoint
from .options import ResumeOptions
from .sources import TextHash, TextSource

SCOREBOARD_VERSION = 1


@dataclass(frozen=True, eq=False)
class ScoreboardState:
    """A run's progress: the result so far, items consumed, their digest, counts."""

    result: Faithfulness
    n_done: int
    digest: TextHash
    bad_lines: int = 0

    def content(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """What its checkpoint holds besides the progress (:func:`save_scoreboard`)."""
        frames = {**_arrays("frame_", self.result.frame), **_arrays("scores_", self.result.scores)}
        return SCOREBOARD_VERSION, frames, {"metadata": self.result.metadata}


def _arrays(prefix: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    out = {}
    for col in frame.columns:
        values = frame[col].to_numpy()
        if values.dtype == object:
            values = np.asarray([str(v) for v in values], dtype=np.str_)
        out[f"{prefix}{col}"] = values
    return out


def _frame(prefix: str, arrays: Mapping[str, np.ndarray], template: pd.DataFrame) -> pd.DataFrame:
    data = {}
    for col in template.columns:
        values = arrays[f"{prefix}{col}"]
        data[col] = values.astype(object) if values.dtype.kind == "U" else values
    return pd.DataFrame(data, columns=list(template.columns)).astype(template.dtypes.to_dict())


#: Atomically write a faithfulness run's state: :func:`.checkpoint.save_checkpoint` (the
#: result frames and their metadata, with the run's settings and the source's identity).
save_scoreboard = save_checkpoint


def _result(info: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Faithfulness:
    empty_f, empty_s = empty_frames()
    return Faithfulness(
        _frame("frame_", arrays, empty_f),
        _frame("scores_", arrays, empty_s),
        dict(info.get("metadata") or {}),
    )


def load_scoreboard(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Faithfulness]:
    """The JSON record and the result stored in a checkpoint."""
    return read_run(path, "faithfulness", SCOREBOARD_VERSION, _result)


def open_scoreboard(
    source: TextSource,
    fingerprint: Mapping[str, Any],
    *,
    checkpoint: str | os.PathLike[str] | None,
    resume: bool,
    limit: int | None,
) -> tuple[ScoreboardState, Iterator[Any]]:
    """The starting state and the source's items still to read (see :func:`.checkpoint.open_run`:
    the same checks, for a faithfulness run)."""
    run = ResumeOptions(checkpoint=checkpoint, resume=resume, limit=limit)
    it, saved = open_resumable(source, fingerprint, load_scoreboard, run)
    if saved is None:
        empty_f, empty_s = empty_frames()
        return ScoreboardState(Faithfulness(empty_f, empty_s, {}), 0, TextHash()), it
    return ScoreboardState(*saved), it


__all__ = [
    "SCOREBOARD_VERSION",
    "ScoreboardState",
    "load_scoreboard",
    "open_scoreboard",
    "save_scoreboard",
]
