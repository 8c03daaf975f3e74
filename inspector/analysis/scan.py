"""Statistics of a bounded scan, built a block of query rows at a time.

:class:`ScanAccumulator` is the consumer a scan feeds
(:class:`inspector.capture.types.BlockConsumer`): every ``(head, rows, key)`` block of every
kept layer updates

* the registered head metrics, through their row forms (:mod:`.rowmetrics`): sums of the
  per-row values and counts of the rows that count, so each metric ends as the same mean over
  rows the whole-map metric takes;
* the column mass (how much attention each key receives, summed over rows): the sink position
  and share of every head, exactly as :func:`.metrics.sink_arrays`;
* the share of each row on the first ``sink_tokens`` keys (attention sinks vs query position);
* exact rows at the requested query positions;
* the top-k keys of every row (when asked);
* each head's map pooled to at most ``pool x pool`` blocks: mean and max of every block;
* each head's attention mass by query-key distance, in log-2 bins (:func:`distance_edges`):
  how local a head is, from each row's mass at distance 0, 1, 2-3, 4-7, ... (the first
  ``sink_tokens`` keys left out: their share is ``first_share``, so the two add up to 1).

It never holds more than the block it is given; what it keeps grows with layers x heads x
tokens (never tokens²) and is estimated by :meth:`ScanAccumulator.bytes_needed` for the
pre-flight. :func:`scan_capture` feeds a ready capture through the same accumulator (reports of
long captures, tests). Pure numpy.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from ..capture.types import AttentionStack, Capture, ScanLayout, ScanPart, Tokens
from ..errors import CaptureError, InputError
from . import metrics as _metrics
from .rowmetrics import evaluate, row_form

#: Bytes a row of the top-k table holds (int16 layer and head, int32 positions, float32 weight).
TOPK_ROW_BYTES = 16

#: Keys counted as the "first tokens" of attention-sink statistics (StreamingLLM keeps 4).
SINK_TOKENS = 4
#: Rows handed to the metrics at once when a ready capture is fed through the accumulator.
CAPTURE_BLOCK_ROWS = 256


def pool_edges(n: int, pool: int) -> np.ndarray:
    """Bin edges cutting ``n`` positions into at most ``pool`` bins of equal size (the last one
    may be shorter): ``[0, s, 2s, ..., n]`` with ``s = ceil(n / pool)``."""
    size = max(1, math.ceil(n / max(1, pool)))
    return np.append(np.arange(0, n, size), n).astype(np.int64)


def _slice_text(rows: slice) -> str:
    parts = [rows.start, rows.stop] + ([rows.step] if rows.step is not None else [])
    return ":".join("" if p is None else str(p) for p in parts)


def check_row_slice(rows: slice) -> None:
    """Refuse a slice of query positions with non-integer bounds or a step of 0."""
    for name, value in (("start", rows.start), ("stop", rows.stop), ("step", rows.step)):
        if value is not None and (
            not isinstance(value, int | np.integer) or isinstance(value, bool)
        ):
            raise InputError(f"rows: the slice's {name} must be an integer, got {value!r}")
    if rows.step is not None and int(rows.step) == 0:
        raise InputError(
            f"rows={_slice_text(rows)}: a slice's step cannot be 0; use e.g. 0:100 (every row) "
            f"or 0:100:10 (every 10th)"
        )


def distance_edges(n: int) -> np.ndarray:
    """Log-2 bins of query-key distance for ``n`` positions: ``[0, 1, 2, 4, 8, ..., n]``, so bin
    ``j`` holds the distances ``edges[j] <= |query - key| < edges[j + 1]`` (the last one ends at
    ``n``, past the largest distance ``n - 1``)."""
    n = max(1, int(n))
    edges = [0, *(1 << i for i in range(max(1, (n - 1).bit_length())))]
    return np.asarray([e for e in edges if e < n] + [n], dtype=np.int64)


def resolve_rows(rows: Any, n: int, *, strict: bool = True) -> tuple[int, ...]:
    """Query positions from ``None`` (the last), an int, a list or a slice (negative from the end).

    ``strict=False`` drops positions past ``n`` instead of refusing them (the decoder and cross
    parts of an encoder-decoder scan, which have fewer rows than the encoder).
    """
    if rows is None:
        return (n - 1,)
    if isinstance(rows, slice):
        check_row_slice(rows)
        picked = tuple(range(n)[rows])
        if strict and not picked:
            raise InputError(
                f"rows={_slice_text(rows)} selects none of the {n} query positions; give a "
                f"slice within 0..{n - 1} (negative counts from the end), or rows=[] to keep none"
            )
        return tuple(sorted(picked))
    items = [rows] if isinstance(rows, int | np.integer) else list(rows)
    out: list[int] = []
    for r in items:
        if not isinstance(r, int | np.integer) or isinstance(r, bool):
            raise InputError(f"rows must be query positions (integers), got {r!r}")
        p = int(r) + n if int(r) < 0 else int(r)
        if not 0 <= p < n:
            if not strict:
                continue
            raise InputError(f"row {r} is out of range: the input has {n} query positions")
        if p not in out:
            out.append(p)
    return tuple(sorted(out))


@dataclass(frozen=True, eq=False)
class ScanStack:
    """What a scan measured on one attention kind.

    Attributes:
        kind / query / key / causal / layers / heads: as in an :class:`AttentionStack`.
        metrics: registered metric name -> ``(layer, head)`` float64 (NaN where undefined).
        key_mass: ``(layer, head, key)`` mean attention each key receives over all rows.
        first_share: ``(layer, head, query)`` each row's attention on the first
            ``sink_tokens`` keys.
        sink_tokens: how many first keys ``first_share`` counts.
        row_positions / rows: exact rows, ``(layer, head, len(row_positions), key)`` float32.
        topk_pos / topk_weight: ``(layer, head, query, k)`` top keys of every row (best first),
            or ``None``; slots past the keys a causal row sees hold position -1, weight 0.
        pool_rows / pool_cols: pooled-map bin edges; pooled_mean / pooled_max:
            ``(layer, head, row bins, column bins)``, float16 (within 0.05% of the exact block
            mean / max: they are for pictures).
        distance_edges / distance_mass: :func:`distance_edges` of the query length and
            ``(layer, head, bins)`` float64: the mean share of a row's attention at each
            distance bin (``|query - key|``), leaving out the first ``sink_tokens`` keys, so a
            head's bins plus its mean ``first_share`` make 1; or ``None`` (cross attention,
            where query and key positions are not one sequence).
    """

    kind: str
    query: Tokens
    key: Tokens
    causal: bool
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    metrics: Mapping[str, np.ndarray]
    key_mass: np.ndarray
    first_share: np.ndarray
    sink_tokens: int
    row_positions: tuple[int, ...]
    rows: np.ndarray
    topk_pos: np.ndarray | None
    topk_weight: np.ndarray | None
    pool_rows: np.ndarray
    pool_cols: np.ndarray
    pooled_mean: np.ndarray
    pooled_max: np.ndarray
    distance_edges: np.ndarray | None = None
    distance_mass: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_l, n_h, n_q, n_k = len(self.layers), len(self.heads), len(self.query), len(self.key)
        if (self.distance_edges is None) != (self.distance_mass is None):
            raise CaptureError(f"scan {self.kind}: distance_edges and distance_mass go together")
        checks = {
            "key_mass": (self.key_mass, (n_l, n_h, n_k)),
            "first_share": (self.first_share, (n_l, n_h, n_q)),
            "rows": (self.rows, (n_l, n_h, len(self.row_positions), n_k)),
            "pooled_mean": (
                self.pooled_mean,
                (n_l, n_h, len(self.pool_rows) - 1, len(self.pool_cols) - 1),
            ),
        }
        if self.distance_edges is not None and self.distance_mass is not None:
            bins = len(self.distance_edges) - 1
            checks["distance_mass"] = (self.distance_mass, (n_l, n_h, bins))
        for name, (arr, shape) in checks.items():
            if arr.shape != shape:
                raise CaptureError(
                    f"scan {self.kind}: {name} has shape {arr.shape}, expected {shape}"
                )
        for name, value in self.metrics.items():
            if value.shape != (n_l, n_h):
                raise CaptureError(f"scan {self.kind}: metric {name} has shape {value.shape}")
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))

    @property
    def n_query(self) -> int:
        return len(self.query)

    def sink_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sink_pos, sink_share)`` per head, as :func:`.metrics.sink_arrays` on the full map."""
        pos = self.key_mass.argmax(axis=-1)
        return pos, np.take_along_axis(self.key_mass, pos[..., None], axis=-1)[..., 0]


@dataclass(frozen=True, eq=False)
class ScanData:
    """A scan's statistics by attention kind, plus the capture metadata."""

    stacks: Mapping[str, ScanStack]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stacks:
            raise CaptureError("a scan needs at least one attention kind")
        object.__setattr__(self, "stacks", MappingProxyType(dict(self.stacks)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def is_encoder_decoder(self) -> bool:
        return "self" not in self.stacks

    def stack(self, kind: str | None = None) -> ScanStack:
        kind = kind or ("encoder" if self.is_encoder_decoder else "self")
        if kind not in self.stacks:
            raise InputError(f"no {kind!r} attention in this scan; it has {list(self.stacks)}")
        return self.stacks[kind]


class _Part:
    """The running sums of one attention kind."""

    def __init__(
        self, part: ScanPart, acc: ScanAccumulator, n_l: int, n_h: int, strict: bool
    ) -> None:
        n_q, n_k = part.shape
        self.part = part
        aligned = part.kind != "cross" and n_q == n_k
        ctx = _metrics.MetricContext.from_tokens(part.query, part.key if not aligned else None)
        from dataclasses import replace

        self.ctx = replace(ctx, aligned=aligned, causal=bool(part.causal and aligned))
        self.sums = {n: np.zeros((n_l, n_h)) for n in acc.row_metrics}
        self.counts = {n: np.zeros(n_l, dtype=np.int64) for n in acc.row_metrics}
        self.nan = {n: False for n in acc.row_metrics}
        self.whole = {n: np.full((n_l, n_h), np.nan) for n in acc.whole_metrics}
        self.key_sum = np.zeros((n_l, n_h, n_k), dtype=np.float32)
        self.first = np.zeros((n_l, n_h, n_q), dtype=np.float32)
        self.row_positions = resolve_rows(acc.rows_spec, n_q, strict=strict)
        self.row_index = {p: i for i, p in enumerate(self.row_positions)}
        self.rows = np.zeros((n_l, n_h, len(self.row_positions), n_k), dtype=np.float32)
        k = acc.topk
        self.topk_pos = np.full((n_l, n_h, n_q, k), -1, dtype=np.int32) if k else None
        self.topk_weight = np.zeros((n_l, n_h, n_q, k), dtype=np.float32) if k else None
        self.pool_rows = pool_edges(n_q, acc.pool)
        self.pool_cols = pool_edges(n_k, acc.pool)
        shape = (n_l, n_h, len(self.pool_rows) - 1, len(self.pool_cols) - 1)
        # Kept as float16 (3 significant digits: they are for pictures), which halves a cost of
        # O(layers x heads x pool²); each layer is summed in float32 while its rows arrive.
        self.pool_mean = np.zeros(shape, dtype=np.float16)
        self.pool_max = np.zeros(shape, dtype=np.float16)
        self.cells = np.outer(np.diff(self.pool_rows), np.diff(self.pool_cols)).astype(np.float32)
        self.open: dict[int, tuple[np.ndarray, np.ndarray, list[int]]] = {}
        self.row_size = int(self.pool_rows[1] - self.pool_rows[0]) if n_q else 1
        # distance bins: only where query and key positions are one sequence
        self.dist_edges = distance_edges(n_q) if aligned else None
        bins = 0 if self.dist_edges is None else len(self.dist_edges) - 1
        self.dist = np.zeros((n_l, n_h, bins)) if aligned else None

    def layer_pool(self, li: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The float32 sums, maxes and row count of layer ``li``'s pooled map while it fills."""
        if li not in self.open:
            shape = self.pool_mean.shape[1:]
            self.open[li] = (np.zeros(shape, np.float32), np.zeros(shape, np.float32), [0])
        return self.open[li]

    def close_pool(self, li: int) -> None:
        """Store layer ``li``'s pooled mean and max (float16) and drop its float32 sums."""
        sums, maxes, _ = self.open.pop(li)
        sums /= self.cells
        self.pool_mean[li] = sums
        self.pool_max[li] = maxes


class ScanAccumulator:
    """The block consumer of a scan: head metrics, sinks, rows, top-k and pooled maps.

    Args:
        metrics: registered metric names (default: all).
        rows: query positions whose exact rows are kept: ``None`` (the last one), an int, a
            list or a slice; ``[]`` keeps none.
        topk: keep the top-k keys of every row (``None``: no top-k).
        pool: pooled maps have at most ``pool x pool`` blocks.
        sink_tokens: first keys counted by ``first_share``.
    """

    def __init__(
        self,
        metrics: Sequence[str] | str | None = None,
        *,
        rows: Any = None,
        topk: int | None = None,
        pool: int = 256,
        sink_tokens: int = SINK_TOKENS,
    ) -> None:
        names = _metrics._names(metrics)
        if topk is not None and (not isinstance(topk, int) or isinstance(topk, bool) or topk < 1):
            raise InputError(f"topk must be a positive integer or None, got {topk!r}")
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1:
            raise InputError(f"pool must be a positive integer, got {pool!r}")
        if not isinstance(sink_tokens, int) or sink_tokens < 1:
            raise InputError(f"sink_tokens must be a positive integer, got {sink_tokens!r}")
        forms = {n: row_form(_metrics.METRICS[n]) for n in names}
        self.names = names
        self.forms = {n: f for n, f in forms.items() if f is not None}
        self.row_metrics = list(self.forms)
        self.whole_metrics = [n for n in names if forms[n] is None]
        self.wants_full_layers = bool(self.whole_metrics)
        if isinstance(rows, slice):
            check_row_slice(rows)  # before the model runs
        self.rows_spec = rows
        self.topk = topk
        self.pool = pool
        self.sink_tokens = sink_tokens
        self.parts: dict[str, _Part] = {}
        self.layout: ScanLayout | None = None
        self.saw_full_layers = False
        self.finished = False

    def bytes_needed(self, layout: ScanLayout, block_rows: int) -> int:
        """What the accumulator keeps (and its per-block scratch), for the memory pre-flight."""
        n_l, n_h = len(layout.layers), len(layout.heads)
        total = 0
        for i, part in enumerate(layout.parts):
            n_q, n_k = part.shape
            n_rows = len(resolve_rows(self.rows_spec, n_q, strict=i == 0))
            bins = (len(pool_edges(n_q, self.pool)) - 1) * (len(pool_edges(n_k, self.pool)) - 1)
            total += n_l * n_h * (n_k * 4 + n_q * 4 + n_rows * n_k * 4 + bins * 4) + n_h * bins * 8
            # the top-k arrays, and the table made of them when it is read or written
            # (:func:`~inspector.analysis.scan_tables.topk_frame`: a row and a mask byte a slot)
            total += n_l * n_h * n_q * (self.topk or 0) * (8 + TOPK_ROW_BYTES + 1)
            total += n_l * n_h * len(distance_edges(n_q)) * 8
            total += 4 * n_h * min(block_rows, n_q) * n_k * 4  # per-block scratch
        return total

    def start(self, layout: ScanLayout) -> None:
        n_l, n_h = len(layout.layers), len(layout.heads)
        self.layout = layout
        self.parts = {
            p.kind: _Part(p, self, n_l, n_h, strict=i == 0) for i, p in enumerate(layout.parts)
        }

    def layer(self, kind: str, layer_position: int, weights: np.ndarray) -> None:
        """A whole layer's ``(head, query, key)`` weights: the metrics without a row form."""
        part = self.parts[kind]
        self.saw_full_layers = True
        for name in self.whole_metrics:
            value = np.asarray(_metrics.METRICS[name](weights[None], part.ctx), dtype=np.float64)
            part.whole[name][layer_position] = value.reshape(-1)

    def block(self, kind: str, layer_position: int, row_start: int, full: np.ndarray) -> None:
        part = self.parts[kind]
        li = layer_position
        _n_h, b, n_k = full.shape
        r1 = row_start + b
        positions = np.arange(row_start, r1)
        # a causal block is exactly 0 past its last row's key: measure only the keys before
        # (about half the work on average; every statistic below allows a narrower block)
        width = min(n_k, r1) if part.ctx.causal else n_k
        block = full[..., :width]
        for name, res in evaluate(self.forms, block, part.ctx, positions).items():
            if res is None:
                part.nan[name] = True
                continue
            values, included = res
            if included is None:
                part.sums[name][li] += values.sum(axis=-1, dtype=np.float64)
                part.counts[name][li] += b
            elif included.any():
                part.sums[name][li] += values[:, included].sum(axis=-1, dtype=np.float64)
                part.counts[name][li] += int(included.sum())
        part.key_sum[li, :, :width] += block.sum(axis=1, dtype=np.float64)
        part.first[li, :, row_start:r1] = block[..., : self.sink_tokens].sum(axis=-1)
        for p in part.row_positions:
            if row_start <= p < r1:
                part.rows[li, :, part.row_index[p]] = full[:, p - row_start]
        if self.topk:
            self._topk(part, li, row_start, block)
        self._pool(part, li, positions, block)
        if part.dist is not None:
            self._distance(part, li, row_start, full, width)

    def _distance(self, part: _Part, li: int, r0: int, full: np.ndarray, width: int) -> None:
        """Add each row's attention mass per distance bin (keys from ``sink_tokens`` on).

        Each row's keys are cut at ``query - edge`` (and ``query + edge`` when not causal) and
        the pieces summed in one ``np.add.reduceat`` pass over the flattened block (about the
        cost of one sum; a running sum would cost five), in float32 per row.
        """
        assert part.dist is not None and part.dist_edges is not None
        n_h, b, n_k = full.shape
        first = min(self.sink_tokens, width)
        e = part.dist_edges
        nb = len(e) - 1
        q = np.arange(r0, r0 + b)[:, None]
        # ascending cuts of each row: query - e_nb + 1, ..., query - e_0 + 1 (bins nb-1 .. 0)
        cuts = np.clip(q - e[::-1] + 1, first, width)
        bins = np.arange(nb - 1, -1, -1)
        if not part.part.causal and nb > 1:  # then query + e_2, ..., query + e_nb (bins 1 ..)
            cuts = np.concatenate([cuts, np.clip(q + e[2:], first, width)], axis=1)
            bins = np.concatenate([bins, np.arange(1, nb)])
        flat = full.reshape(n_h, b * n_k)
        size = flat.shape[1]
        at = (cuts + np.arange(b)[:, None] * n_k).ravel()
        sums = np.add.reduceat(flat, np.minimum(at, size - 1), axis=1)
        sums = sums.reshape(n_h, b, cuts.shape[1])[..., :-1]
        lo, hi = cuts[:, :-1], cuts[:, 1:]
        # the very last key of the block was cut off by keeping the cuts inside the array
        lost = np.zeros_like(lo, dtype=bool)
        lost[-1] = (hi[-1] == n_k) & (lo[-1] < n_k - 1)
        sums = np.where(hi > lo, sums, 0.0) + np.where(lost, flat[:, -1:, None], 0.0)
        np.add.at(part.dist[li].T, bins, sums.sum(axis=1, dtype=np.float64).T)  # bins may repeat

    def _topk(self, part: _Part, li: int, r0: int, block: np.ndarray) -> None:
        assert part.topk_pos is not None and part.topk_weight is not None
        n_k = block.shape[-1]
        k = min(self.topk or 1, n_k)
        if k < n_k:
            idx = np.argpartition(block, n_k - k, axis=-1)[..., n_k - k :]
        else:
            idx = np.broadcast_to(np.arange(n_k), block.shape).copy()
        vals = np.take_along_axis(block, idx, axis=-1)
        order = np.argsort(-vals, axis=-1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=-1)
        vals = np.take_along_axis(vals, order, axis=-1)
        if part.part.causal:
            rows = np.arange(r0, r0 + block.shape[1])[None, :, None]
            hidden = idx > rows
            idx = np.where(hidden, -1, idx)
            vals = np.where(hidden, 0.0, vals)
        part.topk_pos[li, :, r0 : r0 + block.shape[1], :k] = idx
        part.topk_weight[li, :, r0 : r0 + block.shape[1], :k] = vals

    def _pool(self, part: _Part, li: int, positions: np.ndarray, block: np.ndarray) -> None:
        edges = part.pool_cols[:-1]
        cols = edges[edges < block.shape[-1]]  # a narrowed causal block fills the first bins
        nc = len(cols)
        open_sums, open_maxes, done = part.layer_pool(li)
        sums, maxes = open_sums[..., :nc], open_maxes[..., :nc]
        done[0] += len(positions)
        self._pool_rows(part, positions, block, cols, sums, maxes)
        if done[0] >= part.part.shape[0]:
            part.close_pool(li)

    @staticmethod
    def _pool_rows(
        part: _Part,
        positions: np.ndarray,
        block: np.ndarray,
        cols: np.ndarray,
        sums: np.ndarray,
        maxes: np.ndarray,
    ) -> None:
        if part.row_size == 1:  # one row per bin: only the columns pool
            r0, r1 = int(positions[0]), int(positions[-1]) + 1
            sums[:, r0:r1] += np.add.reduceat(block, cols, axis=-1)
            maxes[:, r0:r1] = np.maximum(maxes[:, r0:r1], np.maximum.reduceat(block, cols, axis=-1))
            return
        bins = positions // part.row_size
        starts = np.flatnonzero(np.diff(bins, prepend=-1))
        ends = np.append(starts[1:], len(positions))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            t = int(bins[s])
            rows = block[:, s:e]  # contiguous row slices: far faster than reduceat over rows
            sums[:, t] += np.add.reduceat(rows.sum(axis=1), cols, axis=-1)
            maxes[:, t] = np.maximum(
                maxes[:, t], np.maximum.reduceat(rows.max(axis=1), cols, axis=-1)
            )

    def result(self, metadata: Mapping[str, Any] | None = None) -> ScanData:
        """The finished :class:`ScanData` (call after the scan ran)."""
        if self.layout is None:
            raise CaptureError("the scan never started")
        if self.finished:
            raise CaptureError("result() was taken already; run the scan again")
        self.finished = True
        layout = self.layout
        skipped = [n for n in self.whole_metrics if not self.saw_full_layers]
        if skipped:
            warnings.warn(
                f"metric(s) {skipped} have no row form, so the blockwise scan could not compute "
                f"them (they are NaN); register them with rows=... or scan with method='eager'",
                RuntimeWarning,
                stacklevel=2,
            )
        stacks = {}
        for kind, part in self.parts.items():
            n_q, _n_k = part.part.shape
            values: dict[str, np.ndarray] = {}
            for name in self.names:
                if name in part.whole:
                    values[name] = part.whole[name]
                    continue
                counts = part.counts[name][:, None]
                if part.nan[name]:
                    values[name] = np.full(part.sums[name].shape, np.nan)
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        values[name] = np.where(
                            counts > 0, part.sums[name] / np.maximum(counts, 1), np.nan
                        )
            for li in list(part.open):  # a layer whose rows did not all arrive
                part.close_pool(li)
            stacks[kind] = ScanStack(
                kind=kind,
                query=part.part.query,
                key=part.part.key,
                causal=part.part.causal,
                layers=layout.layers,
                heads=layout.heads,
                metrics=values,
                key_mass=part.key_sum / max(1, n_q),
                first_share=part.first,
                sink_tokens=self.sink_tokens,
                row_positions=part.row_positions,
                rows=part.rows,
                topk_pos=part.topk_pos,
                topk_weight=part.topk_weight,
                pool_rows=part.pool_rows,
                pool_cols=part.pool_cols,
                pooled_mean=part.pool_mean,
                pooled_max=part.pool_max,
                distance_edges=part.dist_edges,
                distance_mass=None if part.dist is None else part.dist / max(1, n_q),
            )
        meta = dict(layout.metadata)
        meta.update(metadata or {})
        meta.update(pool=self.pool, topk=self.topk, sink_tokens=self.sink_tokens)
        return ScanData(stacks, meta)


def replace_metadata(data: ScanData, **values: Any) -> ScanData:
    """``data`` with ``values`` added to its metadata."""
    meta = dict(data.metadata)
    meta.update(values)
    return ScanData(data.stacks, meta)


def scan_capture(
    capture: Capture,
    *,
    metrics: Sequence[str] | str | None = None,
    rows: Any = None,
    topk: int | None = None,
    pool: int = 256,
    sink_tokens: int = SINK_TOKENS,
    block_rows: int = CAPTURE_BLOCK_ROWS,
) -> ScanData:
    """The statistics of a ready capture, computed as a scan computes them (same accumulator)."""
    acc = ScanAccumulator(metrics, rows=rows, topk=topk, pool=pool, sink_tokens=sink_tokens)
    first: AttentionStack = next(iter(capture.stacks.values()))
    parts = tuple(ScanPart(kind, s.query, s.key, s.causal) for kind, s in capture.stacks.items())
    acc.start(ScanLayout(parts, first.layers, first.heads, capture.metadata))
    for kind, stack in capture.stacks.items():
        w = stack.weights
        for li in range(w.shape[0]):
            layer = np.asarray(w[li], dtype=np.float32)
            if acc.wants_full_layers:
                acc.layer(kind, li, layer)
            for r0 in range(0, layer.shape[1], block_rows):
                acc.block(kind, li, r0, layer[:, r0 : r0 + block_rows])
    return acc.result({"method": "capture"})


__all__ = [
    "SINK_TOKENS",
    "TOPK_ROW_BYTES",
    "ScanAccumulator",
    "ScanData",
    "ScanStack",
    "distance_edges",
    "pool_edges",
    "replace_metadata",
    "resolve_rows",
    "scan_capture",
]
