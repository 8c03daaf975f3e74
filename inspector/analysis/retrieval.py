"""Retrieval heads (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
Factuality"): scoring from a sequence of generation steps. Pure numpy.

A needle sentence sits inside a long haystack; the model is asked about it and generates. At
each step the *last* query row of every head is all that is needed: its most-attended position.
A head *copies* at a step when that position lies inside the scored span and holds the very token
being generated. A head's retrieval score on one trial is the number of such steps divided by
the span's length in tokens (each step counts at most once per head), and its retrieval score
is the mean over the trials where the model did retrieve it (ROUGE-1 recall above 0.5).

Two protocols choose the span, the recall and the decoding (:data:`PROTOCOLS`):

- ``"wu"``, the paper's code (``retrieval_head_detection.py`` of nightdessert/Retrieval_Head):
  the span is the *answer* part of the needle (its ``real_needle``), found as the first window
  of the prompt, as long as the answer's tokens, holding more than 90% of the answer's distinct
  token ids (:func:`answer_span`, its ``find_needle_idx``); the recall is the ``rouge-score``
  package's ROUGE-1 recall with Porter stemming of the answer in the response
  (:func:`rouge1_recall_stemmed`); decoding is greedy for up to 50 tokens, stopping after a token
  that holds a newline and not at the end-of-sequence token (:class:`StopRule`).
- ``"needle"``, this package's first protocol: the whole needle sentence is scored, the recall is
  lowercased word overlap with the whole needle (:func:`rouge1_recall`), and decoding stops at
  the needle's length + 10 tokens or at the end-of-sequence token.

:class:`LastRowArgmax` is the bounded consumer a generation feeds (one ``(head, 1, key)`` block
per layer and step); :func:`retrieval_step_scores` scores its steps; :func:`insert_needle` and
:func:`depth_used` place the needle and say where it went.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..capture.types import ScanLayout
from ..errors import CaptureError, InputError, InspectorError

#: ROUGE-1 recall above which a trial counts as retrieved (the paper's 50).
SUCCESS_RECALL = 0.5
#: The scoring protocols (see the module docstring); ``"wu"`` is the default.
PROTOCOLS = ("wu", "needle")
#: Tokens the paper's code decodes at most per trial.
WU_MAX_NEW_TOKENS = 50
#: Share of the answer's distinct token ids a prompt window must hold (more than this) to be the
#: answer's span (``find_needle_idx``).
SPAN_OVERLAP = 0.9
#: How far (a share of the haystack's characters) a sentence end or a line end may lie from the
#: requested depth before the needle goes to a nearer boundary of the next kind.
BOUNDARY_REACH = 0.05
_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*\s+|[。！？][\"'”’)\]]*\s*")
_LINE_END = re.compile(r"\n\s*")
_SPACE = re.compile(r"\s+")


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
        needle: ``(start, end)`` token positions of the scored span in the prompt (the answer
            under the ``"wu"`` protocol, the whole needle under ``"needle"``); the score
            divides by its length.

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


def answer_span(
    prompt_ids: Sequence[int], answer_ids: Sequence[int], *, overlap: float = SPAN_OVERLAP
) -> tuple[int, int] | None:
    """The answer's token span in the prompt as the paper's code finds it (``find_needle_idx``):
    the first window of ``len(answer_ids)`` prompt tokens that holds more than ``overlap`` of
    the answer's distinct ids; ``None`` when no window does.

    Only whole windows are tried (the paper's loop also tries the shorter ones that run past the
    prompt's end, which can only be first when the answer's tokens are not in the prompt).

    Example:
        >>> answer_span([5, 1, 2, 3, 4, 9], [1, 2, 3, 4])
        (1, 5)
        >>> answer_span([5, 1, 2, 3, 8, 9], [1, 2, 3, 4]) is None  # 3 of 4 is not > 90%
        True
    """
    want = {int(i) for i in answer_ids}
    if not want:
        raise InputError("the answer has no tokens; give the part of the needle to score")
    ids = [int(i) for i in prompt_ids]
    n = len(answer_ids)
    for start in range(len(ids) - n + 1):
        if len(want.intersection(ids[start : start + n])) / len(want) > overlap:
            return start, start + n
    return None


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def rouge1_recall(reference: str, response: str) -> float:
    """Share of the reference's words (with multiplicity) found in the response: lowercased
    ``\\w+`` words, no stemming (the ``"needle"`` protocol's recall)."""
    ref = Counter(words(reference))
    if not ref:
        return 0.0
    got = Counter(words(response))
    return sum(min(n, got[w]) for w, n in ref.items()) / sum(ref.values())


@functools.lru_cache(maxsize=1)
def _rouge1_scorer() -> Any:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise InspectorError(
            "protocol='wu' scores recall with the rouge-score package, which is not installed: "
            "pip install rouge-score (or use protocol='needle')"
        ) from None
    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)


def rouge1_recall_stemmed(reference: str, response: str) -> float:
    """ROUGE-1 recall of ``reference`` in ``response`` from the ``rouge-score`` package with
    Porter stemming, as the paper's code scores it (the ``"wu"`` protocol's recall). Its
    tokenizer keeps ASCII letters and digits only, so text in other scripts scores 0, as there."""
    return float(_rouge1_scorer().score(reference, response)["rouge1"].recall)


@dataclass(frozen=True)
class StopRule:
    """When a trial's greedy decoding stops: after ``max_new_tokens`` tokens, after a token
    whose text holds a newline (``newline``), after the end-of-sequence token (``eos``).

    The paper's code stops after LLaMA's newline byte token; a token *holding* a newline is the
    same rule for tokenizers that merge newlines with other characters.

    Example:
        >>> rule = StopRule.for_protocol("wu", needle_tokens=20)
        >>> rule.kept(["Eat", " a", " sandwich", ".\\n", "Then"], [False] * 5)
        4
    """

    max_new_tokens: int
    newline: bool
    eos: bool

    def __post_init__(self) -> None:
        n = self.max_new_tokens
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise InputError(f"max_new_tokens must be a positive integer, got {n!r}")

    @classmethod
    def for_protocol(
        cls, protocol: str, *, needle_tokens: int, max_new_tokens: int | None = None
    ) -> StopRule:
        """``"wu"``: up to 50 tokens (or ``max_new_tokens``), stop after a newline, never at
        the end-of-sequence token; ``"needle"``: up to the needle's tokens + 10, stop at it."""
        check_protocol(protocol)
        if protocol == "wu":
            n = WU_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens
            return cls(n, newline=True, eos=False)
        n = needle_tokens + 10 if max_new_tokens is None else max_new_tokens
        return cls(n, newline=False, eos=True)

    def stops_after(self, text: str, is_eos: bool) -> bool:
        """Whether decoding stops after a token with this text."""
        return (self.newline and "\n" in text) or (self.eos and is_eos)

    def kept(self, texts: Sequence[str], is_eos: Sequence[bool]) -> int:
        """How many of these generated tokens the rule keeps (the stopping token included)."""
        for i, (text, eos) in enumerate(zip(texts, is_eos, strict=True)):
            if i + 1 >= self.max_new_tokens or self.stops_after(text, eos):
                return i + 1
        return len(texts)


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise InputError(
            f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}"
        )
    return protocol


def _nearest(pattern: re.Pattern[str], text: str, cut: int) -> int | None:
    """The boundary (end of a ``pattern`` match, inside ``text``) nearest to ``cut``; the
    earlier one on a tie."""
    best: int | None = None
    for match in pattern.finditer(text):
        at = match.end()
        if not 0 < at < len(text):
            continue
        if best is None or abs(at - cut) < abs(best - cut):
            best = at
        elif at > cut:
            break
    return best


def needle_offset(context: str, depth: float) -> int:
    """Where in ``context`` a needle at ``depth`` goes: at the start for 0 and the end for 1,
    else at the boundary nearest to ``depth`` of the text: a sentence end, else (none within
    :data:`BOUNDARY_REACH` of the text) a line end, else the start of a word, else that very
    character (a text without spaces)."""
    if not 0.0 <= depth <= 1.0:
        raise InputError(f"depths are fractions of the haystack between 0 and 1, got {depth}")
    n = len(context)
    cut = round(n * depth)
    if cut <= 0 or cut >= n:
        return min(max(cut, 0), n)
    for pattern in (_SENTENCE_END, _LINE_END):
        at = _nearest(pattern, context, cut)
        if at is not None and abs(at - cut) <= BOUNDARY_REACH * n:
            return at
    at = _nearest(_SPACE, context, cut)
    return cut if at is None else at


def insert_needle(context: str, needle: str, depth: float) -> tuple[str, int]:
    """``context`` with ``needle`` placed at ``depth`` (0 = start, 1 = end) on the nearest
    boundary (:func:`needle_offset`); returns the text and the needle's character offset. The
    needle is set off by a space, or by a newline where it goes at a line end."""
    cut = needle_offset(context, depth)
    before, after = context[:cut].rstrip(), context[cut:].lstrip()
    gap = context[len(before) : len(context) - len(after)]
    sep = "\n" if "\n" in gap else " "
    sep_before = sep if before else ""
    sep_after = sep if after else ""
    text = f"{before}{sep_before}{needle}{sep_after}{after}"
    return text, len(before) + len(sep_before)


def depth_used(offsets: np.ndarray, context: tuple[int, int], needle: tuple[int, int]) -> float:
    """The depth the needle really has in a prompt: the share of the haystack's tokens (tokens
    whose middle character lies in ``context`` but not in ``needle``) that come before it.

    Args:
        offsets: ``(token, 2)`` character offsets of the prompt's tokens (``-1`` where none).
        context: ``(start, end)`` characters of the haystack with the needle in it.
        needle: ``(start, end)`` characters of the needle.

    Example:
        >>> offs = np.array([[0, 2], [2, 4], [4, 6], [6, 8], [8, 10]])
        >>> depth_used(offs, (0, 10), (4, 6))  # 2 haystack tokens before the needle, 2 after
        0.5
    """
    offs = np.asarray(offsets)
    valid = offs[:, 0] >= 0
    mid = (offs[:, 0] + offs[:, 1]) / 2.0
    before = int((valid & (mid >= context[0]) & (mid < needle[0])).sum())
    after = int((valid & (mid >= needle[1]) & (mid < context[1])).sum())
    return before / (before + after) if before + after else 0.0


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
    """One needle-in-a-haystack run: the requested and the real depth, the needle's and the
    scored span's token positions (the answer under ``"wu"``, the needle under ``"needle"``),
    the response, its recall and each head's score ``(layer, head)``."""

    length: int
    depth: float
    depth_used: float
    n_tokens: int
    needle_start: int
    needle_end: int
    answer_start: int
    answer_end: int
    response: str
    recall: float
    scores: np.ndarray

    @property
    def success(self) -> bool:
        return self.recall > SUCCESS_RECALL


_TRIAL_COLUMNS = (
    "length",
    "depth",
    "depth_used",
    "n_tokens",
    "needle_start",
    "needle_end",
    "answer_start",
    "answer_end",
    "recall",
    "success",
    "response",
)


def trials_frame(trials: Sequence[Trial]) -> pd.DataFrame:
    """One row per trial: ``length, depth, depth_used, n_tokens, needle_start, needle_end,
    answer_start, answer_end, recall, success, response`` (``depth`` is the requested depth,
    ``depth_used`` where the needle went; ``answer_*`` is the scored span)."""
    return pd.DataFrame({c: [getattr(t, c) for t in trials] for c in _TRIAL_COLUMNS})


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
    "PROTOCOLS",
    "SUCCESS_RECALL",
    "WU_MAX_NEW_TOKENS",
    "LastRowArgmax",
    "StopRule",
    "Trial",
    "answer_span",
    "check_protocol",
    "depth_used",
    "head_scores",
    "insert_needle",
    "needle_offset",
    "retrieval_step_scores",
    "rouge1_recall",
    "rouge1_recall_stemmed",
    "success_table",
    "trials_frame",
]
