"""Checkpoints of a faithfulness run over a corpus: the rows scored so far, how far the source
was read, and what the source was.

The same promise as the atlas checkpoints (:mod:`.checkpoint`): a compressed ``.npz`` holding
the result frames so far and one JSON record (format version, items consumed, the run's
settings, the source's identity and a running SHA-256 of the items consumed). A resumed run
must name the same settings and the same source, and re-reading the first ``n`` items must give
the same digest; otherwise one line says what differs. Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._io import atomic_path
from ..analysis.faithfulness_table import Faithfulness, empty_frames
from ..errors import InputError
from .checkpoint import check_start, resume_source
from .sources import TextHash, TextSource

SCOREBOARD_VERSION = 1


@dataclass(frozen=True, eq=False)
class ScoreboardState:
    """A run's progress: the result so far, items consumed, their digest, counts."""

    result: Faithfulness
    n_done: int
    digest: TextHash
    bad_lines: int = 0


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


def save_scoreboard(
    path: str | os.PathLike[str],
    state: ScoreboardState,
    fingerprint: Mapping[str, Any],
    source: TextSource,
) -> Path:
    """Atomically write ``state`` with the run's settings and the source's identity."""
    info = {
        "version": SCOREBOARD_VERSION,
        "n_done": state.n_done,
        "fingerprint": dict(fingerprint),
        "metadata": state.result.metadata,
        "source": {
            "identity": source.identity,
            "description": source.description,
            "digest": state.digest.hexdigest(),
            "bad_lines": state.bad_lines,
        },
    }
    arrays = {**_arrays("frame_", state.result.frame), **_arrays("scores_", state.result.scores)}
    arrays["checkpoint"] = np.frombuffer(json.dumps(info, default=str).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)  # type: ignore[arg-type]
    return Path(path)


def load_scoreboard(path: str | os.PathLike[str]) -> tuple[dict[str, Any], Faithfulness]:
    """The JSON record and the result stored in a checkpoint."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        info = json.loads(bytes(arrays.pop("checkpoint")).decode())
        empty_f, empty_s = empty_frames()
        result = Faithfulness(
            _frame("frame_", arrays, empty_f),
            _frame("scores_", arrays, empty_s),
            dict(info.get("metadata") or {}),
        )
    except Exception as exc:
        raise InputError(
            f"{path} is not a readable faithfulness checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:200]}); delete it to start over"
        ) from exc
    if info.get("version") != SCOREBOARD_VERSION:
        raise InputError(
            f"{path}: checkpoint format {info.get('version')} is not this inspector's "
            f"({SCOREBOARD_VERSION}); delete it to start over"
        )
    return info, result


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
    check_start(source, checkpoint, limit)
    empty_f, empty_s = empty_frames()
    state = ScoreboardState(Faithfulness(empty_f, empty_s, {}), 0, TextHash())
    it = source.open()
    if not (resume and checkpoint is not None and Path(checkpoint).exists()):
        return state, it
    path = Path(checkpoint)
    info, result = load_scoreboard(path)
    n_done = int(info["n_done"])
    digest, bad = resume_source(
        path, source, it, info.get("fingerprint") or {}, fingerprint, info.get("source") or {},
        n_done, limit,
    )  # fmt: skip
    return ScoreboardState(result, n_done, digest, bad), it


__all__ = [
    "SCOREBOARD_VERSION",
    "ScoreboardState",
    "load_scoreboard",
    "open_scoreboard",
    "save_scoreboard",
]
