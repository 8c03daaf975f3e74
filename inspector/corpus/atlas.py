"""The corpus atlas as a result: per-head statistics and mean head distances, and their files.

An :class:`Atlas` is what :func:`inspector.corpus.engine.run_atlas` (or the Ray engine) returns:
per-head summary statistics and the mean head-distance matrix, both on the ``(layer, head)``
index. :func:`write_atlas` / :func:`read_atlas` store them as Parquet. Pure data and I/O: nothing
here runs a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .._io import atomic_paths
from ..errors import InputError
from .aggregate import SUMMARY_COLUMNS, HeadAggregate, mean_distance_frame, summary_frame


@dataclass(frozen=True, eq=False)
class Atlas:
    """A corpus atlas: per-head summary statistics and the mean head-distance matrix.

    Attributes:
        summary: :func:`~.aggregate.summary_frame`: on the ``(layer, head)`` index, one row per
            metric (``metric, n, mean, std, ci95_low, ...``).
        distances: square frame of mean head distances (index and columns: ``(layer, head)``),
            or ``None`` when distances were not computed.
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
        if stat not in self.summary.columns or stat == "metric":
            raise InputError(f"unknown statistic {stat!r}; one of {list(SUMMARY_COLUMNS[3:])}")
        part = self.summary[self.summary["metric"] == name].reset_index()
        return part.pivot(index="layer", columns="head", values=stat)

    def save(self, path: str | os.PathLike[str], *, force: bool = False) -> list[Path]:
        """Write the atlas as Parquet (see :func:`write_atlas`); returns the written paths."""
        return write_atlas(self, path, force=force)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"Atlas({m.get('model_name')!r}, {m.get('n_texts')} texts, {m.get('n_layers')} "
            f"layers x {m.get('n_heads')} heads x {len(m.get('metrics', []))} metrics, "
            f"distances {'yes' if self.distances is not None else 'no'})"
        )


def distances_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`write_atlas` puts the distances: ``x.parquet`` → ``x.distances.parquet``."""
    p = Path(path)
    return p.with_name(p.stem + ".distances.parquet")


def write_atlas(
    atlas: Atlas,
    path: str | os.PathLike[str],
    *,
    extra: Mapping[str | os.PathLike[str], str] | None = None,
    force: bool = False,
) -> list[Path]:
    """Write the summary to ``path`` (Parquet, metadata in the schema) and the distance matrix
    beside it (see :func:`distances_path`) as one set: both files are new, or neither changed.

    ``extra`` maps more files of the set to their text (the atlas report). An old distances file
    beside ``path`` is removed when this atlas has none, so :func:`read_atlas` never pairs a
    summary with another run's distances. Returns the written paths.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if Path(path).suffix.lower() != ".parquet":
        raise InputError(f"{path}: the atlas is written as Parquet; use a .parquet file name")
    meta_bytes = json.dumps(dict(atlas.metadata), default=str).encode()
    tables: list[tuple[Path, pd.DataFrame]] = [(Path(path), atlas.summary)]
    if atlas.distances is not None:
        # columns are the same heads as the index, in order: stored by position
        square = atlas.distances.set_axis([str(i) for i in range(len(atlas.distances))], axis=1)
        tables.append((distances_path(path), square))
    texts = [(Path(p), text) for p, text in (extra or {}).items()]
    stale = [] if atlas.distances is not None else [distances_path(path)]
    targets = [p for p, _ in tables] + [p for p, _ in texts]
    with atomic_paths(targets, remove=stale, force=force) as tmps:
        for (_, frame), tmp in zip(tables, tmps, strict=False):
            table = pa.Table.from_pandas(frame, preserve_index=True)
            schema_meta = dict(table.schema.metadata or {})
            schema_meta[b"inspector"] = meta_bytes
            pq.write_table(table.replace_schema_metadata(schema_meta), tmp)
        for (_, text), tmp in zip(texts, tmps[len(tables) :], strict=True):
            tmp.write_text(text, encoding="utf-8")
    return targets


def read_atlas(path: str | os.PathLike[str]) -> Atlas:
    """Read an atlas written by :func:`write_atlas` (``aggregate`` is ``None``)."""
    import pyarrow.parquet as pq

    p = Path(path)
    advice = "give the .parquet file that `inspector atlas ... -o FILE` or Atlas.save() wrote"
    if not p.exists():
        raise InputError(f"{p} does not exist; {advice}")
    if not p.is_file():
        raise InputError(f"{p} is a folder, not an atlas file; {advice}")
    try:
        table = pq.read_table(p)
        raw = table.schema.metadata or {}
        meta = json.loads(raw[b"inspector"]) if b"inspector" in raw else {}
        summary = table.to_pandas()
    except Exception as exc:
        raise InputError(
            f"{p} is not a readable atlas (Parquet) file ({type(exc).__name__}: "
            f"{str(exc)[:200]}); {advice}"
        ) from exc
    if list(summary.index.names) != ["layer", "head"] or "metric" not in summary.columns:
        raise InputError(f"{p} is a Parquet file but not an atlas written by inspector; {advice}")
    dist = None
    dpath = distances_path(p)
    if dpath.exists():
        try:
            square = pq.read_table(dpath).to_pandas()
        except Exception as exc:
            raise InputError(
                f"{dpath}, the atlas' distance matrix, is not a readable Parquet file "
                f"({type(exc).__name__}: {str(exc)[:200]}); write the atlas again, or move "
                f"{dpath.name} away to read the summary alone"
            ) from exc
        dist = square.set_axis(square.index.copy(), axis=1)
    return Atlas(summary, dist, meta, None)


__all__ = ["Atlas", "distances_path", "read_atlas", "write_atlas"]
