"""The facade's :class:`Inspection`: one input's captured attention, with frames, exports, views.

Convenience methods (frames, exports, views, reports, metrics, explain methods) live here and
delegate to the layers below; the data classes of :mod:`inspector.capture.types` never render or
measure themselves.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import frames as _frames
from ..analysis import detectors as _detectors
from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..analysis import roles as _roles
from ..analysis import steps as _steps
from ..capture.types import AttentionStack, Capture, Tokens, kv_groups
from ..capture.vectors import query_key_vectors
from ..errors import InputError
from ..render import bertviz as _bertviz
from ..render import report as _report
from ..render.page import RenderedHTML, Report
from . import long as _long
from .explaining import ExplainMethods, HasBundle
from .results import Comparison, compare


class Inspection(ExplainMethods):
    """One input's captured attention, with frames, exports and views.

    For self-attention models ``tokens`` / ``attention`` describe the single stack. For
    encoder-decoder models use ``.encoder``, ``.decoder`` and ``.cross``, which are Inspections of
    one stack each (cross attention is ``(layer, head, decoder_query, encoder_key)``).
    """

    def __init__(
        self, capture: Capture, kind: str | None = None, *, model: HasBundle | None = None
    ) -> None:
        if not isinstance(capture, Capture):
            raise InputError("Inspection wraps a Capture; use LoadedModel.inspect(...)")
        if kind is None and not capture.is_encoder_decoder:
            kind = "self"
        if kind is not None and kind not in capture.stacks:
            raise InputError(f"no {kind!r} attention here; available: {list(capture.stacks)}")
        self.capture = capture
        self.kind = kind
        #: the model that made the capture (for :meth:`neuron_view` and the explain methods)
        self.model = model

    # ------------------------------------------------------------------ structure
    def _part(self, kind: str) -> Inspection:
        if not self.capture.is_encoder_decoder:
            raise InputError(
                f".{kind} is for encoder-decoder models; this model has self-attention "
                f"only: use .attention and .tokens"
            )
        return Inspection(self.capture, kind, model=self.model)

    @property
    def encoder(self) -> Inspection:
        return self._part("encoder")

    @property
    def decoder(self) -> Inspection:
        return self._part("decoder")

    @property
    def cross(self) -> Inspection:
        return self._part("cross")

    @property
    def stack(self) -> AttentionStack:
        if self.kind is None:
            raise InputError(
                "this is an encoder-decoder inspection: choose .encoder, .decoder or .cross first"
            )
        return self.capture.stacks[self.kind]

    @property
    def is_encoder_decoder(self) -> bool:
        return self.capture.is_encoder_decoder

    # ------------------------------------------------------------------ data
    @property
    def attention(self) -> np.ndarray:
        """float32 ``(layer, head, query, key)``, read-only, rows sum to 1."""
        return self.stack.weights

    @property
    def tokens(self) -> list[str]:
        """Query-side tokens as the tokenizer shows them."""
        return list(self.stack.query.tokens)

    @property
    def readable_tokens(self) -> list[str]:
        """Query-side tokens as the tokenizer decodes them, whitespace made visible
        (``Ġcapital`` → ``␣capital``, ``Ċ`` → ``⏎``); ``tokens`` keeps the raw ones."""
        return list(self.stack.query.readable or self.stack.query.tokens)

    @property
    def key_tokens(self) -> list[str]:
        return list(self.stack.key.tokens)

    @property
    def token_ids(self) -> np.ndarray:
        return self.stack.query.ids

    @property
    def special_mask(self) -> np.ndarray:
        return self.stack.query.special

    @property
    def word_ids(self) -> np.ndarray:
        return self.stack.query.word_ids

    @property
    def token_info(self) -> Tokens:
        return self.stack.query

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.capture.metadata)

    @property
    def layers(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].layers

    @property
    def heads(self) -> tuple[int, ...]:
        return self.capture.stacks[self.kind or "encoder"].heads

    # ------------------------------------------------------------------ generation / GQA
    @property
    def prompt_length(self) -> int:
        """Query positions before the first generated token (all of them for ``inspect``)."""
        return _steps.prompt_length(self.capture)

    @property
    def generated_mask(self) -> np.ndarray:
        """True for query tokens the model generated (decoder side for encoder-decoder)."""
        kind = self.kind or "decoder"
        return np.asarray(self.capture.stacks[kind].query.generated)

    @property
    def kv_groups(self) -> dict[int, tuple[int, ...]]:
        """Kept query heads by the key/value head they share (grouped-query attention)."""
        return kv_groups(self.capture, None if self.kind in (None, "encoder") else self.kind)

    def with_kv_head(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (any frame with a ``head`` column) plus a ``kv_head`` column after it."""
        if "head" not in frame.columns:
            raise InputError("with_kv_head() needs a frame with a 'head' column")
        kv = self.capture.metadata.get("kv_heads") or list(range(int(frame["head"].max()) + 1))
        out = frame.copy()
        out.insert(
            int(out.columns.get_loc("head")) + 1,  # type: ignore[arg-type]
            "kv_head",
            np.asarray(kv, dtype=np.int16)[out["head"].to_numpy(dtype=np.int64)],
        )
        return out

    def generation_steps(
        self,
        *,
        top_k: int = 3,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        kind: str | None = None,
        skip_special: bool = False,
        readable: bool = False,
    ) -> pd.DataFrame:
        """What each generation step attended to most (``readable``: tokens as the tokenizer
        decodes them); see :func:`inspector.analysis.steps.generation_steps`."""
        return _steps.generation_steps(
            self.capture,
            top_k=top_k,
            layers=layers,
            heads=heads,
            kind=kind,
            skip_special=skip_special,
            readable=readable,
        )

    def __repr__(self) -> str:
        m = self.capture.metadata
        parts = ", ".join(
            f"{k} {tuple(s.weights.shape)}"
            for k, s in self.capture.stacks.items()
            if self.kind in (None, k)
        )
        return f"Inspection({m.get('model_name')!r}, {parts})"

    # ------------------------------------------------------------------ frames
    def frame(
        self,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
        readable: bool = False,
        max_memory: int | str | None = None,
    ) -> pd.DataFrame:
        """Long tidy frame: ``layer, head, query_pos, key_pos, query_token, key_token, weight``.

        Encoder-decoder inspections (not narrowed to one part) add a leading ``kind`` column.
        ``level="word"`` merges sub-word pieces into words (rows still sum to 1).
        ``readable=True`` names tokens as the tokenizer decodes them (``␣capital``, ``⏎``)
        instead of the raw tokens (``Ġcapital``, ``Ċ``); the token columns are categorical, so
        the frame is no larger (only the category names change). :meth:`tokens_frame` has
        both per position. A frame that would not fit ``max_memory`` (default: the memory
        available) is refused before it is built; :meth:`to_parquet` streams any size.
        """
        return _frames.capture_frame(
            self.capture,
            kinds=self._kinds,
            layers=layers,
            heads=heads,
            level=level,  # type: ignore[arg-type]
            readable=readable,
            max_memory=max_memory,
        )

    @property
    def _kinds(self) -> list[str] | None:
        return None if self.kind is None else [self.kind]

    def tokens_frame(self) -> pd.DataFrame:
        """One row per token: position, token (raw), readable, id, word id, sequence, special,
        offsets."""
        return _frames.tokens_frame(self.stack.query)

    def to_parquet(
        self,
        path: str | os.PathLike[str],
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
        readable: bool = False,
    ) -> Path:
        """Write :meth:`frame` with its metadata to Parquet (read back with ``read_parquet``),
        streamed one layer at a time: it never builds the whole frame, at any length."""
        return self._write(path, ".parquet", layers, heads, level, readable)

    def to_csv(
        self,
        path: str | os.PathLike[str],
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        level: str = "token",
        readable: bool = False,
    ) -> Path:
        """Write :meth:`frame` to CSV for spreadsheets (streamed like :meth:`to_parquet`)."""
        return self._write(path, ".csv", layers, heads, level, readable)

    def _write(
        self,
        path: str | os.PathLike[str],
        suffix: str,
        layers: Sequence[int] | int | None,
        heads: Sequence[int] | int | None,
        level: str,
        readable: bool = False,
    ) -> Path:
        if Path(path).suffix.lower() != suffix:
            raise InputError(f"{path}: expected a file name ending in {suffix}")
        return _frames.write_capture_frame(
            self.capture,
            path,
            kinds=self._kinds,
            layers=layers,
            heads=heads,
            level=level,  # type: ignore[arg-type]
            readable=readable,
        )

    # ------------------------------------------------------------------ head analysis
    def head_metrics(self, names: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Per-head metrics indexed by ``(layer, head)``; see :mod:`inspector.metrics`."""
        return _metrics.head_metrics(self.stack, names)

    def head_roles(
        self, thresholds: _roles.RoleThresholds | None = None, **overrides: float
    ) -> pd.DataFrame:
        """Each head's role (previous, next, self, sink, broad, punctuation or other);
        ``overrides`` are :class:`~inspector.analysis.roles.RoleThresholds` fields."""
        return _roles.head_roles(self.head_metrics(), thresholds, **overrides)

    def layer_summary(self) -> pd.DataFrame:
        """Per-layer mean entropy / distance and the share of each head role."""
        return _roles.layer_summary(self.head_metrics())

    def detector_scores(self) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores of every head on this input."""
        return _detectors.detector_scores(self.stack)

    def head_similarity(self, method: str = "js") -> pd.DataFrame:
        """Distance between every pair of heads, square on ``(layer, head)`` (``js``/``cosine``)."""
        return _distances.head_distance_frame(self.stack, method)

    def head_clusters(
        self,
        method: str = "js",
        *,
        linkage: str = "average",
        n_clusters: int | None = None,
        threshold: float | None = None,
    ) -> pd.DataFrame:
        """Hierarchical clusters and dendrogram order of the heads (``linkage``: scipy's method;
        see :func:`inspector.analysis.distances.cluster_heads`)."""
        return _distances.cluster_heads(
            self.head_similarity(method), method=linkage, n_clusters=n_clusters, threshold=threshold
        )

    def head_embedding(self, method: str = "js") -> pd.DataFrame:
        """2-D classical MDS coordinates ``x, y`` of the heads, for plotting."""
        return _distances.head_embedding(self.head_similarity(method))

    def nearest_heads(
        self, layer: int, head: int, k: int = 5, *, method: str = "js"
    ) -> pd.DataFrame:
        """The ``k`` heads whose attention is closest to head ``(layer, head)``."""
        return _distances.nearest_heads(self.head_similarity(method), layer, head, k)

    # ------------------------------------------------------------------ views and reports
    def head_view(
        self,
        *,
        layer: int | None = None,
        heads: Sequence[int] | None = None,
        include_layers: Sequence[int] | None = None,
        sentence_b_start: int | bool | None = True,
        prettify_tokens: bool = True,
        precision: str = "uint8",
        kind: str | Sequence[str] | None = None,
    ) -> RenderedHTML:
        """bertviz's head view as a self-contained page (``_repr_html_``, ``save(path)``).

        ``kind`` (encoder-decoder: ``encoder``/``decoder``/``cross``) defaults to this
        inspection's part, or all of them; see :func:`inspector.render.bertviz.head_view`.
        """
        return _bertviz.head_view(
            self.capture,
            kind=self.kind if kind is None else kind,
            layer=layer,
            heads=heads,
            include_layers=include_layers,
            sentence_b_start=sentence_b_start,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )

    def model_view(
        self,
        *,
        include_layers: Sequence[int] | None = None,
        include_heads: Sequence[int] | None = None,
        sentence_b_start: int | bool | None = True,
        display_mode: str = "light",
        prettify_tokens: bool = True,
        precision: str = "uint8",
        kind: str | Sequence[str] | None = None,
    ) -> RenderedHTML:
        """bertviz's model view (every layer x head); see
        :func:`inspector.render.bertviz.model_view`."""
        return _bertviz.model_view(
            self.capture,
            kind=self.kind if kind is None else kind,
            include_layers=include_layers,
            include_heads=include_heads,
            sentence_b_start=sentence_b_start,
            display_mode=display_mode,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )

    def neuron_view(
        self,
        *,
        layer: int | None = None,
        head: int | None = None,
        sentence_b_start: int | bool | None = True,
        display_mode: str = "light",
        prettify_tokens: bool = True,
        precision: str = "uint8",
    ) -> RenderedHTML:
        """bertviz's neuron view (query/key vectors, recomputed from the model on the same
        tokens); models whose vectors do not reproduce the weights (rotary embeddings) raise
        :class:`~inspector.errors.UnsupportedModelError`."""
        queries, keys = query_key_vectors(self._bundle_for("neuron_view"), self.capture)
        return _bertviz.neuron_view(
            self.capture,
            queries,
            keys,
            layer=layer,
            head=head,
            sentence_b_start=sentence_b_start,
            display_mode=display_mode,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        title: str | None = None,
        precision: str = "uint8",
        head_view: Mapping[str, Any] | None = None,
        model_view: Mapping[str, Any] | None = None,
        scan: bool | None = None,
    ) -> Report:
        """Build the self-contained HTML report; write it to ``path`` when given.

        ``head_view`` / ``model_view``: options of those views (as :meth:`head_view`).
        ``scan``: build the scan page instead (pooled maps, sinks, the last row over the text;
        see :meth:`inspector.LoadedModel.scan`), which any browser draws at any length. ``None``
        (default) does so when the capture holds more than ``LONG_REPORT_CELLS`` (2**25)
        weights, where the full report's every-head maps would stall a browser tab.

        Example:
            >>> ins.report("reports/cat.html")  # doctest: +SKIP
        """
        if _long.wants_scan_page(self.capture, scan):
            return _long.capture_scan_report(self.capture, path, title=title, kind=self.kind)
        rendered = _report.build_report(
            self.capture,
            title=title,
            precision=precision,
            head_view=head_view,
            model_view=model_view,
        )
        if path is not None:
            rendered.save(path)
        return rendered

    def compare(self, other: Inspection) -> Comparison:
        """Head-by-head comparison with another inspection; see :func:`inspector.compare`."""
        return compare(self, other)


__all__ = ["Inspection"]
