"""What explain methods return: norm-based attention and the "what mattered" summary.

Pure data and pure functions (the report renders these; computing them runs the model, in
:mod:`.norms`, :mod:`.importance` and :mod:`.summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..capture.types import Tokens
from ..errors import InputError
from .flow import exclude_special_tokens, renormalise


@dataclass(frozen=True, eq=False)
class NormAttention:
    """Norm-based attention of one input (Kobayashi et al. 2020).

    Attributes:
        norms: float32 ``(layer, head, query, key)``: ``‖α_ij · f_h(x_j)‖``.
        weights: float32 ``(layer, head, query, key)``: the raw ``α`` of the same forward pass.
        value_norms: float32 ``(layer, head, key)``: ``‖f_h(x_j)‖``.
        tokens: the query tokens (and the key tokens unless ``key_tokens`` is given).
        layers / heads: model indexes of axes 0 and 1.
        key_tokens: the key tokens of cross attention (the encoder's); ``None``: ``tokens``.
        vectors: float32 ``(layer, head, key, hidden)``: the vectors ``f_h(x_j)`` themselves,
            when asked for (``attention_norms(..., keep_vectors=True)``).
    """

    norms: np.ndarray
    weights: np.ndarray
    value_norms: np.ndarray
    tokens: Tokens
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    key_tokens: Tokens | None = None
    vectors: np.ndarray | None = None

    def __repr__(self) -> str:
        return (
            f"NormAttention({len(self.layers)} layers x {len(self.heads)} heads, "
            f"{len(self.tokens)} tokens)"
        )

    def __post_init__(self) -> None:
        if self.norms.shape != self.weights.shape:
            raise InputError(f"norms {self.norms.shape} and weights {self.weights.shape} differ")
        if self.key_tokens is None:
            object.__setattr__(self, "key_tokens", self.tokens)

    @property
    def keys(self) -> Tokens:
        """The key tokens."""
        return self.key_tokens or self.tokens

    def shares(self, *, exclude_special: bool = False) -> np.ndarray:
        """Norms renormalised so each row sums to 1 (comparable with the weights)."""
        if exclude_special:
            if self.keys is self.tokens:
                return exclude_special_tokens(self.norms, self.keys.special)
            rows, cols = ~np.asarray(self.tokens.special), ~np.asarray(self.keys.special)
            return renormalise(self.norms[..., rows, :][..., cols])
        return renormalise(self.norms)

    def frame(self, *, exclude_special: bool = False, normalise: bool = False) -> pd.DataFrame:
        """Frame like :func:`inspector.frames.stack_frame` (``weight`` = raw α) plus ``norm``.

        ``exclude_special`` drops special tokens and renormalises ``weight`` (and ``norm`` when
        ``normalise``); ``normalise`` turns ``norm`` into a per-row share summing to 1.
        """
        w, nrm = self.weights, self.norms
        keys = self.keys
        rows = np.ones(len(self.tokens), dtype=bool)
        cols = np.ones(len(keys), dtype=bool)
        if exclude_special:
            rows, cols = ~np.asarray(self.tokens.special), ~np.asarray(keys.special)
            if not rows.any() or not cols.any():
                raise InputError("exclude_special=True leaves no token")
            w = renormalise(w[..., rows, :][..., cols])
            nrm = nrm[..., rows, :][..., cols]
            nrm = renormalise(nrm) if normalise else nrm
        elif normalise:
            nrm = renormalise(nrm)
        q_pos, k_pos = np.flatnonzero(rows), np.flatnonzero(cols)
        q_names = np.asarray(self.tokens.tokens, dtype=object)[q_pos]
        k_names = np.asarray(keys.tokens, dtype=object)[k_pos]
        n_l, n_h, n, m = w.shape
        return pd.DataFrame(
            {
                "layer": np.repeat(np.asarray(self.layers, dtype=np.int32), n_h * n * m),
                "head": np.tile(np.repeat(np.asarray(self.heads, dtype=np.int32), n * m), n_l),
                "query_pos": np.tile(np.repeat(q_pos, m), n_l * n_h).astype(np.int32),
                "key_pos": np.tile(k_pos, n_l * n_h * n).astype(np.int32),
                "query_token": pd.Categorical(np.tile(np.repeat(q_names, m), n_l * n_h)),
                "key_token": pd.Categorical(np.tile(k_names, n_l * n_h * n)),
                "weight": w.reshape(-1).astype(np.float32),
                "norm": nrm.reshape(-1).astype(np.float32),
            }
        )


@dataclass(frozen=True, eq=False)
class Explanation:
    """Everything the report's "what mattered" section shows for one input.

    Attributes:
        tokens: the input tokens.
        layer: the layer shown for raw / norm-based maps.
        raw: float ``(query, key)`` raw attention of ``layer``, mean over heads.
        norm: the same, norm-based (rows renormalised).
        rollout: ``(query, key)`` attention rollout over all layers.
        importance: head-importance frame (:func:`head_importance`).
        top_heads: ``[(layer, head), ...]`` most important first.
        top_maps: raw attention ``(query, key)`` of each top head.
        sinks: :func:`sink_heads` frame: sink-dominated heads passing on little.
        target: description of the target.
    """

    tokens: Tokens
    layer: int
    raw: np.ndarray
    norm: np.ndarray
    rollout: np.ndarray
    importance: pd.DataFrame
    top_heads: list[tuple[int, int]]
    top_maps: list[np.ndarray]
    sinks: pd.DataFrame
    target: str
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        top = ", ".join(f"{layer}.{head}" for layer, head in self.top_heads)
        return (
            f"Explanation(target {self.target!r}, {len(self.tokens)} tokens, layer {self.layer}, "
            f"top heads {top or 'none'}, {len(self.sinks)} sink-dominated head(s))"
        )


def sink_heads(
    weights: np.ndarray,
    norms: np.ndarray,
    tokens: Tokens,
    *,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    raw_min: float = 0.3,
    norm_max: float = 0.15,
) -> pd.DataFrame:
    """Heads whose attention is dominated by a special "sink" token that passes on little.

    For each head and special token: ``raw_share`` is the mean over queries of the raw weight on
    the token, ``norm_share`` the same for the norm-based weights (:func:`attention_norms`, rows
    renormalised). A head is flagged when ``raw_share >= raw_min`` and ``norm_share <= norm_max``.

    Returns:
        Frame on ``(layer, head)`` with ``key_pos, key_token, raw_share, norm_share``, largest raw
        share first.
    """
    if weights.shape != norms.shape:
        raise InputError(f"weights {weights.shape} and norms {norms.shape} differ in shape")
    n_l, n_h = weights.shape[:2]
    layers = list(layers) if layers is not None else list(range(n_l))
    heads = list(heads) if heads is not None else list(range(n_h))
    sums = norms.sum(axis=-1, dtype=np.float64)  # rows renormalised one column at a time:
    rows = []  # no renormalised copy of the whole stack
    for pos in np.flatnonzero(tokens.special):
        raw = weights[..., pos].mean(axis=-1)
        column = norms[..., pos].astype(np.float64)
        nrm = np.divide(column, sums, out=np.zeros_like(column), where=sums > 0).mean(axis=-1)
        for li, hi in np.argwhere((raw >= raw_min) & (nrm <= norm_max)):
            rows.append(
                (layers[li], heads[hi], int(pos), tokens.tokens[pos], raw[li, hi], nrm[li, hi])
            )
    frame = pd.DataFrame(
        rows, columns=["layer", "head", "key_pos", "key_token", "raw_share", "norm_share"]
    )
    frame = frame.sort_values("raw_share", ascending=False, kind="stable", ignore_index=True)
    return frame.set_index(["layer", "head"])


__all__ = ["Explanation", "NormAttention", "sink_heads"]
