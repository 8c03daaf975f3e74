"""Head roles from per-head metrics: previous, next, self, sink, broad, punctuation or other.

Pure functions of the frames of :mod:`inspector.analysis.metrics`; nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import cast

import pandas as pd

from ..errors import InputError

#: Head roles, in the order they are reported. ``other`` is a head without any role.
ROLES = ("previous", "next", "self", "sink", "broad", "punctuation", "other")
#: The metric that scores each role.
ROLE_SCORES = {
    "previous": "to_prev",
    "next": "to_next",
    "self": "to_self",
    "sink": "sink_share",
    "broad": "entropy_norm",
    "punctuation": "to_punct",
}


@dataclass(frozen=True)
class RoleThresholds:
    """When a head takes a role (all overridable, e.g. ``RoleThresholds(sink=0.8)``).

    Attributes:
        previous, next, self: share of attention on the previous / next / own position.
        sink: share of the head's total attention going to one key position (the sink).
        broad: normalised entropy (``entropy_norm``) above which a head spreads its attention.
        punctuation: share of attention on punctuation tokens.
    """

    previous: float = 0.5
    next: float = 0.5
    self: float = 0.5
    sink: float = 0.6
    broad: float = 0.85
    punctuation: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise InputError(f"threshold {f.name} must be a number in [0, 1], got {value!r}")


def role_scores(metrics: pd.DataFrame) -> pd.DataFrame:
    """The score of every role per head (columns :data:`ROLE_SCORES`; NaN where undefined)."""
    missing = [m for m in ROLE_SCORES.values() if m not in metrics.columns]
    if missing:
        raise InputError(
            f"the metrics frame lacks {missing}; compute it with head_metrics() (all metrics)"
        )
    return pd.DataFrame(
        {role: metrics[col].astype(float) for role, col in ROLE_SCORES.items()},
        index=metrics.index,
    )


def head_roles(
    metrics: pd.DataFrame,
    thresholds: RoleThresholds | None = None,
    **overrides: float,
) -> pd.DataFrame:
    """Label each head from its metrics.

    A head takes every role whose score passes its threshold (:class:`RoleThresholds`, or keyword
    overrides such as ``sink=0.8``); its main ``role`` is the one with the highest score, or
    ``other``. Sink roles name the token, e.g. ``sink [CLS]``.

    Returns:
        A frame on the metrics' index with ``role``, ``label``, ``score`` and one boolean column
        per role (``is_previous``, ``is_sink``, ...).
    """
    thresholds = replace(thresholds or RoleThresholds(), **overrides)
    scores = role_scores(metrics)
    passed = pd.DataFrame(
        {role: scores[role] > getattr(thresholds, role) for role in ROLE_SCORES},
        index=metrics.index,
    )
    masked = scores.where(passed)
    has_role = passed.any(axis=1)
    role = masked.fillna(-1.0).idxmax(axis=1).where(has_role, "other")
    score = masked.max(axis=1)
    label = role.copy()
    is_sink = role == "sink"
    if "sink_token" in metrics.columns:
        label[is_sink] = "sink " + metrics.loc[is_sink, "sink_token"].astype(str)
    out = pd.DataFrame(
        {"role": pd.Categorical(role, categories=ROLES), "label": label, "score": score},
        index=metrics.index,
    )
    for r in ROLE_SCORES:
        out[f"is_{r}"] = passed[r]
    return out


def top_heads(metrics: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """The ``k`` highest-scoring heads of every role (whether or not they pass the threshold).

    Returns a long frame with ``role, rank, layer, head, score``.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    scores = role_scores(metrics)
    rows = []
    for role in ROLE_SCORES:
        best = scores[role].dropna().sort_values(ascending=False, kind="stable").head(k)
        for rank, (key, score) in enumerate(best.items(), 1):
            layer, head = cast(tuple[int, int], key)
            rows.append({"role": role, "rank": rank, "layer": layer, "head": head, "score": score})
    return pd.DataFrame(rows, columns=["role", "rank", "layer", "head", "score"])


def layer_summary(metrics: pd.DataFrame, roles: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-layer means of entropy, entropy_norm, mean_distance and max_weight, plus the share of
    the layer's heads with each main role (``share_previous``, ..., ``share_other``)."""
    cols = [c for c in ("entropy", "entropy_norm", "mean_distance", "max_weight") if c in metrics]
    out = metrics[cols].groupby(level="layer").mean()
    roles = head_roles(metrics) if roles is None else roles
    shares = pd.crosstab(roles.index.get_level_values("layer"), roles["role"], normalize="index")
    for role in ROLES:
        out[f"share_{role}"] = shares[role].to_numpy() if role in shares else 0.0
    out.index.name = "layer"
    return out


__all__ = [
    "ROLES",
    "ROLE_SCORES",
    "RoleThresholds",
    "head_roles",
    "layer_summary",
    "role_scores",
    "top_heads",
]
