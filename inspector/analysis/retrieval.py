"""Retrieval heads (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
Factuality"): scoring from a sequence of generation steps. Pure numpy.

A needle sentence sits inside a long haystack; the model is asked about it and generates. At
each step the *last* query row of every head is all that is needed: its most-attended position.
A head *copies* at a step when that position lies inside the needle and holds the very token
being generated. A head's retrieval score on one trial is the number of such steps divided by
the needle's length in tokens (each step counts at most once per head), and its retrieval score
is the mean over the trials where the model did retrieve the needle (ROUGE-1 recall of the
needle in the answer above 0.5), as in the paper's code.

:class:`LastRowArgmax` is the bounded consumer a generation feeds (one ``(head, 1, key)`` block
per layer and step); :func:`retrieval_step_scores` scores its steps; :func:`rouge1_recall` and
:func:`insert_needle` are the text side.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..capture.types import ScanLayout
from ..errors import CaptureError, InputError

#: ROUGE-1 recall above which a trial counts as retrieved (the paper's 50).
SUCCESS_RECALL = 0.5
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?。！？]\s+")


def retrieval_step_scores(
    argmax_pos: np.ndarray,
    generated: Sequence[int],
    prompt_ids: Sequence[int],
    needle: tuple[int, int],
) -> np.ndarray:
    """One trial's retrieval score of every head, ``(layer, head)``.

    Args:
        argmax_pos: ``(step, layer, head)`` most-attended key position at each step.
        generated: the token generated at each step.
        prompt_ids: the prompt's token ids (the keys a step can copy from).
        needle: ``(start, end)`` token positions of the needle in the prompt.

    Example:
        >>> pos = np.array([[[3, 0]], [[4, 4]]])  # 2 steps, 1 layer, 2 heads
        >>> retrieval_step_scores(pos, [13, 14], [0, 1, 2, 13, 14, 5], (3, 5)).tolist()
        [[1.0, 0.5]]
    """
    pos = np.asarray(argmax_pos)
    if pos.ndim != 3:
        raise InputError(f"argmax_pos must be (step, layer, head), got shape {pos.shape}")
    steps = min(len(generated), pos.shape[0])
    start, end = needle
    if not 0 <= start < end <= len(prompt_ids):
        raise InputError(f"needle span {needle} is not inside a prompt of {len(prompt_ids)} tokens")
    ids = np.asarray(prompt_ids, dtype=np.int64)
    gen = np.asarray(list(generated)[:steps], dtype=np.int64)
    p = pos[:steps]
    inside = (p >= start) & (p < end)
    token_at = ids[np.clip(p, 0, len(ids) - 1)]
    copies = inside & (token_at == gen[:, None, None])
    return copies.sum(axis=0) / float(end - start)


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def rouge1_recall(reference: str, response: str) -> float:
    """Share of the reference's words (with multiplicity) found in the response (ROUGE-1
    recall on lowercased word tokens)."""
    ref = Counter(words(reference))
    if not ref:
        return 0.0
    got = Counter(words(response))
    return sum(min(n, got[w]) for w, n in ref.items()) / sum(ref.values())


def insert_needle(context: str, needle: str, depth: float) -> tuple[str, int]:
    """``context`` with ``needle`` placed at ``depth`` (0 = start, 1 = end), moved back to the
    nearest sentence end before that point; returns the text and the needle's character
    offset."""
    if not 0.0 <= depth <= 1.0:
        raise InputError(f"depths are fractions of the haystack between 0 and 1, got {depth}")
    cut = round(len(context) * depth)
    if 0 < cut < len(context):
        ends = [m.end() for m in _SENTENCE_END.finditer(context, 0, cut)]
        cut = ends[-1] if ends else 0
    before, after = context[:cut].rstrip(), context[cut:].lstrip()
    sep_before = " " if before else ""
    sep_after = " " if after else ""
    text = f"{before}{sep_before}{needle}{sep_after}{after}"
    return text, len(before) + len(sep_before)


class LastRowArgmax:
    """A bounded block consumer keeping, per generation step, each head's top key and weight.

    Step ``s`` is query position ``prompt_length - 1 + s``; arrays are ``(step, layer, head)``.
    """

    wants_full_layers = False

    def __init__(self, prompt_length: int, max_steps: int) -> None:
        self.prompt_length = int(prompt_length)
        self.max_steps = int(max_steps)
        self.argmax: np.ndarray = np.zeros((0, 0, 0), dtype=np.int32)
        self.weight: np.ndarray = np.zeros((0, 0, 0), dtype=np.float32)
        self.steps = 0

    def bytes_needed(self, layout: ScanLayout, block_rows: int) -> int:
        n_k = self.prompt_length + self.max_steps
        per_step = len(layout.layers) * len(layout.heads)
        return self.max_steps * per_step * 8 + 4 * len(layout.heads) * n_k * 4

    def start(self, layout: ScanLayout) -> None:
        shape = (self.max_steps, len(layout.layers), len(layout.heads))
        self.argmax = np.full(shape, -1, dtype=np.int32)
        self.weight = np.zeros(shape, dtype=np.float32)

    def layer(self, kind: str, layer_position: int, weights: np.ndarray) -> None:
        raise CaptureError("LastRowArgmax reads rows only")

    def block(self, kind: str, layer_position: int, row_start: int, block: np.ndarray) -> None:
        for r in range(block.shape[1]):
            step = row_start + r - (self.prompt_length - 1)
            if 0 <= step < self.max_steps:
                row = block[:, r]
                top = row.argmax(axis=-1)
                self.argmax[step, layer_position] = top
                self.weight[step, layer_position] = row[np.arange(row.shape[0]), top]
                self.steps = max(self.steps, step + 1)


@dataclass(frozen=True)
class Trial:
    """One needle-in-a-haystack run."""

    length: int
    depth: float
    n_tokens: int
    needle_start: int
    needle_end: int
    response: str
    recall: float
    scores: np.ndarray

    @property
    def success(self) -> bool:
        return self.recall > SUCCESS_RECALL


def trials_frame(trials: Sequence[Trial]) -> pd.DataFrame:
    """One row per trial: ``length, depth, n_tokens, needle_start, needle_end, recall, success,
    response``."""
    return pd.DataFrame(
        {
            "length": [t.length for t in trials],
            "depth": [t.depth for t in trials],
            "n_tokens": [t.n_tokens for t in trials],
            "needle_start": [t.needle_start for t in trials],
            "needle_end": [t.needle_end for t in trials],
            "recall": [t.recall for t in trials],
            "success": [t.success for t in trials],
            "response": [t.response for t in trials],
        }
    )


def head_scores(
    trials: Sequence[Trial], layers: Sequence[int], heads: Sequence[int]
) -> pd.DataFrame:
    """Per head on ``(layer, head)``: ``retrieval_score`` (mean over successful trials, the
    paper's score; NaN when none succeeded), ``score_all_trials`` and ``n_success``."""
    if not trials:
        raise InputError("no trials to score")
    stack = np.stack([t.scores for t in trials])
    ok = np.array([t.success for t in trials])
    index = pd.MultiIndex.from_product([list(layers), list(heads)], names=["layer", "head"])
    frame = pd.DataFrame(index=index)
    frame["retrieval_score"] = (
        stack[ok].mean(axis=0).ravel() if ok.any() else np.full(stack[0].size, np.nan)
    )
    frame["score_all_trials"] = stack.mean(axis=0).ravel()
    frame["n_success"] = int(ok.sum())
    frame["n_trials"] = len(trials)
    return frame


def success_table(trials: Sequence[Trial]) -> pd.DataFrame:
    """Retrieval success (mean ROUGE-1 recall) per ``length`` (rows) and ``depth`` (columns)."""
    frame = trials_frame(trials)
    return frame.pivot_table(index="length", columns="depth", values="recall", aggfunc="mean")


__all__ = [
    "SUCCESS_RECALL",
    "LastRowArgmax",
    "Trial",
    "head_scores",
    "insert_needle",
    "retrieval_step_scores",
    "rouge1_recall",
    "success_table",
    "trials_frame",
]
