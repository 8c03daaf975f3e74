"""The facade of retrieval heads (Wu et al. 2024): the heads that copy a needle out of a long
haystack, measured while the model generates (:mod:`inspector.corpus.retrieval`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .. import frames as _frames
from ..analysis import retrieval as _retrieval
from ..corpus import retrieval as _engine
from ..render import scan_choice as _render
from ..render.page import Report
from .options import options_of
from .results import saved
from .scanning import LongModel, resolve_bundle


class RetrievalHeads:
    """Retrieval heads found by :func:`retrieval_heads`.

    Attributes:
        heads: per head on ``(layer, head)``: ``retrieval_score`` (the paper's score, mean over
            the trials where the answer was retrieved), ``score_all_trials``, ``n_success``.
        trials: one row per ``(length, depth)`` trial: the requested ``depth`` and the
            ``depth_used``, the needle's and the scored span's token positions, the recall,
            success and response.
        success: mean recall per length (rows) and requested depth (columns).
    """

    def __init__(self, run: _engine.RetrievalRun) -> None:
        self.run = run
        self.heads = _retrieval.head_scores(run.trials, run.layers, run.heads)
        self.trials = _retrieval.trials_frame(run.trials)
        self.success = _retrieval.success_table(run.trials)
        self.metadata = dict(run.metadata)

    def top(self, k: int = 10, threshold: float = 0.1) -> pd.DataFrame:
        """The ``k`` best heads with a retrieval score of at least ``threshold``."""
        ranked = self.heads.sort_values("retrieval_score", ascending=False)
        return ranked[ranked["retrieval_score"] >= threshold].head(k)

    def __repr__(self) -> str:
        n_ok = int(self.trials["success"].sum())
        top = self.top(3).index.tolist()
        return f"RetrievalHeads({len(self.trials)} trials, {n_ok} retrieved, top {top})"

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """The per-head table (``layer, head, retrieval_score, ...``) as CSV."""
        return _frames.write_frame(self.heads.reset_index(), path)

    def report(
        self, path: str | os.PathLike[str] | None = None, *, title: str | None = None
    ) -> Report:
        """The retrieval page: success per (length, depth), the head heatmap and tables."""
        return saved(
            _render.retrieval_report(self.heads, self.trials, self.metadata, title=title), path
        )


def retrieval_heads(
    model: LongModel,
    haystack: str,
    *,
    needle: str = _engine.DEFAULT_NEEDLE,
    question: str = _engine.DEFAULT_QUESTION,
    answer: str | None = None,
    protocol: str = "wu",
    lengths: Sequence[int] = (1000,),
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    method: str = "auto",
    max_new_tokens: int | None = None,
    max_memory: int | str | None = None,
    progress: bool | None = None,
) -> RetrievalHeads:
    """Find retrieval heads (Wu et al. 2024) with needle-in-a-haystack prompts built from
    ``haystack``; see :mod:`inspector.corpus.retrieval`.

    ``protocol="wu"`` (the default) scores as the paper's code does: only ``answer``, the part
    of the needle the question asks for (known for the default needle; required for yours), its
    ROUGE-1 recall from the ``rouge-score`` package, up to 50 tokens stopping after a newline.
    ``protocol="needle"`` scores the whole needle with word recall, up to its length + 10 tokens.

    Example:
        >>> r = inspector.retrieval_heads(m, open("essays.txt").read(), lengths=[1000, 2000],
        ...                               depths=[0, 0.5, 1])  # doctest: +SKIP
        >>> r.top(5)  # doctest: +SKIP
    """
    options = options_of(_engine.RetrievalOptions, locals())
    return RetrievalHeads(_engine.run_retrieval(resolve_bundle(model), haystack, options))


__all__ = ["RetrievalHeads", "retrieval_heads"]
