"""Syntactic head probe (Clark et al. 2019, "What Does BERT Look At?", section 4).

For every dependency relation of a CoNLL-U treebank, find the attention head whose most-attended
other word is most often the syntactic head (direction ``dependent→head``) — or, transposed, for
which the word attending most to the dependent is most often its syntactic head
(``head→dependent``) — and set it beside the best fixed-offset baseline (the head is always ``k``
words away, ``k`` in −3..+3).

Both directions are Clark et al.'s own reading (``attn_head_predictor`` in their released code,
modes ``normal`` and ``transpose``): each dependent gets one prediction per head and direction,
the argmax of its row (``dependent→head``) or of its column (``head→dependent``) with itself
left out, so a head word with several dependents can be right for every one of them.

Gold words are tokenized with ``is_split_into_words=True`` (a word list given to
:func:`inspector.capture.tokenize.encode`), so every model token belongs to exactly one gold word;
token attention becomes word attention with :func:`inspector.frames.word_level` (sum over the key
word's pieces, mean over the query word's pieces). Multiword-token ranges (``1-2``) and empty nodes
(``8.1``) are skipped: the syntactic words are used. Special tokens ([CLS], [SEP]) are not
candidates, and a word never predicts itself. As in Clark et al., ``punct`` dependents and the
``root`` relation are not scored (punctuation words stay candidates); relation subtypes
(``nmod:poss``) fold into their universal relation unless ``subtypes=True``.

This module scores captured word attention (pure); :func:`inspector.corpus.engine.syntax_probe`
runs the model over a treebank and feeds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..capture.types import AttentionStack
from ..frames import word_level
from .treebank import GoldSentence

OFFSETS = (-3, -2, -1, 1, 2, 3)
DIRECTIONS = ("dependent→head", "head→dependent")
TABLE_COLUMNS = (
    "relation",
    "n",
    "best_head",
    "layer",
    "head",
    "accuracy",
    "direction",
    "baseline_offset",
    "baseline_accuracy",
)


@dataclass
class ProbeCounts:
    """Running counts of one relation: cases, correct predictions per head and direction."""

    n: int
    dep: np.ndarray  # (layer, head) correct dependent→head
    head: np.ndarray  # (layer, head) correct head→dependent
    base: np.ndarray  # (offset,) correct fixed-offset predictions


def word_predictions(weights: np.ndarray) -> np.ndarray:
    """Each word's most-attended *other* word: ``(layer, head, word, word)`` → ``(..., word)``.

    Pass the transposed map (``weights.swapaxes(-1, -2)``) for the word that attends most to each
    word (Clark et al.'s ``transpose`` mode).
    """
    w = np.array(weights, dtype=np.float64, copy=True)
    n = w.shape[-1]
    if n < 2:
        return np.full(w.shape[:-1], -1, dtype=np.int64)
    idx = np.arange(n)
    w[..., idx, idx] = -np.inf
    return np.argmax(w, axis=-1)


def gold_word_attention(stack: AttentionStack, n_words: int) -> np.ndarray | None:
    """``(layer, head, word, word)`` attention between ``n_words`` gold words, or ``None`` when
    the tokens do not cover exactly those words."""
    if stack.query.n_words != n_words:
        return None
    words = word_level(stack)
    unit_word = words.query.word_ids
    order = np.flatnonzero(unit_word >= 0)
    order = order[np.argsort(unit_word[order])]
    if len(order) != n_words:
        return None
    return words.weights[:, :, order][:, :, :, order]


@dataclass(frozen=True, eq=False)
class ProbeResult:
    """The probe's outcome.

    Attributes:
        table: one row per relation (:data:`TABLE_COLUMNS`), most frequent first.
        scores: accuracy of every head (on the ``(layer, head)`` index) per relation and
            direction.
        baselines: accuracy of every (relation, offset).
        metadata: model, treebank, sentence counts.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    baselines: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def markdown(self, *, min_count: int = 1, digits: int = 3) -> str:
        """The table as GitHub markdown (relations with at least ``min_count`` dependents)."""
        return table_markdown(self.table, min_count=min_count, digits=digits)

    def __repr__(self) -> str:
        best = ", ".join(
            f"{r.relation} {r.best_head} {r.accuracy:.3f}" for r in self.table.head(3).itertuples()
        )
        return (
            f"ProbeResult({self.metadata.get('model_name')!r}, {len(self.table)} relations, "
            f"{self.metadata.get('n_scored_sentences')} sentences; most frequent: {best})"
        )


def table_markdown(table: pd.DataFrame, *, min_count: int = 1, digits: int = 3) -> str:
    """Render a probe table as a markdown table."""
    rows = table[table["n"] >= min_count]
    head = "| relation | n | best head | accuracy | direction | baseline offset | baseline acc. |"
    lines = [head, "|---|---:|---|---:|---|---:|---:|"]
    for r in rows.itertuples(index=False):
        lines.append(
            f"| {r.relation} | {r.n} | {r.best_head} | {r.accuracy:.{digits}f} | {r.direction} | "
            f"{r.baseline_offset:+d} | {r.baseline_accuracy:.{digits}f} |"
        )
    return "\n".join(lines)


def probe_predictions(attn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(dependent→head, head→dependent)`` predictions ``(layer, head, word)`` of a word map:
    each word's most-attended other word, and the other word attending most to it."""
    return word_predictions(attn), word_predictions(np.swapaxes(attn, -1, -2))


def score_sentence(
    sent: GoldSentence,
    pred: np.ndarray,
    counts: dict[str, ProbeCounts],
    excluded: set[str],
    subtypes: bool,
    n_l: int,
    n_h: int,
    transposed: np.ndarray,
) -> None:
    """Count one sentence: dependent ``d`` with head ``h`` is right for a head of the model when
    ``pred[d] == h`` (``dependent→head``) or ``transposed[d] == h`` (``head→dependent``:
    ``transposed`` from the transposed map, see :func:`probe_predictions`)."""
    for d, (h1, rel) in enumerate(zip(sent.heads, sent.relations, strict=True)):
        label = rel if subtypes else rel.split(":")[0]
        if h1 == 0 or label in excluded or rel in excluded:
            continue
        h = h1 - 1
        c = counts.get(label)
        if c is None:
            c = counts[label] = ProbeCounts(
                0, np.zeros((n_l, n_h), np.int64), np.zeros((n_l, n_h), np.int64),
                np.zeros(len(OFFSETS), np.int64),
            )  # fmt: skip
        c.n += 1
        c.dep += pred[:, :, d] == h
        c.head += transposed[:, :, d] == h
        c.base += np.array([h - d == k for k in OFFSETS], dtype=np.int64)


def probe_result(
    counts: dict[str, ProbeCounts], n_l: int, n_h: int, meta: dict[str, Any]
) -> ProbeResult:
    rows, scores, baselines = [], [], []
    layer, head = np.meshgrid(np.arange(n_l), np.arange(n_h), indexing="ij")
    for rel, c in counts.items():
        acc = np.stack([c.dep, c.head]) / c.n  # (direction, layer, head)
        for d_index, direction in enumerate(DIRECTIONS):
            scores.append(
                pd.DataFrame(
                    {
                        "layer": layer.ravel(),
                        "head": head.ravel(),
                        "relation": rel,
                        "direction": direction,
                        "n": c.n,
                        "accuracy": acc[d_index].ravel(),
                    }
                )
            )
        di, li, hi = np.unravel_index(int(np.argmax(acc)), acc.shape)  # first max: dep→head wins
        base = c.base / c.n
        bi = int(np.argmax(base))
        baselines.append(
            pd.DataFrame({"relation": rel, "offset": OFFSETS, "n": c.n, "accuracy": base})
        )
        rows.append(
            {
                "relation": rel,
                "n": c.n,
                "best_head": f"{li}.{hi}",
                "layer": int(li),
                "head": int(hi),
                "accuracy": float(acc[di, li, hi]),
                "direction": DIRECTIONS[di],
                "baseline_offset": OFFSETS[bi],
                "baseline_accuracy": float(base[bi]),
            }
        )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.sort_values(["n", "relation"], ascending=[False, True], ignore_index=True)
    score_frame = (
        pd.concat(scores, ignore_index=True)
        if scores
        else pd.DataFrame(columns=["layer", "head", "relation", "direction", "n", "accuracy"])
    ).set_index(["layer", "head"])
    base_frame = (
        pd.concat(baselines, ignore_index=True)
        if baselines
        else pd.DataFrame(columns=["relation", "offset", "n", "accuracy"])
    )
    return ProbeResult(table, score_frame, base_frame, meta)


__all__ = [
    "DIRECTIONS",
    "OFFSETS",
    "ProbeCounts",
    "ProbeResult",
    "gold_word_attention",
    "probe_predictions",
    "probe_result",
    "score_sentence",
    "table_markdown",
    "word_predictions",
]
