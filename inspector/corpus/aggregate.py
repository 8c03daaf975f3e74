"""Mergeable per-head statistics of per-input metric values: the atlas' fixed-size state.

A :class:`HeadAggregate` holds count, sum, sum of squares, min, max and a fixed-bin histogram per
metric and head, plus the summed head-distance matrix; aggregates of two runs (or of Ray workers)
merge exactly, so memory stays flat however long the corpus is. :func:`summary_frame` turns one
into the atlas' per-head statistics. Pure numpy: nothing here runs a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..analysis.metrics import describe_metric
from ..errors import InputError

#: Histogram bins per metric and head.
DEFAULT_BINS = 1000


def is_unit_metric(name: str) -> bool:
    """True for metrics bounded by [0, 1] (binned linearly; others on a squashed scale)."""
    metric = describe_metric(name)
    return metric.is_share if metric is not None else name.startswith("to_")


def _squash(x: np.ndarray) -> np.ndarray:
    """Map the real line monotonically onto (0, 1): 0.5 + 0.5·x/(1+|x|)."""
    return 0.5 + 0.5 * x / (1.0 + np.abs(x))


def _unsquash(t: np.ndarray) -> np.ndarray:
    u = np.clip(2.0 * t - 1.0, -1.0 + 1e-12, 1.0 - 1e-12)
    return u / (1.0 - np.abs(u))


@dataclass(frozen=True, eq=False)
class HeadAggregate:
    """Mergeable per-head statistics of per-input metric values. Fixed size: memory stays flat.

    Arrays are indexed ``(metric, layer, head)``; ``hist`` adds a bin axis. Metrics bounded by
    [0, 1] are binned linearly on [0, 1]; others (entropy, distances) are binned on the squashed
    scale ``0.5 + 0.5·x/(1+|x|)``, which keeps quantiles monotone over the whole real line.

    Attributes:
        metrics: metric names, in array order.
        count / total / total_sq: number, sum and sum of squares of the finite values.
        minimum / maximum: extremes (``inf`` / ``-inf`` where no value was seen).
        hist: ``(metric, layer, head, bin)`` counts.
        dist_total / dist_count: summed head-distance matrix ``(layer·head, layer·head)`` and
            how many inputs each entry summed (``None`` when distances were not computed).
        n_texts / n_tokens / n_truncated / n_skipped: corpus counters.
    """

    metrics: tuple[str, ...]
    n_layers: int
    n_heads: int
    bins: int
    count: np.ndarray
    total: np.ndarray
    total_sq: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    hist: np.ndarray
    dist_total: np.ndarray | None = None
    dist_count: np.ndarray | None = None
    n_texts: int = 0
    n_tokens: int = 0
    n_truncated: int = 0
    n_skipped: int = 0

    def __post_init__(self) -> None:
        shape = (len(self.metrics), self.n_layers, self.n_heads)
        for name in ("count", "total", "total_sq", "minimum", "maximum"):
            if getattr(self, name).shape != shape:
                raise InputError(f"HeadAggregate.{name} has shape {getattr(self, name).shape}")
        if self.hist.shape != (*shape, self.bins):
            raise InputError(f"HeadAggregate.hist has shape {self.hist.shape}")
        if (self.dist_total is None) != (self.dist_count is None):
            raise InputError("dist_total and dist_count go together")

    @classmethod
    def empty(
        cls,
        metrics: Sequence[str],
        n_layers: int,
        n_heads: int,
        *,
        bins: int = DEFAULT_BINS,
        distances: bool = True,
    ) -> HeadAggregate:
        """An aggregate of nothing (the identity of :meth:`merge`)."""
        shape = (len(metrics), n_layers, n_heads)
        lh = n_layers * n_heads
        return cls(
            tuple(metrics),
            n_layers,
            n_heads,
            bins,
            np.zeros(shape, np.int64),
            np.zeros(shape, np.float64),
            np.zeros(shape, np.float64),
            np.full(shape, np.inf),
            np.full(shape, -np.inf),
            np.zeros((*shape, bins), np.int64),
            np.zeros((lh, lh), np.float64) if distances else None,
            np.zeros((lh, lh), np.int64) if distances else None,
        )

    @property
    def has_distances(self) -> bool:
        return self.dist_total is not None

    def compatible(self, other: HeadAggregate) -> bool:
        return (
            self.metrics == other.metrics
            and (self.n_layers, self.n_heads, self.bins)
            == (other.n_layers, other.n_heads, other.bins)
            and self.has_distances == other.has_distances
        )

    def merge(self, other: HeadAggregate) -> HeadAggregate:
        """A new aggregate of both inputs' texts (associative and commutative up to float sums)."""
        if not self.compatible(other):
            raise InputError(
                "cannot merge atlas aggregates of different metrics, models or bin counts"
            )
        dist_total = dist_count = None
        if self.dist_total is not None and other.dist_total is not None:
            dist_total = self.dist_total + other.dist_total
            dist_count = self.dist_count + other.dist_count  # type: ignore[operator]
        return replace(
            self,
            count=self.count + other.count,
            total=self.total + other.total,
            total_sq=self.total_sq + other.total_sq,
            minimum=np.minimum(self.minimum, other.minimum),
            maximum=np.maximum(self.maximum, other.maximum),
            hist=self.hist + other.hist,
            dist_total=dist_total,
            dist_count=dist_count,
            n_texts=self.n_texts + other.n_texts,
            n_tokens=self.n_tokens + other.n_tokens,
            n_truncated=self.n_truncated + other.n_truncated,
            n_skipped=self.n_skipped + other.n_skipped,
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (for ``np.savez``); :meth:`from_arrays` restores the aggregate."""
        header = {
            "metrics": list(self.metrics),
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "bins": self.bins,
            "n_texts": self.n_texts,
            "n_tokens": self.n_tokens,
            "n_truncated": self.n_truncated,
            "n_skipped": self.n_skipped,
        }
        out = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "count": self.count,
            "total": self.total,
            "total_sq": self.total_sq,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "hist": self.hist,
        }
        if self.dist_total is not None and self.dist_count is not None:
            out["dist_total"] = self.dist_total
            out["dist_count"] = self.dist_count
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> HeadAggregate:
        h = json.loads(bytes(np.asarray(arrays["header"], dtype=np.uint8)).decode())
        return cls(
            tuple(h["metrics"]),
            int(h["n_layers"]),
            int(h["n_heads"]),
            int(h["bins"]),
            np.asarray(arrays["count"]),
            np.asarray(arrays["total"]),
            np.asarray(arrays["total_sq"]),
            np.asarray(arrays["minimum"]),
            np.asarray(arrays["maximum"]),
            np.asarray(arrays["hist"]),
            np.asarray(arrays["dist_total"]) if "dist_total" in arrays else None,
            np.asarray(arrays["dist_count"]) if "dist_count" in arrays else None,
            int(h["n_texts"]),
            int(h["n_tokens"]),
            int(h["n_truncated"]),
            int(h["n_skipped"]),
        )

    def to_bytes(self) -> bytes:
        """Compressed bytes (a batch's histogram is mostly zeros): for shipping between workers."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **self.to_arrays())  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> HeadAggregate:
        import io

        with np.load(io.BytesIO(data)) as z:
            return cls.from_arrays({k: z[k] for k in z.files})

    # ------------------------------------------------------------------ statistics
    def quantile(self, q: float) -> np.ndarray:
        """Estimated ``q``-quantile per (metric, layer, head) from the histograms (NaN if empty).

        Interpolates linearly inside a bin and clamps to the observed min/max, so the error is
        at most one bin width (0.001 for [0, 1] metrics with the default 1000 bins).
        """
        if not 0.0 <= q <= 1.0:
            raise InputError(f"quantile must be in [0, 1], got {q}")
        cum = np.cumsum(self.hist, axis=-1)
        n = cum[..., -1]
        target = q * n
        idx = np.minimum((cum < target[..., None]).sum(axis=-1), self.bins - 1)
        before = np.where(
            idx > 0, np.take_along_axis(cum, np.maximum(idx - 1, 0)[..., None], -1)[..., 0], 0
        )
        in_bin = np.take_along_axis(self.hist, idx[..., None], -1)[..., 0]
        frac = np.where(in_bin > 0, (target - before) / np.maximum(in_bin, 1), 0.0)
        t = (idx + np.clip(frac, 0.0, 1.0)) / self.bins
        unit = np.array([is_unit_metric(m) for m in self.metrics])[:, None, None]
        with np.errstate(invalid="ignore"):
            value = np.where(unit, t, _unsquash(t))
            value = np.clip(value, self.minimum, self.maximum)
        return np.where(n > 0, value, np.nan)

    def mean_distances(self) -> np.ndarray | None:
        """The head-distance matrix averaged over the corpus, ``(layer·head, layer·head)``."""
        if self.dist_total is None or self.dist_count is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.dist_count > 0, self.dist_total / self.dist_count, np.nan)


def aggregate_values(
    values: np.ndarray,
    metrics: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    distances: np.ndarray | None = None,
    distances_enabled: bool = True,
    n_tokens: int = 0,
    n_truncated: int = 0,
    n_skipped: int = 0,
) -> HeadAggregate:
    """Fold per-input metric values into a :class:`HeadAggregate`.

    Args:
        values: ``(input, metric, layer, head)``; NaN marks "undefined for this input".
        metrics: the metric names of axis 1.
        bins: histogram bins.
        distances: ``(input, layer·head, layer·head)`` head distances, or ``None``.
        distances_enabled: keep a distance sum at all (must match the aggregates merged with).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 4 or values.shape[1] != len(metrics):
        raise InputError(f"values must be (input, metric, layer, head), got {values.shape}")
    n_in, n_m, n_l, n_h = values.shape
    agg = HeadAggregate.empty(metrics, n_l, n_h, bins=bins, distances=distances_enabled)
    if n_in == 0:
        return replace(agg, n_skipped=n_skipped)
    finite = np.isfinite(values)
    zeros = np.where(finite, values, 0.0)
    unit = np.array([is_unit_metric(m) for m in metrics])[None, :, None, None]
    t = np.where(unit, np.clip(zeros, 0.0, 1.0), _squash(zeros))
    b = np.clip((t * bins).astype(np.int64), 0, bins - 1)
    cell = np.arange(n_m * n_l * n_h, dtype=np.int64).reshape(1, n_m, n_l, n_h) * bins
    flat = (cell + b)[finite]
    hist = np.bincount(flat, minlength=n_m * n_l * n_h * bins).reshape(n_m, n_l, n_h, bins)
    dist_total = dist_count = None
    if distances_enabled:
        lh = n_l * n_h
        if distances is None:
            dist_total, dist_count = np.zeros((lh, lh)), np.zeros((lh, lh), np.int64)
        else:
            d = np.asarray(distances, dtype=np.float64)
            if d.shape != (n_in, lh, lh):
                raise InputError(f"distances must be ({n_in}, {lh}, {lh}), got {d.shape}")
            ok = np.isfinite(d)
            dist_total = np.where(ok, d, 0.0).sum(axis=0)
            dist_count = ok.sum(axis=0).astype(np.int64)
    return replace(
        agg,
        count=finite.sum(axis=0).astype(np.int64),
        total=zeros.sum(axis=0),
        total_sq=(zeros * zeros).sum(axis=0),
        minimum=np.where(finite, values, np.inf).min(axis=0),
        maximum=np.where(finite, values, -np.inf).max(axis=0),
        hist=hist,
        dist_total=dist_total,
        dist_count=dist_count,
        n_texts=n_in,
        n_tokens=n_tokens,
        n_truncated=n_truncated,
        n_skipped=n_skipped,
    )


SUMMARY_COLUMNS = (
    "layer",
    "head",
    "metric",
    "n",
    "mean",
    "std",
    "ci95_low",
    "ci95_high",
    "p2_5",
    "median",
    "p97_5",
    "min",
    "max",
)


def summary_frame(agg: HeadAggregate) -> pd.DataFrame:
    """Tidy per-head statistics on the ``(layer, head)`` index: one row per (layer, head,
    metric), columns :data:`SUMMARY_COLUMNS` after ``layer`` and ``head``.

    ``mean ± 1.96·std/√n`` gives ``ci95_low``/``ci95_high`` (the 95% interval of the mean);
    ``p2_5``/``p97_5`` bound the central 95% of the per-input values (from the histograms).
    """
    n = agg.count.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, agg.total / n, np.nan)
        var = np.where(n > 1, (agg.total_sq - n * mean * mean) / (n - 1), np.nan)
        std = np.sqrt(np.maximum(var, 0.0))
        half = 1.96 * std / np.sqrt(n)
    m_idx, l_idx, h_idx = np.meshgrid(
        np.arange(len(agg.metrics)), np.arange(agg.n_layers), np.arange(agg.n_heads), indexing="ij"
    )
    frame = pd.DataFrame(
        {
            "layer": l_idx.ravel().astype(np.int64),
            "head": h_idx.ravel().astype(np.int64),
            "metric": pd.Categorical.from_codes(
                m_idx.ravel(), categories=pd.Index(list(agg.metrics))
            ),
            "n": agg.count.ravel(),
            "mean": mean.ravel(),
            "std": std.ravel(),
            "ci95_low": (mean - half).ravel(),
            "ci95_high": (mean + half).ravel(),
            "p2_5": agg.quantile(0.025).ravel(),
            "median": agg.quantile(0.5).ravel(),
            "p97_5": agg.quantile(0.975).ravel(),
            "min": np.where(n > 0, agg.minimum, np.nan).ravel(),
            "max": np.where(n > 0, agg.maximum, np.nan).ravel(),
        }
    )
    frame = frame.sort_values(["layer", "head", "metric"], kind="stable", ignore_index=True)
    return frame.set_index(["layer", "head"])


def mean_distance_frame(agg: HeadAggregate) -> pd.DataFrame | None:
    """The corpus-averaged head-distance matrix, square on the ``(layer, head)`` index."""
    mean = agg.mean_distances()
    if mean is None:
        return None
    index = pd.MultiIndex.from_product(
        [range(agg.n_layers), range(agg.n_heads)], names=["layer", "head"]
    )
    return pd.DataFrame(mean, index=index, columns=index.copy())


__all__ = [
    "DEFAULT_BINS",
    "SUMMARY_COLUMNS",
    "HeadAggregate",
    "aggregate_values",
    "is_unit_metric",
    "mean_distance_frame",
    "summary_frame",
]
