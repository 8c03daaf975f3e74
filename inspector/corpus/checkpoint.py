"""Atlas checkpoints: the merged aggregate, how far the source was read, and what the source was.

Both atlas engines (local and Ray) write the same file: a compressed ``.npz`` with the
:class:`~.aggregate.HeadAggregate` arrays and one JSON record: the format version, the number of
source items consumed, the run's settings (``fingerprint``) and the source's identity (kind;
for a file its resolved path, size and the SHA-256 of its content) with a running SHA-256 of
every item consumed (:class:`~.sources.TextHash`). A resumed run must name the same settings
and the same source, and re-reading the first ``n`` items must give the same digest, so an
edited, reordered or different corpus is refused with one line saying what differs instead of
being mixed in.
Pure I/O: nothing here runs a model.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .._io import atomic_path, same_file
from ..errors import InputError
from .aggregate import HeadAggregate
from .options import ResumeOptions
from .sources import BadLine, TextHash, TextSource

CHECKPOINT_VERSION = 2

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """What :func:`load_checkpoint` reads back.

    Attributes:
        aggregate: the merged aggregate of the items consumed.
        n_done: source items consumed (texts, blanks and skipped items alike).
        fingerprint: the run's settings (model, metrics, kind, ...).
        source: ``identity`` (see :func:`~.sources.source_identity`), ``description``,
            ``digest`` (SHA-256 of the items consumed) and ``bad_lines``.
    """

    aggregate: HeadAggregate
    n_done: int
    fingerprint: dict[str, Any]
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class RunState:
    """A run's progress, replaced whole after each batch (one assignment, so an interrupt
    never leaves an aggregate and a count that disagree)."""

    aggregate: HeadAggregate
    n_done: int
    digest: TextHash
    bad_lines: int = 0

    def advanced(self, delta: HeadAggregate, items: Sequence[Any]) -> RunState:
        """The state after ``items`` were consumed and measured as ``delta``."""
        return RunState(
            self.aggregate.merge(delta),
            self.n_done + len(items),
            self.digest.copy().update(items),
            self.bad_lines + sum(isinstance(item, BadLine) for item in items),
        )

    def content(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]:
        """What its checkpoint holds besides the progress: the format version, the arrays and
        any other entries of the JSON record."""
        return CHECKPOINT_VERSION, self.aggregate.to_arrays(), {}


class Resumable(Protocol):
    """A run's state that :func:`save_checkpoint` writes (:class:`RunState`, a faithfulness
    run's :class:`~.scoreboard.ScoreboardState`): how far it read its source, and its content."""

    @property
    def n_done(self) -> int: ...
    @property
    def digest(self) -> TextHash: ...
    @property
    def bad_lines(self) -> int: ...
    def content(self) -> tuple[int, dict[str, np.ndarray], dict[str, Any]]: ...


def save_checkpoint(
    path: str | os.PathLike[str],
    state: Resumable,
    fingerprint: Mapping[str, Any],
    source: TextSource,
) -> Path:
    """Atomically write ``state`` with the run's settings and the source's identity: its
    arrays and one JSON record (format version, items consumed, settings, the source's
    identity and digest, and the state's own entries) as one compressed ``.npz``;
    :func:`read_run` reads it back."""
    version, arrays, record = state.content()
    info = {
        "version": version,
        "n_done": state.n_done,
        "fingerprint": dict(fingerprint),
        **record,
        "source": {
            "identity": source.identity,
            "description": source.description,
            "digest": state.digest.hexdigest(),
            "bad_lines": state.bad_lines,
        },
    }
    info_bytes = np.frombuffer(json.dumps(info, default=str).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays, checkpoint=info_bytes)  # type: ignore[arg-type]
    return Path(path)


def read_run(
    path: str | os.PathLike[str],
    what: str,
    version: int,
    build: Callable[[dict[str, Any], dict[str, np.ndarray]], T],
    *,
    format_note: str = "",
) -> tuple[dict[str, Any], T]:
    """The JSON record (``n_done`` an int) and what ``build(record, arrays)`` makes of a file
    :func:`save_checkpoint` wrote; a file that is not one (``what``: ``atlas``, ``faithfulness``),
    or one of another format ``version``, is refused saying to delete it."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        info = json.loads(bytes(arrays.pop("checkpoint")).decode())
        built = build(info, arrays)
        info["n_done"] = int(info["n_done"])
    except Exception as exc:
        raise InputError(
            f"{path} is not a readable {what} checkpoint ({type(exc).__name__}: "
            f"{str(exc)[:200]}); delete it to start over"
        ) from exc
    if info.get("version") != version:
        raise InputError(
            f"{path}: checkpoint format {info.get('version')} is not this inspector's "
            f"({version}{format_note}); delete it to start over"
        )
    return info, built


def open_resumable(
    source: TextSource,
    fingerprint: Mapping[str, Any],
    read: Callable[[Path], tuple[dict[str, Any], T]],
    run: ResumeOptions,
) -> tuple[Iterator[Any], tuple[T, int, TextHash, int] | None]:
    """The source's items still to read and, when ``run.resume`` finds ``run.checkpoint``, what
    it saved (``read``'s second value), the items it consumed, their digest and unreadable
    lines, after the checks of :func:`check_start` and :func:`resume_source`."""
    check_start(source, run.checkpoint, run.limit)
    it = source.open()
    if not (run.resume and run.checkpoint is not None and Path(run.checkpoint).exists()):
        return it, None
    path = Path(run.checkpoint)
    info, saved = read(path)
    digest, bad = resume_source(
        path, source, it, info.get("fingerprint") or {}, fingerprint, info.get("source") or {},
        info["n_done"], run.limit,
    )  # fmt: skip
    return it, (saved, info["n_done"], digest, bad)


def _read_atlas(path: str | os.PathLike[str]) -> tuple[dict[str, Any], HeadAggregate]:
    return read_run(
        path,
        "atlas",
        CHECKPOINT_VERSION,
        lambda _, arrays: HeadAggregate.from_arrays(arrays),
        format_note=", which records its source",
    )


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    info, agg = _read_atlas(path)
    return Checkpoint(
        agg, info["n_done"], dict(info["fingerprint"]), dict(info.get("source") or {})
    )


def default_checkpoint_path(output: str | os.PathLike[str]) -> Path:
    """``atlas.parquet`` → ``atlas.parquet.ckpt.npz``."""
    p = Path(output)
    return p.with_name(p.name + ".ckpt.npz")


def _when(ns: Any) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(ns) / 1e9))
    except (TypeError, ValueError, OverflowError):
        return "?"


def source_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """What differs between the source a checkpoint recorded and this run's, or ``None``.

    Files must be the same file (path) of the same size and read the same column (their content
    is checked by :func:`content_difference`; the modification time is not compared, so a file
    only touched still resumes). In-memory texts (a list, an iterable, a table, a dataset) have
    nothing to compare but a dataset's fingerprint: the hash of the texts consumed decides.
    """
    if ("path" in saved or "path" in current) and saved.get("kind") != current.get("kind"):
        return f"it was written for a {saved.get('kind')}, this run reads a {current.get('kind')}"
    if saved.get("path") != current.get("path"):
        return f"it was written for {saved.get('path')}, not {current.get('path')}"
    if saved.get("size") != current.get("size"):
        return (
            f"{current.get('path')} has changed since: {saved.get('size'):,} bytes then, "
            f"{current.get('size'):,} now"
        )
    if "sha256" not in saved and saved.get("mtime_ns") != current.get("mtime_ns"):
        # a checkpoint of an older inspector recorded the modification time, not the content
        return (
            f"{current.get('path')} was modified since (at {_when(saved.get('mtime_ns'))} then, "
            f"{_when(current.get('mtime_ns'))} now)"
        )
    if "path" in current and saved.get("column") != current.get("column"):
        return f"it read column {saved.get('column')!r}, this run reads {current.get('column')!r}"
    fingerprints = (saved.get("fingerprint"), current.get("fingerprint"))
    if None not in fingerprints and fingerprints[0] != fingerprints[1]:
        return "the dataset is another one (its fingerprint differs)"
    return None


def content_difference(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """For a file whose first texts were found unchanged: whether the rest changed (the
    SHA-256 of the whole file), or ``None``. Checked last, so an edit among the texts counted
    is named as such."""
    if "sha256" in saved and saved.get("sha256") != current.get("sha256"):
        return (
            f"{current.get('path')} has changed since: its content is not the same (the SHA-256 "
            f"of the file differs, at the same size)"
        )
    return None


def _refuse(checkpoint: Path, why: str) -> InputError:
    return InputError(
        f"cannot resume from {checkpoint}: {why}; rerun with the same corpus, or delete the "
        f"checkpoint to start over"
    )


def open_run(
    source: TextSource, empty: HeadAggregate, fingerprint: Mapping[str, Any], run: ResumeOptions
) -> tuple[RunState, Iterator[Any]]:
    """The starting state and the source's items still to read.

    Without a usable checkpoint that is the empty aggregate and the whole source. With
    ``resume`` and an existing ``checkpoint`` the settings and the source are checked (see the
    module docstring), the first ``n_done`` items are re-read and hashed, and the state continues
    from the checkpoint.

    Raises:
        InputError: one line saying what differs (settings, file, size, modification time,
            or the items themselves), or that ``limit`` is below what was already counted.
    """
    it, saved = open_resumable(source, fingerprint, _read_atlas, run)
    return (RunState(empty, 0, TextHash()) if saved is None else RunState(*saved)), it


def check_start(
    source: TextSource, checkpoint: str | os.PathLike[str] | None, limit: int | None
) -> None:
    """Refuse a bad ``limit`` and a checkpoint that is the corpus file itself."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise InputError(
            f"limit (--limit) must be a non-negative integer, got {limit!r}; leave it out to "
            f"read the whole corpus"
        )
    if checkpoint is not None and source.path is not None and same_file(checkpoint, source.path):
        raise InputError(
            f"the checkpoint {checkpoint} is the corpus file itself; give another checkpoint path"
        )


def resume_source(
    path: Path,
    source: TextSource,
    it: Iterator[Any],
    saved_fingerprint: Mapping[str, Any],
    fingerprint: Mapping[str, Any],
    record: Mapping[str, Any],
    n_done: int,
    limit: int | None,
) -> tuple[TextHash, int]:
    """Check a checkpoint against this run and re-read the ``n_done`` items it consumed from
    ``it``: the same settings, the same source (:func:`source_difference`), no more than
    ``limit`` and the same items (their digest). Returns the digest and the unreadable lines.

    Raises:
        InputError: one line saying what differs.
    """
    wanted = json.loads(json.dumps(dict(fingerprint)))
    if dict(saved_fingerprint) != wanted:
        keys = set(wanted) | set(saved_fingerprint)
        diff = sorted(k for k in keys if saved_fingerprint.get(k) != wanted.get(k))
        raise InputError(
            f"{path} was written with other settings ({', '.join(diff)} differ); rerun with "
            f"the same settings, or delete it to start over"
        )
    why = source_difference(record.get("identity") or {}, source.identity)
    if why is not None:
        raise _refuse(path, why)
    if limit is not None and n_done > limit:
        raise InputError(
            f"{path} has already counted {n_done:,} texts, more than the limit {limit:,}; "
            f"raise the limit, or delete the checkpoint to start over"
        )
    digest = TextHash()
    bad = 0
    read = 0
    for item in itertools.islice(it, n_done):
        digest.update((item,))
        bad += isinstance(item, BadLine)
        read += 1
    if read < n_done:
        raise _refuse(path, f"it counted {n_done:,} texts but {source.description} has {read:,}")
    if digest.hexdigest() != record.get("digest"):
        raise _refuse(
            path,
            f"the first {n_done:,} texts of {source.description} are not the ones it "
            f"counted (edited or reordered)",
        )
    why = content_difference(record.get("identity") or {}, source.identity)
    if why is not None:
        raise _refuse(path, why)
    return digest, bad


def discard_checkpoint(path: str | os.PathLike[str] | None) -> None:
    """Remove a checkpoint this run wrote (a run that measured nothing leaves none behind)."""
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


__all__ = [
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "Resumable",
    "RunState",
    "check_start",
    "content_difference",
    "default_checkpoint_path",
    "discard_checkpoint",
    "load_checkpoint",
    "open_resumable",
    "open_run",
    "read_run",
    "resume_source",
    "save_checkpoint",
    "source_difference",
]
