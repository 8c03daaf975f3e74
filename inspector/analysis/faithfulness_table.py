"""The faithfulness scoreboard's result: tidy frames, the per-method summary with 95% intervals,
the ranking and the markdown table.

Pure pandas: nothing here runs a model (:mod:`inspector.explain.faithfulness` fills it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .faithfulness import METRICS

#: Columns of :attr:`Faithfulness.frame` and :attr:`Faithfulness.scores`.
FRAME_COLUMNS = ("text", "method", "metric", "value")
SCORE_COLUMNS = ("text", "method", "position", "token", "score")
#: The floor every method is compared with, when it was scored.
FLOOR = "random"


def empty_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Empty frames with the right columns and dtypes."""
    frame = pd.DataFrame(
        {
            "text": pd.Series([], dtype=np.int64),
            "method": pd.Series([], dtype=str),
            "metric": pd.Series([], dtype=str),
            "value": pd.Series([], dtype=np.float64),
        }
    )
    scores = pd.DataFrame(
        {
            "text": pd.Series([], dtype=np.int64),
            "method": pd.Series([], dtype=str),
            "position": pd.Series([], dtype=np.int64),
            "token": pd.Series([], dtype=str),
            "score": pd.Series([], dtype=np.float64),
        }
    )
    return frame, scores


def _interval(values: np.ndarray) -> tuple[int, float, float, float, float]:
    """``n, mean, std, ci95_low, ci95_high`` of the finite values (``mean ± 1.96·std/√n``, as
    the atlas gives its intervals)."""
    v = values[np.isfinite(values)]
    n = int(v.size)
    if n == 0:
        return 0, math.nan, math.nan, math.nan, math.nan
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = 1.96 * std / math.sqrt(n) if n > 1 else math.nan
    return n, mean, std, mean - half, mean + half


@dataclass(frozen=True, eq=False)
class Faithfulness:
    """How faithful every token-level explanation was, text by text.

    Attributes:
        frame: one row per ``(text, method, metric)``: ``text`` (the text's index), ``method``
            (an explainer name), ``metric`` (``comprehensiveness``, ``sufficiency``,
            ``tau_loo``) and ``value``.
        scores: the token scores each method gave, so every number can be re-derived: ``text,
            method, position`` (in the input, special tokens included), ``token`` and
            ``score`` (content tokens only: special tokens are never ranked).
        metadata: the model, the target of each text, the options, counts of forward passes
            and rows, run time, the texts themselves and methods skipped on a text (with why).
    """

    frame: pd.DataFrame
    scores: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, columns in (("frame", FRAME_COLUMNS), ("scores", SCORE_COLUMNS)):
            got = tuple(getattr(self, name).columns)
            if got != columns:
                raise InputError(f"Faithfulness.{name} has columns {got}, expected {columns}")

    @property
    def methods(self) -> list[str]:
        """The methods scored, in the order they were asked for."""
        asked = list(self.metadata.get("methods") or [])
        seen = list(dict.fromkeys(self.frame["method"]))
        return [m for m in asked if m in seen] + [m for m in seen if m not in asked]

    @property
    def n_texts(self) -> int:
        return int(self.frame["text"].nunique())

    def values(self, metric: str) -> pd.DataFrame:
        """One metric as a ``text x method`` table."""
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}; one of {list(METRICS)}")
        part = self.frame[self.frame["metric"] == metric]
        table = part.pivot_table(index="text", columns="method", values="value", dropna=False)
        return table.reindex(columns=[m for m in self.methods if m in table.columns])

    def summary(self) -> pd.DataFrame:
        """Per method and metric: ``n, mean, std, ci95_low, ci95_high`` over the texts (NaN
        values, such as τ of a constant ranking, left out), and when the random floor was
        scored the paired difference to it, text by text: ``vs_random`` with its interval
        ``vs_random_low`` / ``vs_random_high`` (positive: better than the floor on a metric
        where higher is better)."""
        rows = []
        for metric in METRICS:
            table = self.values(metric)
            floor = table[FLOOR] if FLOOR in table.columns else None
            for method in table.columns:
                col = table[method].to_numpy(dtype=np.float64)
                n, mean, std, low, high = _interval(col)
                row: dict[str, Any] = {
                    "method": method,
                    "metric": metric,
                    "n": n,
                    "mean": mean,
                    "std": std,
                    "ci95_low": low,
                    "ci95_high": high,
                }
                if floor is not None:
                    diff = col - floor.to_numpy(dtype=np.float64)
                    _, d_mean, _, d_low, d_high = _interval(diff)
                    row.update(vs_random=d_mean, vs_random_low=d_low, vs_random_high=d_high)
                rows.append(row)
        out = pd.DataFrame(rows)
        if out.empty:
            return pd.DataFrame(columns=["n", "mean", "std", "ci95_low", "ci95_high"])
        return out.set_index(["method", "metric"])

    def stats(self) -> dict[tuple[str, str], dict[str, float]]:
        """:meth:`summary` as ``{(method, metric): {"mean": ..., "ci95_low": ..., ...}}``."""
        summary = self.summary()
        if summary.empty:
            return {}
        records = summary.reset_index().to_dict("records")
        return {
            (str(r["method"]), str(r["metric"])): {
                str(k): float(v) for k, v in r.items() if k not in ("method", "metric")
            }
            for r in records
        }

    def ranking(self, metric: str = "comprehensiveness") -> list[str]:
        """The methods, most faithful first by ``metric``'s mean (ties: by τ, then by name)."""
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}; one of {list(METRICS)}")
        stats = self.stats()
        if not stats:
            return []

        def key(method: str) -> tuple[float, float, str]:
            value = stats[(method, metric)]["mean"]
            tau = stats[(method, "tau_loo")]["mean"] if metric != "tau_loo" else 0.0
            sign = -1.0 if METRICS[metric] else 1.0
            v = float(value) if np.isfinite(value) else math.inf * -sign
            t = float(tau) if np.isfinite(tau) else -math.inf
            return (sign * v, -t, method)

        return sorted(self.methods, key=key)

    def table(self, metric: str = "comprehensiveness", digits: int = 3) -> pd.DataFrame:
        """method x metric, each cell ``mean [low, high]``, rows best first by ``metric``."""
        stats = self.stats()
        labels = self.metadata.get("labels") or {}
        rows = []
        for method in self.ranking(metric):
            row = {"method": method, "label": labels.get(method, method)}
            for m in METRICS:
                s = stats[(method, m)]
                row[m] = _cell(s["mean"], s["ci95_low"], s["ci95_high"], digits)
            rows.append(row)
        return pd.DataFrame(rows, columns=["method", "label", *METRICS])

    def markdown(self, metric: str = "comprehensiveness", digits: int = 3) -> str:
        """The summary as a markdown table, best first (the README's and the CLI's table); a
        method scored on fewer texts than the others (attention flow's token limit) says on
        how many."""
        table = self.table(metric, digits)
        head = ["method", "comprehensiveness ↑", "sufficiency ↓", "τ with leave-one-out ↑"]
        lines = ["| " + " | ".join(head) + " |", "|---|---:|---:|---:|"]
        counts = self.frame.groupby("method")["text"].nunique()
        most = int(counts.max()) if len(counts) else 0
        for r in table.to_dict("records"):
            n = int(counts.get(r["method"], 0))
            name = r["method"] if n == most else f"{r['method']} ({n} texts)"
            lines.append(
                f"| {name} | {r['comprehensiveness']} | {r['sufficiency']} | {r['tau_loo']} |"
            )
        return "\n".join(lines)

    def texts(self) -> list[str]:
        """The texts scored, by their ``text`` index (from the metadata)."""
        return list(self.metadata.get("texts") or [])


def _cell(mean: float, low: float, high: float, digits: int) -> str:
    if not np.isfinite(mean):
        return "–"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def concat(parts: Sequence[Faithfulness], metadata: dict[str, Any]) -> Faithfulness:
    """Results of consecutive text batches as one (``text`` indexes are kept as given)."""
    frames = [p.frame for p in parts if len(p.frame)]
    scores = [p.scores for p in parts if len(p.scores)]
    empty_f, empty_s = empty_frames()
    frame = pd.concat(frames, ignore_index=True) if frames else empty_f
    score = pd.concat(scores, ignore_index=True) if scores else empty_s
    return Faithfulness(
        frame.astype(empty_f.dtypes.to_dict()), score.astype(empty_s.dtypes.to_dict()), metadata
    )


__all__ = ["FLOOR", "FRAME_COLUMNS", "SCORE_COLUMNS", "Faithfulness", "concat", "empty_frames"]
