"""The facade for long inputs ("scan"): bounded scans, their page, the memory estimate.

:func:`scan` (also ``LoadedModel.scan``) measures a long input one block of query rows at a
time and returns a :class:`Scan`: head metrics equal to ``inspect(...).heads.metrics()``, exact
rows, top-k keys, pooled maps, sinks, what a row reads, Parquet export and a report that works at
8k tokens. :func:`estimate_memory` is the pre-flight every capture runs, as a value.
:func:`resolve_bundle` is the one model resolution of the functions that take any model.
Retrieval heads (which scan while generating) are in :mod:`.retrieval`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, overload

import numpy as np
import pandas as pd

from .. import frames as _frames
from ..analysis import scan_tables as _long
from ..analysis.scan import (
    TOPK_ROW_BYTES,
    ScanAccumulator,
    ScanData,
    ScanStack,
    scan_capture,
)
from ..capture import memory as _memory
from ..capture import scan as _scan
from ..capture.memory import MemoryLimit
from ..capture.options import InputOptions, Selection
from ..capture.tokenize import encode
from ..capture.types import Capture, ScanLayout, ScanPart, storage_dtype
from ..errors import InputError
from ..models.loading import ModelBundle, load_model
from ..render import scan_choice as _render
from ..render.page import Report
from .explaining import HasBundle
from .exports import suffixed

T = TypeVar("T")

#: A model for these functions: a LoadedModel, a bundle, a name, a folder or a pair.
LongModel: TypeAlias = "HasBundle | ModelBundle | str | os.PathLike[str] | tuple[Any, Any]"


class RetrievalTables(Protocol):
    """What the scan page shows of a :class:`~inspector.api.retrieval.RetrievalHeads` result."""

    heads: pd.DataFrame
    trials: pd.DataFrame


def resolve_bundle(model: LongModel) -> ModelBundle:
    """The :class:`ModelBundle` of a loaded model or a bundle; anything else (a name, a folder,
    a pair) is loaded with the defaults. The one model resolution of the facade
    (:func:`inspector.api.model.as_model` wraps it)."""
    if isinstance(model, ModelBundle):
        return model
    bundle = getattr(model, "bundle", None)
    if isinstance(bundle, ModelBundle):
        return bundle
    return load_model(model)  # it says what it cannot load


#: The tables :meth:`Scan.save` writes, in order: the first to the path, the others beside it.
SCAN_TABLES = ("heads", "rows", "topk")


def scan_files(path: str | os.PathLike[str]) -> dict[str, Path]:
    """The files of a scan saved to ``path``: ``heads`` is ``path`` itself, ``rows`` and
    ``topk`` go beside it (``s.parquet`` → ``s.rows.parquet``, ``s.topk.parquet``)."""
    out = Path(path)
    return {
        t: out if t == "heads" else out.with_name(f"{out.stem}.{t}{out.suffix}")
        for t in SCAN_TABLES
    }


#: What to do when a scan's tables do not fit.
TABLE_ADVICE = (
    "Scan with a smaller topk= or fewer rows= / layers= / heads=, or raise max_memory= if you "
    "know more is free"
)


class _OfStack(Generic[T]):
    """A read-only attribute of a :class:`Scan`, read from its (first) stack by ``read``."""

    def __init__(self, read: Callable[[ScanStack], T], doc: str) -> None:
        self.read = read
        self.__doc__ = doc

    @overload
    def __get__(self, scan: None, owner: type | None = None) -> _OfStack[T]: ...

    @overload
    def __get__(self, scan: Scan, owner: type | None = None) -> T: ...

    def __get__(self, scan: Scan | None, owner: type | None = None) -> T | _OfStack[T]:
        return self if scan is None else self.read(scan.stack())

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __set__(self, scan: Scan, value: object) -> None:  # read-only, as the properties were
        raise AttributeError(f"Scan.{self.name} is read-only")


class Scan:
    """A bounded-memory capture of one input: statistics, not the full attention array.

    For encoder-decoder models the properties describe the encoder; pass ``kind=`` to the
    methods for ``decoder`` / ``cross``.
    """

    def __init__(self, data: ScanData) -> None:
        if not isinstance(data, ScanData):
            raise InputError("Scan wraps a ScanData; use LoadedModel.scan(...)")
        self.data = data

    def stack(self, kind: str | None = None) -> ScanStack:
        return self.data.stack(kind)

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.data.metadata)

    tokens = _OfStack(lambda s: list(s.query.tokens), "The scan's tokens (raw).")
    layers = _OfStack(lambda s: s.layers, "The model indexes of the scanned layers.")
    heads = _OfStack(lambda s: s.heads, "The model indexes of the scanned heads.")
    rows = _OfStack(
        lambda s: s.rows,
        "Exact attention rows, ``(layer, head, len(row_positions), key)`` float32.",
    )
    row_positions = _OfStack(lambda s: s.row_positions, "Query positions of :attr:`rows`.")
    topk = _OfStack(
        _long.topk_frame,
        "The top-k keys of every query row: ``layer, head, query_pos, key_pos, weight``.",
    )
    pooled = _OfStack(
        lambda s: s.pooled_mean,
        "Each head's map block-averaged: ``(layer, head, row bins, key bins)``, at most "
        "``pool x pool`` (bin edges: :attr:`pool_edges`).",
    )
    pooled_max = _OfStack(
        lambda s: s.pooled_max, "Each head's map block-maxed, like :attr:`pooled`."
    )

    @property
    def pool_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(row edges, key edges)`` of the pooled bins."""
        s = self.stack()
        return s.pool_rows, s.pool_cols

    def __repr__(self) -> str:
        s = self.stack()
        return (
            f"Scan({self.data.metadata.get('model_name')!r}, {len(s.query):,} tokens, "
            f"{len(s.layers)} layers x {len(s.heads)} heads, {self.data.metadata.get('method')})"
        )

    def head_metrics(
        self, names: Sequence[str] | str | None = None, *, kind: str | None = None
    ) -> pd.DataFrame:
        """The frame ``inspect(text).head_metrics()`` gives, from the scan (within 1e-4)."""
        chosen = [names] if isinstance(names, str) else (list(names) if names else None)
        return _long.scan_head_metrics(self.stack(kind), chosen)

    def sinks(self, *, kind: str | None = None) -> pd.DataFrame:
        """Attention sinks per head; see :func:`inspector.analysis.scan_tables.sink_table`."""
        return _long.sink_table(self.stack(kind))

    def layer_sinks(self, *, kind: str | None = None) -> pd.DataFrame:
        """Sink statistics averaged over each layer's heads."""
        return _long.layer_sinks(self.stack(kind))

    def sink_curve(self, bins: int = 32, *, kind: str | None = None) -> pd.DataFrame:
        """The first-k share as a function of query position (``bins`` position bins)."""
        return _long.sink_curve(self.stack(kind), bins)

    def spans(self, position: int = -1, k: int = 8, *, kind: str | None = None) -> pd.DataFrame:
        """What ``position`` reads: each head's top ``k`` keys merged into spans, with text."""
        return _long.context_spans(self.stack(kind), position, k)

    def table(self, name: str = "heads", *, kind: str | None = None) -> pd.DataFrame:
        """One of the scan's tables as a flat frame: ``heads`` (metrics and sinks per head),
        ``topk``, ``rows`` (long: ``layer, head, query_pos, key_pos, weight``), ``sink_curve``
        or ``spans`` (of the last kept row)."""
        s = self.stack(kind)
        if name == "heads":
            metrics = self.head_metrics(kind=kind)
            sinks = self.sinks(kind=kind)
            extra = [c for c in sinks.columns if c not in metrics.columns]
            return metrics.join(sinks[extra]).reset_index()
        if name == "topk":
            return self.topk if kind is None else _long.topk_frame(s)
        if name == "rows":
            n_l, n_h, n_r, n_k = s.rows.shape
            return pd.DataFrame(
                {
                    "layer": np.repeat(np.asarray(s.layers, dtype=np.int16), n_h * n_r * n_k),
                    "head": np.tile(np.repeat(np.asarray(s.heads, dtype=np.int16), n_r * n_k), n_l),
                    "query_pos": np.tile(
                        np.repeat(np.asarray(s.row_positions, np.int32), n_k), n_l * n_h
                    ),
                    "key_pos": np.tile(np.arange(n_k, dtype=np.int32), n_l * n_h * n_r),
                    "weight": s.rows.ravel(),
                }
            )
        if name == "sink_curve":
            return self.sink_curve(kind=kind)
        if name == "spans":
            if not s.row_positions:
                raise InputError("this scan kept no rows; scan with rows=[-1]")
            return self.spans(s.row_positions[-1], kind=kind)
        raise InputError(f"unknown table {name!r}; one of heads, topk, rows, sink_curve, spans")

    def table_estimate(
        self,
        name: str | Sequence[str] = "heads",
        *,
        kind: str | None = None,
        max_memory: int | str | None = None,
    ) -> _memory.MemoryEstimate:
        """What building :meth:`table` ``name`` (or several tables, held together) and writing
        it allocates, against the budget: a row of ``topk`` / ``rows`` is 16 bytes, plus its
        mask or index temporaries."""
        s = self.stack(kind)
        parts = {"writer": _frames.STREAM_FIXED_BYTES}
        for table in [name] if isinstance(name, str) else name:
            rows, per_row = len(s.layers) * len(s.heads), 256
            if table == "topk" and s.topk_pos is not None:
                rows, per_row = int(s.topk_pos.size), TOPK_ROW_BYTES + 1
            elif table == "rows":
                rows, per_row = int(s.rows.size), TOPK_ROW_BYTES + 8
            parts[f"{table} table ({rows:,} rows)"] = rows * per_row
        what = "the scan's " + (name if isinstance(name, str) else ", ".join(name)) + " tables"
        return _memory.estimate(what, parts, MemoryLimit.of(max_memory))

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        kind: str | None = None,
        force: bool = False,
        max_memory: int | str | None = None,
    ) -> list[Path]:
        """Write the scan's tables as one set: ``heads`` to ``path`` (``.parquet`` or ``.csv``),
        the kept rows and the top-k keys beside it (:func:`scan_files`), each when the scan has
        them. Every file is new or none changed; a sidecar of an earlier scan that this one
        lacks is removed with the write, so the files on disk are always one scan's.
        ``max_memory``: the tables are held together while written; refused before any is
        built when :meth:`table_estimate` of them does not fit. Returns the written paths."""
        suffix = Path(path).suffix.lower()
        if suffix not in (".parquet", ".csv"):
            raise InputError(f"{path}: the scan's tables are written as .parquet or .csv")
        s = self.stack(kind)
        files = scan_files(path)
        present = {"heads": True, "rows": bool(s.row_positions), "topk": s.topk_pos is not None}
        chosen = [t for t in SCAN_TABLES if present[t]]
        self.table_estimate(chosen, kind=kind, max_memory=max_memory).check(TABLE_ADVICE)
        frames: dict[str | os.PathLike[str], pd.DataFrame] = {
            files[t]: self._frame(t, kind) for t in chosen
        }
        stale = [files[t] for t in SCAN_TABLES if not present[t]]
        return _frames.write_frames(frames, remove=stale, force=force)

    def _write(
        self,
        suffix: str,
        path: str | os.PathLike[str],
        table: str = "heads",
        *,
        kind: str | None = None,
        max_memory: int | str | None = None,
    ) -> Path:
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"{path}: expected a file name ending in {suffix}")
        self.table_estimate(table, kind=kind, max_memory=max_memory).check(TABLE_ADVICE)
        return _frames.write_frame(self._frame(table, kind), path)

    to_parquet = suffixed(
        _write,
        ".parquet",
        """Write :meth:`table` (with the scan's metadata) to Parquet (``max_memory``: checked
        against :meth:`table_estimate` before the table is built).""",
    )
    to_csv = suffixed(
        _write, ".csv", """Write :meth:`table` to CSV (``max_memory``: as :meth:`to_parquet`)."""
    )

    def _frame(self, table: str, kind: str | None) -> pd.DataFrame:
        """:meth:`table` with the scan's metadata in ``attrs['inspector']``."""
        frame = self.table(table, kind=kind)
        meta = {k: v for k, v in self.data.metadata.items() if k != "versions"}
        meta.update(
            table=table, kind=self.stack(kind).kind, tokens=list(self.stack(kind).query.tokens)
        )
        import json

        frame.attrs["inspector"] = json.loads(json.dumps(meta, default=str))
        return frame

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        retrieval: RetrievalTables | None = None,
        max_memory: int | str | None = None,
    ) -> Report:
        """The scan page (pooled maps of every head, sinks, the row picker over the text);
        add a :class:`RetrievalHeads` result to show its tables too (``max_memory``: the
        budget of building it, default what is free now)."""
        pool = int(self.data.metadata.get("pool") or 256)
        layout = ScanLayout(
            tuple(ScanPart(k, s.query, s.key, s.causal) for k, s in self.data.stacks.items()),
            self.layers,
            self.heads,
        )
        page = _render.scan_page_bytes(layout, pool)
        _memory.estimate("the scan page", {"page": page}, MemoryLimit.of(max_memory)).check(
            "Scan with a smaller pool= or fewer layers= / heads=, or raise max_memory="
        )
        rendered = _render.scan_report(
            self.data,
            title=title,
            retrieval=retrieval.heads if retrieval is not None else None,
            trials=retrieval.trials if retrieval is not None else None,
        )
        if path is not None:
            rendered.save(path)
        return rendered


def scan(
    model: LongModel,
    text: str,
    text_pair: str | None = None,
    *,
    rows: Sequence[int] | int | slice | None = None,
    topk: int | None = None,
    pool: int = 256,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    metrics: Sequence[str] | str | None = None,
    target: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    method: str = "auto",
    block_rows: int | None = None,
    sink_tokens: int = 4,
    max_memory: int | str | None = None,
    progress: bool | None = None,
) -> Scan:
    """Measure a long input in bounded memory, one block of query rows at a time.

    Never holds more than one layer's attention (``method="eager"``: hooks cut each eager
    layer into row blocks) or one block of rows (``"blockwise"``, the default where the
    model allows: ``sdpa`` runs the forward and the weights are recomputed from the
    post-rotary queries and keys, equal to eager within 1e-5).

    Args:
        model: a loaded model (``m.scan(...)`` passes itself), a name, a folder, ...
        text, text_pair, target, truncation, max_length: the input, as for
            :meth:`~inspector.LoadedModel.inspect`.
        rows: query positions whose exact rows are kept (default: the last; a list, a
            slice, ``[]`` for none).
        topk: keep the top-k keys of every row (``scan.topk``).
        pool: pooled maps have at most ``pool x pool`` blocks (mean and max).
        layers, heads: measure only these.
        metrics: registered head metrics to compute (default all).
        method: ``auto``, ``blockwise`` or ``eager``.
        block_rows: query rows per block (default: about 32 MB of float32 scratch).
        sink_tokens: first tokens counted by the sink statistics.
        max_memory: memory budget (refused before running when the estimate exceeds it).
        progress: a progress bar over layers on stderr (default: on a terminal; elsewhere
            a line every 30 s, see :mod:`inspector._progress`).

    Example:
        >>> s = m.scan(long_text, rows=[-1], topk=8)  # doctest: +SKIP
        >>> s.head_metrics().head()  # doctest: +SKIP
        >>> s.spans(-1)  # what the last token reads  # doctest: +SKIP
    """
    bundle = resolve_bundle(model)
    options = InputOptions(text_pair, target, truncation, max_length)
    layout = _scan.scan_layout(bundle, text, options, select=Selection.of(layers, heads))
    acc = ScanAccumulator(metrics, rows=rows, topk=topk, pool=pool, sink_tokens=sink_tokens)
    info = _scan.run_scan(
        bundle,
        layout,
        acc,
        method=method,
        block_rows=block_rows,
        max_memory=MemoryLimit.of(max_memory),
        progress=progress,
    )
    return Scan(acc.result(info))


def scan_of_capture(
    capture: Capture, *, rows: Sequence[int] | int | None = None, pool: int = 256
) -> Scan:
    """The :class:`Scan` statistics of a ready capture (reports of long inspections use it)."""
    return Scan(scan_capture(capture, rows=rows, pool=pool))


def estimate_memory(
    model: LongModel,
    text: str | None = None,
    *,
    n_tokens: int | None = None,
    what: str = "inspect",
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    dtype: str | None = None,
    max_new_tokens: int = 0,
    topk: int | None = None,
    rows: Sequence[int] | int | slice | None = None,
    pool: int = 256,
    max_memory: int | str | None = None,
) -> _memory.MemoryEstimate:
    """What a run would allocate, against the budget, without running anything.

    Args:
        model: a loaded model (or a name).
        text / n_tokens: the input, or just its length in tokens.
        what: ``inspect`` (the capture), ``frame`` (its long frame), ``generate`` (with
            ``max_new_tokens``) or ``scan`` (with its ``topk``, ``rows`` and ``pool``: the
            top-k keys of every row, and the table made of them, are most of a long scan).
        layers, heads, dtype: as for ``inspect``.
        max_memory: the budget (default: the memory available now, cgroup limits included).

    Example:
        >>> print(inspector.estimate_memory(m, n_tokens=4096))  # doctest: +SKIP
        inspect() of 4,096 tokens needs about 18.5 GB (...); budget 15.2 GB (...): does not fit
    """
    bundle = resolve_bundle(model)
    select, limit = Selection.of(layers, heads), MemoryLimit.of(max_memory)
    if (text is None) == (n_tokens is None):
        raise InputError("give the text or n_tokens=")
    n = len(encode(bundle, text)) if text is not None else int(n_tokens or 0)
    if n < 1:
        raise InputError(f"n_tokens must be positive, got {n_tokens!r}")
    if what not in ("inspect", "frame", "generate", "scan"):
        raise InputError(f"what must be inspect, frame, generate or scan, got {what!r}")
    if what == "scan":
        from ..capture.types import Tokens

        toks = Tokens(
            tuple(["t"] * n),
            np.zeros(n, np.int64),
            np.zeros(n, bool),
            np.zeros(n, np.int32),
            np.zeros(n, np.int8),
            np.full((n, 2), -1),
        )
        layout = ScanLayout(
            (ScanPart("self", toks, toks, bundle.architecture == "decoder"),),
            *select.resolve(bundle.n_layers, bundle.n_heads),
        )
        method = _scan.resolve_method(bundle, "auto")
        acc = ScanAccumulator(rows=rows, topk=topk, pool=pool)
        block = _scan.rows_per_block(len(layout.heads), n)
        return _scan.scan_estimate(
            bundle, layout, acc, method=method, block_rows=block, max_memory=limit
        )
    from ..capture.run import capture_estimate

    return capture_estimate(
        bundle,
        n,
        select=select,
        dtype=storage_dtype(dtype),
        new_tokens=max_new_tokens if what == "generate" else 0,
        frame=what == "frame",
        max_memory=limit,
    )


__all__ = [
    "TABLE_ADVICE",
    "LongModel",
    "Scan",
    "estimate_memory",
    "resolve_bundle",
    "scan",
    "scan_files",
    "scan_of_capture",
]
