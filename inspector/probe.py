"""Syntactic head probe (Clark et al. 2019, "What Does BERT Look At?", section 4).

For every dependency relation of a CoNLL-U treebank, find the attention head whose most-attended
other word is most often the syntactic head (direction ``dependent→head``) — or, transposed, whose
head word most often attends most to the dependent (``head→dependent``) — and set it beside the
best fixed-offset baseline (the head is always ``k`` words away, ``k`` in −3..+3).

Gold words are tokenized with ``is_split_into_words=True`` (:func:`inspector.batching
.encode_words`), so every model token belongs to exactly one gold word; token attention becomes
word attention with :func:`inspector.frames.word_level` (sum over the key word's pieces, mean over
the query word's pieces). Multiword-token ranges (``1-2``) and empty nodes (``8.1``) are skipped:
the syntactic words are used. Special tokens ([CLS], [SEP]) are not candidates, and a word never
predicts itself. As in Clark et al., ``punct`` dependents and the ``root`` relation are not
scored (punctuation words stay candidates); relation subtypes (``nmod:poss``) fold into their
universal relation unless ``subtypes=True``.

Pure analysis above the capture layer: it runs the model only through :mod:`inspector.batching`
and never imports render, api or cli.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .batching import Encoded, encode_words, forward_batch
from .errors import InputError
from .frames import word_level
from .loading import ModelBundle

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


@dataclass(frozen=True)
class GoldSentence:
    """One treebank sentence: syntactic words with 1-based heads (0 = root) and relations."""

    words: tuple[str, ...]
    heads: tuple[int, ...]
    relations: tuple[str, ...]
    sent_id: str = ""

    def __post_init__(self) -> None:
        n = len(self.words)
        if not (len(self.heads) == len(self.relations) == n):
            raise InputError(
                f"sentence {self.sent_id}: words, heads and relations differ in length"
            )
        if any(h < 0 or h > n for h in self.heads):
            raise InputError(f"sentence {self.sent_id}: a head index is outside 0..{n}")


def _parse_checked(sentences: Iterator[Any], error: type[Exception], path: Path) -> Iterator[Any]:
    try:
        yield from sentences
    except error as exc:
        raise InputError(f"{path} is not a CoNLL-U treebank ({exc}); give a .conllu file") from exc


def read_treebank(
    path: str | os.PathLike[str], *, limit: int | None = None
) -> Iterator[GoldSentence]:
    """Stream the sentences of a CoNLL-U file (the ``conllu`` package), syntactic words only."""
    from conllu import parse_incr

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist; give a CoNLL-U treebank (.conllu)")
    from conllu.exceptions import ParseException

    count = 0
    with p.open(encoding="utf-8") as f:
        try:
            sentences = list(_parse_checked(parse_incr(f), ParseException, p))
        except UnicodeDecodeError as exc:
            raise InputError(f"{p} is not UTF-8 text, so not a CoNLL-U treebank") from exc
        for sent in sentences:
            if limit is not None and count >= limit:
                return
            rows = [t for t in sent if isinstance(t["id"], int)]  # no ranges, no empty nodes
            if not rows:
                continue
            ids = [t["id"] for t in rows]
            if ids != list(range(1, len(rows) + 1)):
                raise InputError(f"{p}: sentence {sent.metadata.get('sent_id')} has gaps in ids")
            heads = tuple(int(t["head"]) if t["head"] is not None else 0 for t in rows)
            count += 1
            yield GoldSentence(
                tuple(str(t["form"]) for t in rows),
                heads,
                tuple(str(t["deprel"]) for t in rows),
                str(sent.metadata.get("sent_id", count)),
            )


@dataclass
class _Counts:
    n: int
    dep: np.ndarray  # (layer, head) correct dependent→head
    head: np.ndarray  # (layer, head) correct head→dependent
    base: np.ndarray  # (offset,) correct fixed-offset predictions


def word_predictions(weights: np.ndarray) -> np.ndarray:
    """Each word's most-attended *other* word: ``(layer, head, word, word)`` → ``(..., word)``."""
    w = np.array(weights, dtype=np.float64, copy=True)
    n = w.shape[-1]
    if n < 2:
        return np.full(w.shape[:-1], -1, dtype=np.int64)
    idx = np.arange(n)
    w[..., idx, idx] = -np.inf
    return np.argmax(w, axis=-1)


def _gold_word_attention(bundle: ModelBundle, cap: Any, n_words: int) -> np.ndarray | None:
    stack = cap.stacks["encoder" if bundle.architecture == "encoder-decoder" else "self"]
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
        scores: accuracy of every (relation, layer, head, direction).
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


def syntax_probe(
    bundle: ModelBundle,
    treebank: str | os.PathLike[str] | Sequence[GoldSentence],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    subtypes: bool = False,
    exclude: Sequence[str] = ("punct", "root"),
    max_length: int | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Run the Clark et al. (2019) syntactic head probe on a CoNLL-U treebank.

    Args:
        bundle: a loaded model with a fast tokenizer.
        treebank: a ``.conllu`` path, or sentences from :func:`read_treebank`.
        batch_size: sentences per forward pass (sentences are batched by length).
        limit: use only the first ``limit`` sentences.
        subtypes: keep relation subtypes (``nmod:poss``) apart instead of folding them.
        exclude: relations not scored (default ``punct`` and ``root``, as Clark et al.).
        max_length: token limit; longer sentences are skipped and counted.
        progress: show a tqdm bar.

    Returns:
        A :class:`ProbeResult`; ``result.table`` has one row per relation.

    Example:
        >>> r = syntax_probe(load_model("minilm"), "en_ewt-ud-dev.conllu")  # doctest: +SKIP
        >>> r.table.head()  # doctest: +SKIP
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(treebank, str | os.PathLike):
        sentences = list(read_treebank(treebank, limit=limit))
        source = str(treebank)
    else:
        sentences = list(treebank)[:limit]
        source = f"{len(sentences)} sentences"
    if not sentences:
        raise InputError(f"no sentences in {source}")
    excluded = set(exclude)
    n_l, n_h = bundle.n_layers, bundle.n_heads
    counts: dict[str, _Counts] = {}
    skipped = {"too_long": 0, "unaligned": 0}
    encoded: list[tuple[GoldSentence, Encoded]] = []
    for sent in sentences:
        try:
            encoded.append((sent, encode_words(bundle, sent.words, max_length=max_length)))
        except InputError as exc:
            if "accepts at most" not in str(exc):
                raise
            skipped["too_long"] += 1
    encoded.sort(key=lambda pair: len(pair[1]))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(encoded), unit=" sentences", disable=not progress, desc="probe")
    try:
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            captures = forward_batch(bundle, [e for _, e in part])
            for (sent, _), cap in zip(part, captures, strict=True):
                attn = _gold_word_attention(bundle, cap, len(sent.words))
                if attn is None:
                    skipped["unaligned"] += 1
                    continue
                _score_sentence(sent, word_predictions(attn), counts, excluded, subtypes, n_l, n_h)
            bar.update(len(part))
    finally:
        bar.close()
    meta = {
        "model_name": bundle.name,
        "treebank": source,
        "n_sentences": len(sentences),
        "n_scored_sentences": len(encoded) - skipped["unaligned"],
        "skipped_too_long": skipped["too_long"],
        "skipped_unaligned": skipped["unaligned"],
        "excluded_relations": sorted(excluded),
        "subtypes": subtypes,
    }
    return _result(counts, n_l, n_h, meta)


def _score_sentence(
    sent: GoldSentence,
    pred: np.ndarray,
    counts: dict[str, _Counts],
    excluded: set[str],
    subtypes: bool,
    n_l: int,
    n_h: int,
) -> None:
    for d, (h1, rel) in enumerate(zip(sent.heads, sent.relations, strict=True)):
        label = rel if subtypes else rel.split(":")[0]
        if h1 == 0 or label in excluded or rel in excluded:
            continue
        h = h1 - 1
        c = counts.get(label)
        if c is None:
            c = counts[label] = _Counts(
                0, np.zeros((n_l, n_h), np.int64), np.zeros((n_l, n_h), np.int64),
                np.zeros(len(OFFSETS), np.int64),
            )  # fmt: skip
        c.n += 1
        c.dep += pred[:, :, d] == h
        c.head += pred[:, :, h] == d
        c.base += np.array([h - d == k for k in OFFSETS], dtype=np.int64)


def _result(counts: dict[str, _Counts], n_l: int, n_h: int, meta: dict[str, Any]) -> ProbeResult:
    rows, scores, baselines = [], [], []
    layer, head = np.meshgrid(np.arange(n_l), np.arange(n_h), indexing="ij")
    for rel, c in counts.items():
        acc = np.stack([c.dep, c.head]) / c.n  # (direction, layer, head)
        for d_index, direction in enumerate(DIRECTIONS):
            scores.append(
                pd.DataFrame(
                    {
                        "relation": rel,
                        "layer": layer.ravel(),
                        "head": head.ravel(),
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
        else pd.DataFrame(columns=["relation", "layer", "head", "direction", "n", "accuracy"])
    )
    base_frame = (
        pd.concat(baselines, ignore_index=True)
        if baselines
        else pd.DataFrame(columns=["relation", "offset", "n", "accuracy"])
    )
    return ProbeResult(table, score_frame, base_frame, meta)


__all__ = [
    "DIRECTIONS",
    "OFFSETS",
    "GoldSentence",
    "ProbeResult",
    "read_treebank",
    "syntax_probe",
    "table_markdown",
    "word_predictions",
]
