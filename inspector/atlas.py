"""Corpus head atlas: per-head attention statistics streamed over many texts.

Texts are read lazily from a list, any iterable, a text file, a CSV/Parquet column, a CoNLL-U
treebank or a Hugging Face ``datasets`` dataset; they are run in right-padded batches
(:mod:`inspector.batching`), each input's unpadded attention is measured with the metrics
registry (:mod:`inspector.metrics`), and the per-input values are folded into a fixed-size,
mergeable :class:`HeadAggregate` (count, sum, sum of squares, min, max and a fixed-bin histogram
per metric and head, plus the summed head-distance matrix). Memory stays flat however long the
corpus is; aggregates of two runs (or of Ray workers) merge exactly.

The local engine checkpoints its aggregate atomically, so an interrupted run resumes where it
stopped without counting a text twice. :func:`run_atlas_ray` runs the same pipeline on Ray Data.

This module never renders and never imports :mod:`inspector.render`, ``api`` or ``cli``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._io import atomic_path
from .batching import Encoded, encode_text, forward_batch
from .capture import AttentionStack
from .errors import InputError
from .loading import ModelBundle

#: Histogram bins per metric and head.
DEFAULT_BINS = 1000
CHECKPOINT_VERSION = 1
MetricFn = Callable[[AttentionStack], Mapping[str, np.ndarray]]
DistanceFn = Callable[[AttentionStack], np.ndarray]

#: Besides the registry's numeric metrics the atlas keeps ``sink_share`` (``metrics.sink_arrays``).
SINK_SHARE = "sink_share"
#: Metrics known to lie in [0, 1]: binned linearly there. Others are squashed into (0, 1).
_UNIT_METRICS = frozenset({"entropy_norm", "max_weight", SINK_SHARE})


def is_unit_metric(name: str) -> bool:
    """True for metrics bounded by [0, 1] (attention fractions and normalised entropy)."""
    return name in _UNIT_METRICS or name.startswith("to_")


# ------------------------------------------------------------------------------------ text sources


@dataclass(frozen=True)
class TextSource:
    """A re-openable stream of texts with an optional known length.

    Attributes:
        open: returns a fresh iterator over the texts (items that are not usable text are
            yielded as-is and skipped later, so positions stay stable for ``--resume``).
        total: the number of items when known cheaply, else ``None``.
        description: where the texts come from, for metadata and messages.
        path / column: the file and column, when the source is a file.
    """

    open: Callable[[], Iterator[Any]]
    total: int | None
    description: str
    path: Path | None = None
    column: str | None = None

    def __iter__(self) -> Iterator[Any]:
        return self.open()


def _split_column(spec: str) -> tuple[str, str | None]:
    """``data.csv:text`` → (``data.csv``, ``text``); a plain existing path keeps no column."""
    if os.path.exists(spec):
        return spec, None
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and os.path.exists(head):
        return head, tail
    return spec, None


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _pick_column(columns: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column not in columns:
            raise InputError(
                f"{where} has no column {column!r}; its columns are {list(columns)} "
                f"(name one as FILE:COLUMN or column=...)"
            )
        return column
    if "text" in columns:
        return "text"
    if len(columns) == 1:
        return columns[0]
    raise InputError(
        f"{where} has several columns {list(columns)}; name the text column as FILE:COLUMN or "
        f"column=..."
    )


def _text_file(path: Path) -> TextSource:
    def lines() -> Iterator[str]:
        with path.open(encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\r\n")

    return TextSource(lines, _count_lines(path), str(path), path)


def _csv_file(path: Path, column: str | None) -> TextSource:
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    col = _pick_column(header, column, str(path))

    def rows() -> Iterator[Any]:
        for chunk in pd.read_csv(path, usecols=[col], chunksize=4096, dtype={col: "string"}):
            for value in chunk[col].tolist():
                yield value if isinstance(value, str) else None

    return TextSource(rows, None, f"{path}:{col}", path, col)


def _parquet_file(path: Path, column: str | None) -> TextSource:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"{path} is not a readable Parquet file: {exc}") from exc
    col = _pick_column(meta.schema_arrow.names, column, str(path))

    def rows() -> Iterator[Any]:
        for batch in pq.ParquetFile(path).iter_batches(columns=[col], batch_size=4096):
            yield from batch.column(0).to_pylist()

    return TextSource(rows, meta.metadata.num_rows, f"{path}:{col}", path, col)


def _conllu_file(path: Path) -> TextSource:
    from conllu import parse_incr

    def sentences() -> Iterator[Any]:
        with path.open(encoding="utf-8") as f:
            for sent in parse_incr(f):
                text = sent.metadata.get("text")
                if text is None:  # no "# text =" comment: join the surface tokens
                    text = " ".join(str(t["form"]) for t in sent if isinstance(t["id"], int))
                yield text

    with path.open(encoding="utf-8") as f:
        total = sum(1 for line in f if line.startswith("# text ="))
    return TextSource(sentences, total or None, str(path), path)


def _is_hf_dataset(obj: Any) -> bool:
    return hasattr(obj, "column_names") and hasattr(obj, "__iter__") and not isinstance(obj, str)


def _hf_dataset(ds: Any, column: str | None) -> TextSource:
    names = ds.column_names
    if isinstance(names, dict):  # a DatasetDict
        raise InputError(
            f"this is a DatasetDict with splits {list(names)}; pass one split, e.g. ds['train']"
        )
    col = _pick_column(list(names or []), column, "the dataset")

    def rows() -> Iterator[Any]:
        for row in ds:
            yield row[col]

    try:
        total: int | None = len(ds)
    except TypeError:  # streaming IterableDataset
        total = None
    return TextSource(rows, total, f"datasets:{col}", None, col)


def text_source(texts: Any, *, column: str | None = None) -> TextSource:
    """Turn what the caller gave into a :class:`TextSource`.

    Args:
        texts: a list or any iterable of strings; a path to a text file (one text per line), a
            ``.csv``/``.tsv``/``.parquet`` file (give the column as ``FILE:COLUMN`` or
            ``column=``; a column named ``text`` or a single column is found by itself), a
            ``.conllu`` treebank (its ``# text =`` lines); a pandas Series or DataFrame; or a
            Hugging Face ``datasets`` dataset (duck-typed: anything with ``column_names``).
        column: the text column of a table, CSV/Parquet file or dataset.

    Example:
        >>> src = text_source(["The cat sat.", "A dog barked."])
        >>> list(src)
        ['The cat sat.', 'A dog barked.']
    """
    if isinstance(texts, TextSource):
        return texts
    if isinstance(texts, str | os.PathLike):
        spec, col = _split_column(os.fspath(texts))
        col = column or col
        path = Path(spec).expanduser()
        if not path.exists():
            if isinstance(texts, str) and not any(c in texts for c in "/\\") and " " in texts:
                raise InputError(
                    "texts is a single string; pass a list of texts, e.g. [text], or a file path"
                )
            raise InputError(f"{spec} does not exist; give a text, CSV, Parquet or CoNLL-U file")
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file with one text per line")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return _parquet_file(path, col)
        if suffix in (".csv", ".tsv"):
            if suffix == ".tsv":
                raise InputError(f"{path}: TSV is not supported; save it as CSV or Parquet")
            return _csv_file(path, col)
        if suffix == ".conllu":
            return _conllu_file(path)
        if col is not None:
            raise InputError(f"{path} is a plain text file; it has no column {col!r}")
        return _text_file(path)
    if isinstance(texts, pd.DataFrame):
        col = _pick_column([str(c) for c in texts.columns], column, "the DataFrame")
        values = texts[col].tolist()
        return TextSource(lambda: iter(values), len(values), f"DataFrame:{col}", None, col)
    if isinstance(texts, pd.Series):
        values = texts.tolist()
        return TextSource(lambda: iter(values), len(values), "Series")
    if _is_hf_dataset(texts):
        return _hf_dataset(texts, column)
    if isinstance(texts, Sequence):
        seq = texts
        return TextSource(lambda: iter(seq), len(seq), f"{len(seq)} texts")
    if isinstance(texts, Iterable):
        it = iter(texts)
        used = [False]

        def once() -> Iterator[Any]:
            if used[0]:
                raise InputError("this iterator of texts was already consumed; pass a list")
            used[0] = True
            return it

        return TextSource(once, None, "an iterable of texts")
    raise InputError(
        f"texts must be a list of strings, an iterable, a file path or a dataset, not "
        f"{type(texts).__name__}"
    )


# ------------------------------------------------------------------------------------- aggregates


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


# ------------------------------------------------------------------------------------- measuring


def registry_metric_fn(names: Sequence[str] | None) -> tuple[tuple[str, ...], MetricFn]:
    """The metric names and a per-stack function from the metrics registry."""
    from . import metrics as registry

    available = [*registry.list_metrics(), SINK_SHARE]
    chosen = list(names) if names is not None else available
    unknown = [n for n in chosen if n not in available]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; available: {available}")
    frozen = tuple(chosen)
    numeric = [n for n in frozen if n != SINK_SHARE]

    def fn(stack: AttentionStack) -> Mapping[str, np.ndarray]:
        out = registry.compute_metric_arrays(stack, numeric) if numeric else {}
        if SINK_SHARE in frozen:  # share of the head's attention on its top key (roles: sink)
            out[SINK_SHARE] = registry.sink_arrays(stack.weights)[1]
        return out

    return frozen, fn


def registry_distance_fn(method: str = "js") -> DistanceFn:
    from . import metrics as registry

    def fn(stack: AttentionStack) -> np.ndarray:
        return np.asarray(registry.head_distances(stack, method=method), dtype=np.float64)

    return fn


@dataclass(frozen=True)
class AtlasSpec:
    """What one atlas measures; two runs with equal specs can be merged or resumed."""

    metrics: tuple[str, ...]
    kind: str
    max_length: int | None
    bins: int = DEFAULT_BINS
    distances: bool = True
    distance_method: str = "js"

    def fingerprint(self, bundle: ModelBundle) -> dict[str, Any]:
        return {
            "model": bundle.name,
            "source": bundle.source,
            "n_layers": bundle.n_layers,
            "n_heads": bundle.n_heads,
            "metrics": list(self.metrics),
            "kind": self.kind,
            "max_length": self.max_length,
            "bins": self.bins,
            "distances": self.distances,
            "distance_method": self.distance_method,
        }


def default_kind(bundle: ModelBundle) -> str:
    return "encoder" if bundle.architecture == "encoder-decoder" else "self"


def measure_batch(
    bundle: ModelBundle,
    items: Sequence[Any],
    spec: AtlasSpec,
    metric_fn: MetricFn,
    distance_fn: DistanceFn | None,
) -> HeadAggregate:
    """Run one batch of raw items (texts; blanks and non-strings are skipped) and aggregate it."""
    encoded: list[Encoded] = []
    skipped = 0
    for item in items:
        if not isinstance(item, str) or not item.strip():
            skipped += 1
            continue
        encoded.append(encode_text(bundle, item, max_length=spec.max_length, truncation=True))
    captures = forward_batch(bundle, encoded)
    values = np.full(
        (len(captures), len(spec.metrics), bundle.n_layers, bundle.n_heads), np.nan, np.float64
    )
    dists: list[np.ndarray] = []
    for i, cap in enumerate(captures):
        stack = cap.stacks[spec.kind]
        arrays = metric_fn(stack)
        for m, name in enumerate(spec.metrics):
            values[i, m] = arrays[name]
        if spec.distances and distance_fn is not None:
            dists.append(distance_fn(stack))
    return aggregate_values(
        values,
        spec.metrics,
        bins=spec.bins,
        distances=np.stack(dists) if dists else None,
        distances_enabled=spec.distances,
        n_tokens=sum(len(e) for e in encoded),
        n_truncated=sum(e.truncated for e in encoded),
        n_skipped=skipped,
    )


# ------------------------------------------------------------------------------------ the result


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
    """Tidy per-head statistics: one row per (layer, head, metric), columns
    :data:`SUMMARY_COLUMNS`.

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
            "layer": l_idx.ravel().astype(np.int16),
            "head": h_idx.ravel().astype(np.int16),
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
    return frame.sort_values(["layer", "head", "metric"], kind="stable", ignore_index=True)


def head_labels(n_layers: int, n_heads: int) -> list[str]:
    """``"L.H"`` labels in layer-major order (the order of the distance matrix)."""
    return [f"{layer}.{head}" for layer in range(n_layers) for head in range(n_heads)]


def mean_distance_frame(agg: HeadAggregate) -> pd.DataFrame | None:
    """The corpus-averaged head-distance matrix as a square frame labelled ``"layer.head"``."""
    mean = agg.mean_distances()
    if mean is None:
        return None
    labels = head_labels(agg.n_layers, agg.n_heads)
    return pd.DataFrame(mean, index=pd.Index(labels, name="head"), columns=labels)


@dataclass(frozen=True, eq=False)
class Atlas:
    """A corpus atlas: per-head summary statistics and the mean head-distance matrix.

    Attributes:
        summary: :func:`summary_frame` (``layer, head, metric, n, mean, std, ci95_low, ...``).
        distances: square frame of mean head distances (index and columns ``"layer.head"``), or
            ``None`` when distances were not computed.
        metadata: model, corpus counters, engine, timing.
        aggregate: the raw mergeable aggregate (``None`` when read back from Parquet).
    """

    summary: pd.DataFrame
    distances: pd.DataFrame | None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    aggregate: HeadAggregate | None = None

    @classmethod
    def from_aggregate(cls, agg: HeadAggregate, metadata: Mapping[str, Any]) -> Atlas:
        meta = dict(metadata)
        meta.update(
            n_texts=agg.n_texts,
            n_tokens=agg.n_tokens,
            n_truncated=agg.n_truncated,
            n_skipped=agg.n_skipped,
            metrics=list(agg.metrics),
            n_layers=agg.n_layers,
            n_heads=agg.n_heads,
        )
        return cls(summary_frame(agg), mean_distance_frame(agg), meta, agg)

    def metric(self, name: str, stat: str = "mean") -> pd.DataFrame:
        """A ``(layer, head)`` table of one statistic of one metric."""
        if name not in set(self.summary["metric"].astype(str)):
            raise InputError(
                f"no metric {name!r} in this atlas; it has {list(self.metadata.get('metrics', []))}"
            )
        if stat not in self.summary.columns or stat in ("layer", "head", "metric"):
            raise InputError(f"unknown statistic {stat!r}; one of {list(SUMMARY_COLUMNS[3:])}")
        part = self.summary[self.summary["metric"] == name]
        return part.pivot(index="layer", columns="head", values=stat)


def distances_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`write_atlas` puts the distances: ``x.parquet`` → ``x.distances.parquet``."""
    p = Path(path)
    return p.with_name(p.stem + ".distances.parquet")


def write_atlas(atlas: Atlas, path: str | os.PathLike[str]) -> list[Path]:
    """Write the summary to ``path`` (Parquet, metadata in the schema) and the distance matrix
    beside it (see :func:`distances_path`), each atomically. Returns the written paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if Path(path).suffix.lower() != ".parquet":
        raise InputError(f"{path}: the atlas is written as Parquet; use a .parquet file name")
    meta_bytes = json.dumps(dict(atlas.metadata), default=str).encode()
    written = []
    tables: list[tuple[Path, pd.DataFrame, bool]] = [(Path(path), atlas.summary, False)]
    if atlas.distances is not None:
        tables.append((distances_path(path), atlas.distances, True))
    for target, frame, keep_index in tables:
        table = pa.Table.from_pandas(frame, preserve_index=keep_index)
        schema_meta = dict(table.schema.metadata or {})
        schema_meta[b"inspector"] = meta_bytes
        with atomic_path(target) as tmp:
            pq.write_table(table.replace_schema_metadata(schema_meta), tmp)
        written.append(target)
    return written


def read_atlas(path: str | os.PathLike[str]) -> Atlas:
    """Read an atlas written by :func:`write_atlas` (``aggregate`` is ``None``)."""
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist")
    table = pq.read_table(p)
    raw = table.schema.metadata or {}
    meta = json.loads(raw[b"inspector"]) if b"inspector" in raw else {}
    summary = table.to_pandas()
    dist = None
    if distances_path(p).exists():
        dist = pq.read_table(distances_path(p)).to_pandas()
    return Atlas(summary, dist, meta, None)


# ------------------------------------------------------------------------------------ checkpoints


def save_checkpoint(
    path: str | os.PathLike[str], agg: HeadAggregate, n_done: int, fingerprint: Mapping[str, Any]
) -> Path:
    """Atomically write the aggregate and the number of source items consumed."""
    arrays = agg.to_arrays()
    info = {"version": CHECKPOINT_VERSION, "n_done": n_done, "fingerprint": dict(fingerprint)}
    arrays["checkpoint"] = np.frombuffer(json.dumps(info).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[HeadAggregate, int, dict[str, Any]]:
    """The aggregate, items consumed and fingerprint saved by :func:`save_checkpoint`."""
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        info = json.loads(bytes(arrays.pop("checkpoint")).decode())
    except Exception as exc:
        raise InputError(f"{path} is not a readable atlas checkpoint: {exc}") from exc
    if info.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {info.get('version')} is not supported")
    return HeadAggregate.from_arrays(arrays), int(info["n_done"]), info["fingerprint"]


def default_checkpoint_path(output: str | os.PathLike[str]) -> Path:
    p = Path(output)
    return p.with_name(p.name + ".ckpt.npz")


# ----------------------------------------------------------------------------------- local engine


def _chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _resolve(
    bundle: ModelBundle,
    metrics: Sequence[str] | None,
    kind: str | None,
    max_length: int | None,
    distances: bool,
    bins: int,
    metric_fn: MetricFn | None,
    distance_fn: DistanceFn | None,
    metric_names: Sequence[str] | None,
) -> tuple[AtlasSpec, MetricFn, DistanceFn | None]:
    if bins < 10:
        raise InputError(f"bins must be at least 10, got {bins}")
    kind = kind or default_kind(bundle)
    allowed = (
        ("encoder", "decoder", "cross") if bundle.architecture == "encoder-decoder" else ("self",)
    )
    if kind not in allowed:
        raise InputError(f"kind={kind!r} does not exist for this model; use one of {allowed}")
    if metric_fn is None:
        names, metric_fn = registry_metric_fn(metrics)
    else:
        names = tuple(metric_names or metrics or ())
        if not names:
            raise InputError("a custom metric_fn needs metric_names=[...]")
    if distances and distance_fn is None:
        distance_fn = registry_distance_fn()
    spec = AtlasSpec(tuple(names), kind, max_length, bins, distances)
    return spec, metric_fn, distance_fn


def run_atlas(
    bundle: ModelBundle,
    texts: Any,
    *,
    column: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    metrics: Sequence[str] | None = None,
    kind: str | None = None,
    distances: bool = True,
    bins: int = DEFAULT_BINS,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: float = 30.0,
    progress: bool = True,
    limit: int | None = None,
    metric_fn: MetricFn | None = None,
    metric_names: Sequence[str] | None = None,
    distance_fn: DistanceFn | None = None,
) -> Atlas:
    """Stream ``texts`` through ``bundle`` in padded batches and build the head atlas.

    Args:
        bundle: a loaded model.
        texts: anything :func:`text_source` accepts (list, iterable, file, ``FILE:COLUMN``,
            DataFrame, ``datasets`` dataset).
        column: the text column of a table source.
        batch_size: inputs per forward pass.
        max_length: token limit per input (longer inputs are truncated and counted).
        metrics: metric names from the registry (default: all of ``metrics.list_metrics()``)
            plus ``sink_share`` (share of a head's attention on its top key, for the sink role).
        kind: the attention stack to measure (default ``self``; ``encoder`` for T5/BART).
        distances: also average the head-distance matrix (Jensen–Shannon) over the corpus.
        bins: histogram bins per metric and head (quantile resolution).
        checkpoint: file for the aggregate; written atomically every ``checkpoint_every``
            seconds, at the end, and when interrupted (Ctrl-C) or crashing.
        resume: continue from ``checkpoint`` when it exists (its settings must match).
        progress: show a tqdm bar with sentences/s.
        limit: stop after this many source items.
        metric_fn / metric_names / distance_fn: replace the registry (advanced; tests).

    Returns:
        An :class:`Atlas`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = text_source(texts, column=column)
    spec, metric_fn, distance_fn = _resolve(
        bundle, metrics, kind, max_length, distances, bins, metric_fn, distance_fn, metric_names
    )
    fingerprint = spec.fingerprint(bundle)
    agg = HeadAggregate.empty(
        spec.metrics, bundle.n_layers, bundle.n_heads, bins=spec.bins, distances=spec.distances
    )
    n_done = 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        agg, n_done, saved = load_checkpoint(checkpoint)
        if saved != json.loads(json.dumps(fingerprint)):
            diff = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
            raise InputError(
                f"{checkpoint} was written with other settings ({', '.join(diff)} differ); "
                f"rerun with the same settings, or delete it to start over"
            )
    total = source.total if limit is None else min(limit, source.total or limit)
    it = source.open()
    if n_done:
        skipped = sum(1 for _ in itertools.islice(it, n_done))
        if skipped < n_done:
            raise InputError(
                f"the checkpoint has {n_done} texts done but the source has only {skipped}"
            )
    if limit is not None:
        it = itertools.islice(it, max(limit - n_done, 0))

    from tqdm.auto import tqdm

    state = (agg, n_done)
    start = time.perf_counter()
    last_save = start
    bar = tqdm(
        total=total,
        initial=n_done,
        unit=" sentences",
        disable=not progress,
        desc=f"atlas {bundle.name}",
        dynamic_ncols=True,
    )
    try:
        for chunk in _chunks(it, batch_size):
            delta = measure_batch(bundle, chunk, spec, metric_fn, distance_fn)
            state = (state[0].merge(delta), state[1] + len(chunk))  # one atomic assignment
            bar.update(len(chunk))
            if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every:
                save_checkpoint(checkpoint, state[0], state[1], fingerprint)
                last_save = time.perf_counter()
    except BaseException:
        if checkpoint is not None and state[1] > n_done:
            save_checkpoint(checkpoint, state[0], state[1], fingerprint)
        raise
    finally:
        bar.close()
    if checkpoint is not None:
        save_checkpoint(checkpoint, state[0], state[1], fingerprint)
    seconds = time.perf_counter() - start
    new = state[1] - n_done
    meta = _metadata(bundle, spec, source.description, "local", batch_size)
    meta.update(
        seconds=round(seconds, 3), texts_per_second=round(new / seconds, 2) if seconds else None
    )
    meta["resumed_from"] = n_done
    _require_texts(state[0], source.description)
    return Atlas.from_aggregate(state[0], meta)


def _require_texts(agg: HeadAggregate, description: str) -> None:
    if agg.n_texts == 0:
        skipped = f" ({agg.n_skipped} skipped as empty or too long)" if agg.n_skipped else ""
        raise InputError(f"no text to measure in {description}{skipped}; give non-empty texts")


def _metadata(
    bundle: ModelBundle, spec: AtlasSpec, source: str, engine: str, batch_size: int
) -> dict[str, Any]:
    return {
        "model_name": bundle.name,
        "model_type": bundle.model_type,
        "architecture": bundle.architecture,
        "kind": spec.kind,
        "source": source,
        "engine": engine,
        "batch_size": batch_size,
        "max_length": spec.max_length,
        "bins": spec.bins,
        "distance_method": spec.distance_method if spec.distances else None,
    }


# -------------------------------------------------------------------------------------- Ray engine


class _RayAtlasWorker:
    """A Ray Data actor: loads the model once, turns each batch of texts into a serialized
    :class:`HeadAggregate` (the same :func:`measure_batch` as the local engine)."""

    def __init__(
        self,
        model: Any,
        spec: AtlasSpec,
        metric_fn: MetricFn | None,
        distance_fn: DistanceFn | None,
        device: str | None,
        threads: int | None,
    ) -> None:
        import torch

        from .loading import load_model

        if threads:
            torch.set_num_threads(threads)
        if device is None and torch.cuda.is_available():
            device = "cuda"
        self.bundle = model if isinstance(model, ModelBundle) else load_model(model, device=device)
        if isinstance(model, ModelBundle) and device is not None:
            self.bundle = load_model((model.model.to(device), model.tokenizer))
        self.spec = spec
        if metric_fn is None:
            _, metric_fn = registry_metric_fn(spec.metrics)
        if spec.distances and distance_fn is None:
            distance_fn = registry_distance_fn(spec.distance_method)
        self.metric_fn = metric_fn
        self.distance_fn = distance_fn

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        texts = [t if isinstance(t, str) else None for t in list(batch["text"])]
        agg = measure_batch(self.bundle, texts, self.spec, self.metric_fn, self.distance_fn)
        return {"aggregate": [agg.to_bytes()]}


def _ray_dataset(ray_data: Any, source: TextSource, limit: int | None) -> Any:
    """Texts as a Ray dataset with one ``text`` column (files are read by Ray itself)."""
    path = source.path
    if limit is None and path is not None:
        suffix = path.suffix.lower()
        if suffix == ".parquet" and source.column:
            ds = ray_data.read_parquet(str(path), columns=[source.column])
            return ds.rename_columns({source.column: "text"}) if source.column != "text" else ds
        if suffix not in (".csv", ".conllu", ".parquet"):
            return ray_data.read_text(str(path))
    it = source.open()
    if limit is not None:
        it = itertools.islice(it, limit)
    return ray_data.from_items([{"text": t if isinstance(t, str) else ""} for t in it])


def run_atlas_ray(
    model: Any,
    texts: Any,
    *,
    column: str | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    metrics: Sequence[str] | None = None,
    kind: str | None = None,
    distances: bool = True,
    bins: int = DEFAULT_BINS,
    num_workers: int = 2,
    num_gpus_per_worker: float | None = None,
    address: str | None = None,
    limit: int | None = None,
    metric_fn: MetricFn | None = None,
    metric_names: Sequence[str] | None = None,
    distance_fn: DistanceFn | None = None,
    progress: bool = True,
) -> Atlas:
    """The atlas on Ray Data: same batches, same aggregates, merged on the driver.

    Texts become a Ray dataset; ``map_batches`` runs a pool of ``num_workers`` actors, each
    loading the model once (on a GPU where the cluster has one) and returning one serialized
    :class:`HeadAggregate` per batch; the driver merges them as they stream in.

    Args:
        model: a model name/folder every worker can load (``"minilm"``, a shared path, a hub
            id), or a :class:`~inspector.loading.ModelBundle` (pickled to each worker).
        address: a Ray cluster (``"ray://head:10001"``, ``"auto"``); default: the running local
            instance, or a new one.
        num_workers: model replicas (actors).
        num_gpus_per_worker: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        Other arguments: as :func:`run_atlas` (no checkpoints: Ray re-runs failed tasks).
    """
    try:
        import ray
        import ray.data as ray_data
    except ImportError as exc:
        raise InputError(
            "the Ray engine needs Ray Data: pip install 'attention-inspector[ray]'"
        ) from exc
    from .loading import load_model

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    spec, fn, dfn = _resolve(
        bundle, metrics, kind, max_length, distances, bins, metric_fn, distance_fn, metric_names
    )
    source = text_source(texts, column=column)
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    ctx = ray_data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    gpus = num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    ds = _ray_dataset(ray_data, source, limit)
    start = time.perf_counter()
    out = ds.map_batches(
        _RayAtlasWorker,
        fn_constructor_kwargs={
            "model": model,
            "spec": spec,
            "metric_fn": metric_fn,
            "distance_fn": distance_fn,
            "device": None if gpus else "cpu",
            "threads": 1 if not gpus else None,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray_data.ActorPoolStrategy(size=num_workers),
        num_cpus=1,
        num_gpus=gpus,
    )
    agg = HeadAggregate.empty(
        spec.metrics, bundle.n_layers, bundle.n_heads, bins=spec.bins, distances=spec.distances
    )
    for row in out.iter_rows():
        agg = agg.merge(HeadAggregate.from_bytes(row["aggregate"]))
    seconds = time.perf_counter() - start
    del fn, dfn
    meta = _metadata(bundle, spec, source.description, "ray", batch_size)
    meta.update(
        seconds=round(seconds, 3),
        texts_per_second=round((agg.n_texts + agg.n_skipped) / seconds, 2) if seconds else None,
        num_workers=num_workers,
        num_gpus_per_worker=gpus,
        ray_address=address or "local",
    )
    _require_texts(agg, source.description)
    return Atlas.from_aggregate(agg, meta)


__all__ = [
    "Atlas",
    "AtlasSpec",
    "HeadAggregate",
    "TextSource",
    "aggregate_values",
    "load_checkpoint",
    "mean_distance_frame",
    "read_atlas",
    "run_atlas",
    "run_atlas_ray",
    "save_checkpoint",
    "summary_frame",
    "text_source",
    "write_atlas",
]
