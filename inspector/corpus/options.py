"""The corpus runs' options as values: built once where a public function takes them (the
facade) and passed down unchanged to the local and the Ray engine.

Pure values: nothing here reads a corpus or runs a model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..capture.memory import MemoryLimit
from ..capture.types import AttentionStack
from ..errors import InputError
from .aggregate import DEFAULT_BINS

MetricFn = Callable[[AttentionStack], Mapping[str, np.ndarray]]
DistanceFn = Callable[[AttentionStack], np.ndarray]


@dataclass(frozen=True, kw_only=True)
class ResumeOptions:
    """Where a resumable run keeps its progress, and how much of its source it reads.

    Attributes:
        checkpoint: file for the run's state; written atomically every ``checkpoint_every``
            seconds, at the end, and when interrupted (Ctrl-C) or crashing, once the run has
            consumed something (a run that fails before that leaves none).
        resume: continue from ``checkpoint`` when it exists: its settings and its source (file
            path, size and the SHA-256 of its content; a hash of the texts it counted) must
            match; a file only touched (its modification time) still resumes.
        checkpoint_every: seconds between checkpoints.
        limit: stop after this many source items.
    """

    checkpoint: str | os.PathLike[str] | None = None
    resume: bool = False
    checkpoint_every: float = 30.0
    limit: int | None = None


@dataclass(frozen=True, kw_only=True)
class CorpusOptions:
    """How a corpus run reads its texts and batches them (the atlas' and the probe's).

    Attributes:
        batch_size: inputs per forward pass.
        max_length: token limit per input (the atlas truncates longer inputs, the probe skips
            them; both count them).
        progress: a tqdm bar on stderr (``None``: on a terminal; elsewhere a line every 30 s,
            see :mod:`inspector._progress`).
        skip_bad_lines: count a line that is not UTF-8 (or not valid CSV/CoNLL-U) as skipped
            instead of stopping with its line number.
        max_memory: the memory budget of a batch (default: what is available, cgroup limits
            included); batches that do not fit run in smaller passes.

    Raises:
        InputError: ``batch_size`` is not a positive integer.
    """

    batch_size: int = 32
    max_length: int | None = None
    progress: bool | None = None
    skip_bad_lines: bool = False
    max_memory: MemoryLimit | None = None

    def __post_init__(self) -> None:
        size = self.batch_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InputError(
                f"batch_size (--batch-size) must be a positive integer, got {size!r}; e.g. 32"
            )


@dataclass(frozen=True, kw_only=True)
class ProbeOptions(CorpusOptions):
    """The syntactic probe's options (:func:`~.engine.syntax_probe`).

    Attributes:
        limit: use only the first ``limit`` sentences.
        subtypes: keep relation subtypes (``nmod:poss``) apart instead of folding them.
        exclude: relations not scored (default ``punct`` and ``root``, as Clark et al.).
        batch_size, max_length, progress, skip_bad_lines, max_memory: see
            :class:`CorpusOptions` (a sentence longer than ``max_length`` is skipped).
    """

    limit: int | None = None
    subtypes: bool = False
    exclude: Sequence[str] = ("punct", "root")

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "exclude", tuple(self.exclude))


@dataclass(frozen=True, kw_only=True)
class AtlasOptions(ResumeOptions, CorpusOptions):
    """What an atlas run reads and measures, for either engine
    (:func:`~.engine.run_atlas`, :func:`~.ray_engine.run_atlas_ray`).

    Attributes:
        column: the text column of a table source.
        metrics: metric names from the registry (default: all of ``metrics.list_metrics()``)
            plus ``sink_share`` (share of a head's attention on its top key, for the sink role).
        kind: the attention stack to measure (default ``self``; ``encoder`` for T5/BART).
        distances: also average the head-distance matrix (Jensen–Shannon) over the corpus.
        bins: histogram bins per metric and head (quantile resolution), at least 10.
        metric_fn / metric_names / distance_fn: replace the registry (advanced; tests).
        batch_size, max_length, progress, skip_bad_lines, max_memory: see
            :class:`CorpusOptions` (longer inputs are truncated; ``max_memory`` is the local
            engine's, which checkpoints before a pass that takes a large share of it).
        checkpoint, resume, checkpoint_every, limit: see :class:`ResumeOptions`.

    Raises:
        InputError: ``batch_size`` is not a positive integer, or ``bins`` is below 10.

    Example:
        >>> AtlasOptions(batch_size=16, metrics=["entropy"]).metrics
        ('entropy',)
    """

    column: str | None = None
    metrics: Sequence[str] | None = None
    kind: str | None = None
    distances: bool = True
    bins: int = DEFAULT_BINS
    metric_fn: MetricFn | None = None
    metric_names: Sequence[str] | None = None
    distance_fn: DistanceFn | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bins < 10:
            raise InputError(f"bins must be at least 10, got {self.bins}")
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))


__all__ = [
    "AtlasOptions",
    "CorpusOptions",
    "DistanceFn",
    "MetricFn",
    "ProbeOptions",
    "ResumeOptions",
]
