"""Compare the attention of two inputs (a minimal pair) or two models that share a tokenizer.

Pure functions of two captured stacks; nothing here runs a model or renders.

Alignment of positions (:func:`align_tokens`):

1. identical token sequences align position by position;
2. otherwise the longest common subsequence (LCS) of the token strings is aligned, and then every
   gap between two aligned anchors that has the same number of tokens on both sides is aligned
   position by position as a substitution ("keys" <-> "key", "are" <-> "is"). Gaps of different
   lengths (a word split into a different number of pieces, an inserted word) stay unaligned.

Per head, the two attention maps are cut down to the aligned query rows and key columns, each row
is renormalised over the aligned keys, and the Jensen–Shannon divergence (base 2, in [0, 1]) of
each pair of rows is averaged over the aligned query rows (``js``). ``aligned_mass_a`` /
``aligned_mass_b`` report how much of the original attention fell on aligned keys. Entropy and
sink share come from each input's full :func:`~inspector.analysis.metrics.head_metrics`;
``d_*`` is ``b - a``.

How much the two inputs have in common is reported as ``aligned_share`` (aligned key positions
over the longer input's tokens) and ``matched_share`` (aligned positions holding the same token
on both sides); below :data:`MIN_MATCHED_SHARE` the ranking rests on few tokens and the
comparison warns (:class:`~inspector.errors.InspectorWarning`, and ``warning``).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import AttentionStack, Tokens, model_display_name
from ..errors import InputError, InspectorWarning
from .distances import js_divergence_rows
from .metrics import head_metrics

#: Columns of :attr:`Comparison.frame`, in order.
COLUMNS = (
    "js",
    "js_max",
    "entropy_a",
    "entropy_b",
    "d_entropy",
    "sink_share_a",
    "sink_share_b",
    "d_sink_share",
    "sink_token_a",
    "sink_token_b",
    "aligned_mass_a",
    "aligned_mass_b",
)


#: Below this share of tokens that are the same in both inputs, a comparison warns.
MIN_MATCHED_SHARE = 0.5


def _lcs_pairs(a: tuple[str, ...], b: tuple[str, ...]) -> list[tuple[int, int]]:
    """Index pairs of one longest common subsequence of ``a`` and ``b`` (dynamic programming)."""
    n, m = len(a), len(b)
    table = np.zeros((n + 1, m + 1), dtype=np.int32)
    for i in range(n - 1, -1, -1):
        ai = a[i]
        row, below = table[i], table[i + 1]
        for j in range(m - 1, -1, -1):
            row[j] = below[j + 1] + 1 if ai == b[j] else max(below[j], row[j + 1])
    pairs: list[tuple[int, int]] = []
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1, j] >= table[i, j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def align_tokens(a: Tokens, b: Tokens, *, substitutions: bool = True) -> tuple[np.ndarray, str]:
    """Align the positions of two token sequences.

    Returns:
        ``(pairs, method)``: an ``(m, 2)`` int array of ``(position in a, position in b)``,
        increasing in both columns, and ``"identical"`` or ``"lcs"``.
    """
    if a.tokens == b.tokens:
        idx = np.arange(len(a))
        return np.stack([idx, idx], axis=1), "identical"
    anchors = _lcs_pairs(a.tokens, b.tokens)
    if not substitutions:
        return np.asarray(anchors, dtype=np.int64).reshape(-1, 2), "lcs"
    pairs: list[tuple[int, int]] = []
    prev = (-1, -1)
    for anchor in [*anchors, (len(a), len(b))]:
        gap_a, gap_b = anchor[0] - prev[0] - 1, anchor[1] - prev[1] - 1
        if gap_a == gap_b and gap_a > 0:
            pairs.extend((prev[0] + 1 + k, prev[1] + 1 + k) for k in range(gap_a))
        if anchor[0] < len(a):
            pairs.append(anchor)
        prev = anchor
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2), "lcs"


def _as_stack(x: Any, name: str) -> AttentionStack:
    if isinstance(x, AttentionStack):
        return x
    stack = getattr(x, "stack", None)  # an Inspection (duck-typed: api sits above this module)
    if isinstance(stack, AttentionStack):
        return stack
    raise InputError(
        f"{name} must be an Inspection or an AttentionStack, not {type(x).__name__}; for "
        f"encoder-decoder models pick a part first, e.g. ins.encoder"
    )


@dataclass(frozen=True, eq=False)
class Comparison:
    """The per-head differences between two attention stacks.

    Attributes:
        a, b: the compared stacks.
        frame: per-head frame indexed by ``(layer, head)`` with :data:`COLUMNS`.
        query_pairs, key_pairs: aligned ``(position in a, position in b)`` pairs.
        method: ``"identical"`` or ``"lcs"`` (how the key tokens were aligned).
        labels: names of the two sides (texts or model names).
        aligned_share: aligned key positions over the longer input's token count.
        matched_share: aligned key positions with the same token on both sides, over the
            longer input's token count.
        warning: why the ranking may say little (few tokens in common), else ``None``.
    """

    a: AttentionStack
    b: AttentionStack
    frame: pd.DataFrame
    query_pairs: np.ndarray
    key_pairs: np.ndarray
    method: str
    labels: tuple[str, str] = ("a", "b")
    aligned_share: float = 1.0
    matched_share: float = 1.0
    warning: str | None = None

    def ranked(self, k: int | None = None, by: str = "js") -> pd.DataFrame:
        """Heads sorted by the largest change (``js``, or ``|d_entropy|`` / ``|d_sink_share|``)."""
        if by not in self.frame.columns:
            raise InputError(f"cannot rank by {by!r}; columns: {list(self.frame.columns)}")
        key = self.frame[by].abs() if by.startswith("d_") else self.frame[by]
        order = key.sort_values(ascending=False, kind="stable").index
        out = self.frame.loc[order]
        return out if k is None else out.head(k)

    def aligned_maps(self, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """The two ``(query, key)`` maps of one head cut down to the aligned positions."""
        li, hi = self.a.layers.index(layer), self.a.heads.index(head)
        qa, qb = self.query_pairs[:, 0], self.query_pairs[:, 1]
        ka, kb = self.key_pairs[:, 0], self.key_pairs[:, 1]
        return (
            self.a.weights[li, hi][np.ix_(qa, ka)],
            self.b.weights[li, hi][np.ix_(qb, kb)],
        )

    def __repr__(self) -> str:
        top = self.ranked(1)
        (layer, head), js = top.index[0], float(top["js"].iloc[0])
        return (
            f"Comparison({self.labels[0]!r} vs {self.labels[1]!r}, {len(self.key_pairs)} aligned "
            f"keys ({self.method}, {self.aligned_share:.0%}), most changed head {layer}.{head} "
            f"js={js:.3f})"
        )


def _renormalise(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = w.sum(axis=-1, keepdims=True, dtype=np.float64)
    safe = np.where(total > 0, total, 1.0)
    return (w / safe).astype(np.float32), total[..., 0]


def _aligned_js(
    a: np.ndarray, b: np.ndarray, query_pairs: np.ndarray, key_pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(js, mass_a, mass_b)``, each ``(layer, head, aligned query)``: the JS divergence of the
    aligned rows renormalised over the aligned keys (NaN where a side has no mass there), and
    each side's aligned mass. One layer at a time, so the temporaries (cut maps, renormalised
    maps, the divergence's scratch: :func:`compare_bytes`) follow one layer, not the stack."""
    qa, qb = query_pairs[:, 0], query_pairs[:, 1]
    ka, kb = key_pairs[:, 0], key_pairs[:, 1]
    n_l, n_h, n_q = a.shape[0], a.shape[1], len(qa)
    js = np.empty((n_l, n_h, n_q))
    mass_a, mass_b = np.empty((n_l, n_h, n_q)), np.empty((n_l, n_h, n_q))
    for li in range(n_l):
        pa, mass_a[li] = _renormalise(a[li][:, qa][:, :, ka])
        pb, mass_b[li] = _renormalise(b[li][:, qb][:, :, kb])
        js[li] = js_divergence_rows(pa, pb)
    valid = (mass_a > 0) & (mass_b > 0)
    return np.where(valid, js, np.nan), mass_a, mass_b


def compare_bytes(n_heads: int, n_query: int, n_key: int) -> int:
    """Bytes :func:`compare` allocates at once beyond its inputs: one layer's cut maps of both
    sides (float32), their renormalised copies with a float64 quotient, the divergence's
    scratch (six float32 maps), and the entropy metric of one layer."""
    cell = n_heads * n_query * n_key
    return cell * (2 * 4 + 2 * 4 + 8 + 6 * 4 + 2 * 4)


def _metadata(x: Any) -> Mapping[str, Any]:
    capture = getattr(x, "capture", x)
    return getattr(capture, "metadata", None) or {}


def compare(
    a: Any, b: Any, *, labels: tuple[str, str] | None = None, max_memory: MemoryLimit | None = None
) -> Comparison:
    """Compare two inspections (or stacks) head by head.

    ``a`` and ``b`` may be two inputs of one model or one input of two models with the same layer
    and head layout (e.g. a base model and its fine-tuned version sharing the tokenizer).
    ``max_memory``: the budget (default: what is free now) of what the comparison allocates
    beside the inspections (:func:`compare_bytes`: one layer at a time); refused with
    ``ResourceError`` before anything is computed when it does not fit.

    Example:
        >>> c = inspector.compare(m.inspect("The keys to the cabinet are"),
        ...                       m.inspect("The key to the cabinet is"))  # doctest: +SKIP
        >>> c.ranked(5)  # doctest: +SKIP
    """
    sa, sb = _as_stack(a, "a"), _as_stack(b, "b")
    vocab_a, vocab_b = (_metadata(x).get("tokenizer_fingerprint") for x in (a, b))
    if vocab_a and vocab_b and vocab_a != vocab_b:
        raise InputError(
            f"{_metadata(a).get('model_name')} and {_metadata(b).get('model_name')} do not share "
            f"a tokenizer, so their tokens cannot be aligned; compare models with the same "
            f"vocabulary (e.g. a base model and its fine-tuned checkpoint)"
        )
    if sa.kind != sb.kind:
        raise InputError(f"cannot compare {sa.kind} attention with {sb.kind} attention")
    if sa.weights.shape[:2] != sb.weights.shape[:2] or (sa.layers, sa.heads) != (
        sb.layers,
        sb.heads,
    ):
        raise InputError(
            f"the two sides have different heads ({len(sa.layers)}x{len(sa.heads)} vs "
            f"{len(sb.layers)}x{len(sb.heads)}); compare models with the same layout, "
            f"or capture the same layers/heads"
        )
    n_q, n_k = max(len(sa.query), len(sb.query)), max(len(sa.key), len(sb.key))
    _memory.estimate(
        f"compare() of {n_q:,} x {n_k:,} tokens",
        {
            "one layer at a time": compare_bytes(sa.weights.shape[1], n_q, n_k),
            "token alignment": 4 * (len(sa.key) + 1) * (len(sb.key) + 1),
        },
        max_memory,
    ).check("Compare shorter inputs, or inspections of fewer layers=[...] / heads=[...]")
    key_pairs, method = align_tokens(sa.key, sb.key)
    same_axis = sa.query is sa.key and sb.query is sb.key
    query_pairs = key_pairs if same_axis else align_tokens(sa.query, sb.query)[0]
    if len(key_pairs) == 0 or len(query_pairs) == 0:
        raise InputError("the two inputs share no tokens, so their attention cannot be aligned")
    js, mass_a, mass_b = _aligned_js(sa.weights, sb.weights, query_pairs, key_pairs)
    ma = head_metrics(sa, ["entropy"])
    mb = head_metrics(sb, ["entropy"])
    frame = pd.DataFrame(
        {
            "js": np.nanmean(js, axis=-1).ravel(),
            "js_max": np.nanmax(js, axis=-1).ravel(),
            "entropy_a": ma["entropy"].to_numpy(),
            "entropy_b": mb["entropy"].to_numpy(),
            "sink_share_a": ma["sink_share"].to_numpy(),
            "sink_share_b": mb["sink_share"].to_numpy(),
            "sink_token_a": ma["sink_token"].to_numpy(),
            "sink_token_b": mb["sink_token"].to_numpy(),
            "aligned_mass_a": mass_a.mean(axis=-1).ravel(),
            "aligned_mass_b": mass_b.mean(axis=-1).ravel(),
        },
        index=ma.index,
    )
    frame["d_entropy"] = frame["entropy_b"] - frame["entropy_a"]
    frame["d_sink_share"] = frame["sink_share_b"] - frame["sink_share_a"]
    frame = frame[list(COLUMNS)]
    if labels is None:
        labels = (_label(a, sa), _label(b, sb))
    longer = max(len(sa.key), len(sb.key))
    matched = sum(sa.key.tokens[i] == sb.key.tokens[j] for i, j in key_pairs)
    aligned_share, matched_share = len(key_pairs) / longer, matched / longer
    warning = None
    if matched_share < MIN_MATCHED_SHARE:
        warning = (
            f"only {matched} of {longer} tokens ({matched_share:.0%}) are the same in both "
            f"inputs ({len(key_pairs)} aligned, {aligned_share:.0%}); the ranking rests on few "
            f"tokens and says little. Compare minimal pairs: texts that differ in a few words"
        )
        warnings.warn(warning, InspectorWarning, stacklevel=2)
    return Comparison(
        sa, sb, frame, query_pairs, key_pairs, method, labels, aligned_share, matched_share, warning
    )


def _label(obj: Any, stack: AttentionStack) -> str:
    meta = getattr(getattr(obj, "capture", None), "metadata", {}) or {}
    text = " | ".join(stack.query.texts) or " ".join(stack.query.tokens)
    model = meta.get("model_name")  # a folder's name, never its path: labels reach pages
    return f"{model_display_name(str(model))}: {text}" if model else text


__all__ = [
    "COLUMNS",
    "MIN_MATCHED_SHARE",
    "Comparison",
    "align_tokens",
    "compare",
    "compare_bytes",
]
