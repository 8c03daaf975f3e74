"""Previous-token, duplicate-token and induction head detectors: pure functions of a stack.

Each score is the share of a head's attention on the positions a detector expects; the inputs
that make induction visible (a random token sequence repeated, as token ids) are built here too,
from a vocabulary. Nothing here runs a model: ``inspector.detect_heads(model)`` does.

How these scores differ by definition from TransformerLens' ``detect_head`` (its default
``error_measure="mul"``: the attention on the detection pattern summed over *all* query rows,
divided by the attention's total, i.e. by the number of rows):

* we average over the rows that have an expected key only. On a sequence repeated twice about
  half of the rows have a duplicate or an induction target, so our duplicate-token and induction
  scores are about twice TransformerLens' for the same attention (a perfect induction head scores
  1.0 here, about 0.5 there); previous-token scores differ little (every row but the first has a
  previous token);
* special tokens ([CLS], [SEP], BOS) are never expected keys nor scored queries, for all three
  detectors; TransformerLens' previous-token pattern includes the first token after BOS
  attending to BOS (unless ``exclude_bos=True``), which credits a head that parks on BOS;
* for bidirectional models the duplicate and induction targets include later occurrences (any
  other occurrence); TransformerLens requires causal patterns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

from ..capture.types import AttentionStack
from ..errors import InputError
from .metrics import MetricContext, head_index, nan_heads

T = TypeVar("T")

DETECTORS = ("previous_token", "duplicate_token", "induction")


def _expected_mean(weights: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Mean over rows with an expected key of the attention mass on the expected keys."""
    rows = expected.any(axis=1)
    if not rows.any():
        return nan_heads(weights)
    mass = np.einsum("lhqk,qk->lhq", weights[..., rows, :], expected[rows].astype(np.float32))
    return mass.mean(axis=-1, dtype=np.float64)


def detector_masks(ctx: MetricContext) -> dict[str, np.ndarray]:
    """The expected key positions ``(query, key)`` of each detector.

    - ``previous_token``: key ``i - 1``.
    - ``duplicate_token``: earlier keys with the same id as query ``i`` (any other occurrence for
      bidirectional attention).
    - ``induction``: the key right after an earlier occurrence of query ``i``'s token (after any
      other occurrence for bidirectional attention), excluding ``i`` itself.

    Special tokens are never expected positions, nor scored queries, of any detector (a head
    that parks on ``[CLS]``/BOS is not a previous-token head for the first word). Cross
    attention has no positional expectation: all masks are empty there.
    """
    nq, nk = ctx.n_query, ctx.n_key
    empty = np.zeros((nq, nk), dtype=bool)
    if not ctx.aligned:
        return {name: empty for name in DETECTORS}
    q = np.arange(nq)[:, None]
    k = np.arange(nk)[None, :]
    visible = k <= q if ctx.causal else np.ones((nq, nk), dtype=bool)
    plain_q = ~ctx.query_special[:, None]
    same = (ctx.query_ids[:, None] == ctx.key_ids[None, :]) & plain_q & ~ctx.key_special[None, :]
    same &= k != q
    duplicate = same & visible
    # induction: expected key j + 1 for every other occurrence j of the query's token
    after = np.zeros_like(same)
    after[:, 1:] = same[:, :-1]
    induction = after & (k != q) & visible & ~ctx.key_special[None, :]
    previous = (k == q - 1) & plain_q & ~ctx.key_special[None, :]
    return {"previous_token": previous, "duplicate_token": duplicate, "induction": induction}


def detector_scores(stack: AttentionStack) -> pd.DataFrame:
    """Previous-token, duplicate-token and induction scores of every head.

    Each score is the fraction of attention on the expected positions (see
    :func:`detector_masks`), averaged over the query rows that have one; NaN where no row has an
    expected position. Works for causal and bidirectional attention. Induction is meaningful on a
    random token sequence repeated twice: :func:`repeated_random_ids` builds one and
    ``inspector.detect_heads(model)`` runs it. See the module docstring for how these scores
    differ from TransformerLens' ``detect_head``.
    """
    ctx = MetricContext.from_stack(stack)
    masks = detector_masks(ctx)
    return pd.DataFrame(
        {name: _expected_mean(stack.weights, masks[name]).ravel() for name in DETECTORS},
        index=head_index(stack),
    )


def vocabulary_words(vocab: Iterable[str], special: Iterable[str] = ()) -> list[str]:
    """Whole-word alphabetic entries of a tokenizer vocabulary, sorted, markers stripped.

    Byte-level (``Ġword``) and SentencePiece (``▁word``) vocabularies keep only word-initial
    entries; WordPiece drops ``##`` continuations.
    """
    vocab = [v for v in vocab if v not in set(special)]
    marked = [v for v in vocab if v[:1] in ("Ġ", "▁")]
    pool = marked if marked else [v for v in vocab if not v.startswith("##")]
    words = {v.lstrip("Ġ▁") for v in pool}
    return sorted(w for w in words if len(w) >= 2 and w.isascii() and w.isalpha())


def vocabulary_token_ids(vocab: Mapping[str, int], special: Iterable[str] = ()) -> list[int]:
    """Ids of whole-word alphabetic vocabulary entries (word-initial ``Ġword`` / ``▁word``
    entries in byte-level and SentencePiece vocabularies, no ``##`` continuations), ordered by
    their text: the pool :func:`repeated_random_ids` draws from."""
    specials = set(special)
    entries = {t: int(i) for t, i in vocab.items() if t not in specials}
    marked = {t: i for t, i in entries.items() if t[:1] in ("Ġ", "▁")}
    pool = marked or {t: i for t, i in entries.items() if not t.startswith("##")}
    keep = [(t, i) for t, i in pool.items() if len(t.lstrip("Ġ▁")) >= 2]
    return [i for t, i in sorted(keep) if t.lstrip("Ġ▁").isascii() and t.lstrip("Ġ▁").isalpha()]


def repeated_random_ids(pool: Sequence[int], n_tokens: int, *, seed: int = 0) -> list[int]:
    """``n_tokens`` random token ids from ``pool``, then the same ids again: an exact token
    repeat, as induction-head work uses (repeated *text* may tokenize differently the second
    time, e.g. ``vac|ant`` then ``vacant``)."""
    return [int(i) for i in _drawn_twice(pool, n_tokens, seed, "tokens")]


def repeated_random_text(words: Sequence[str], n_tokens: int, *, seed: int = 0) -> str:
    """``n_tokens`` random words from ``words``, then the same words again, joined by spaces."""
    return " ".join(_drawn_twice(words, n_tokens, seed, "words"))


def _drawn_twice(pool: Sequence[T], n_tokens: int, seed: int, what: str) -> list[T]:
    """``n_tokens`` entries of ``pool`` drawn at random (with replacement only when the pool is
    smaller), then the same entries again; ``what`` names the pool's entries in errors."""
    if n_tokens < 2:
        raise InputError(f"n_tokens must be at least 2, got {n_tokens}")
    if not pool:
        raise InputError(f"no vocabulary {what} to sample from")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=n_tokens, replace=len(pool) < n_tokens)
    half = [pool[i] for i in pick]
    return half + half


__all__ = [
    "DETECTORS",
    "detector_masks",
    "detector_scores",
    "repeated_random_ids",
    "repeated_random_text",
    "vocabulary_token_ids",
    "vocabulary_words",
]
