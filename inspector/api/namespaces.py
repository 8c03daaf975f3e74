"""``Inspection.heads``, ``Inspection.views`` and ``Inspection.generation``: one object per concern.

Like pandas' accessors (``df.str``, ``df.dt``), each namespace holds the methods of one concern
and delegates to the layer that owns it; ``Inspection`` keeps its data and exports.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..analysis import detectors as _detectors
from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..analysis import roles as _roles
from ..analysis import steps as _steps
from ..capture.memory import MemoryLimit
from ..capture.types import kv_groups
from ..capture.vectors import query_key_vectors
from ..errors import InputError
from ..render import bertviz as _bertviz
from ..render.page import RenderedHTML
from .explaining import InspectionLike, model_bundle


class _Namespace:
    def __init__(self, inspection: InspectionLike) -> None:
        self._ins = inspection

    def __repr__(self) -> str:
        public = [n for n in dir(type(self)) if not n.startswith("_")]
        return f"<{type(self).__name__.removesuffix('Namespace').lower()}: {', '.join(public)}>"


class HeadsNamespace(_Namespace):
    """What each head does on this input (``ins.heads``): metrics, roles, detectors,
    similarity, clusters, and the key/value head groups of grouped-query attention."""

    def metrics(self, names: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Per-head metrics indexed by ``(layer, head)``; see :mod:`inspector.analysis.metrics`."""
        return _metrics.head_metrics(self._ins.stack, names)

    def roles(
        self, thresholds: _roles.RoleThresholds | None = None, **overrides: float
    ) -> pd.DataFrame:
        """Each head's role (previous, next, self, sink, broad, punctuation or other);
        ``overrides`` are :class:`~inspector.analysis.roles.RoleThresholds` fields."""
        return _roles.head_roles(self.metrics(), thresholds, **overrides)

    def layer_summary(self) -> pd.DataFrame:
        """Per-layer mean entropy / distance and the share of each head role."""
        return _roles.layer_summary(self.metrics())

    def detectors(self) -> pd.DataFrame:
        """Previous-token, duplicate-token and induction scores of every head on this input."""
        return _detectors.detector_scores(self._ins.stack)

    def similarity(
        self, method: str = "js", *, max_memory: int | str | None = None
    ) -> pd.DataFrame:
        """Distance between every pair of heads, square on ``(layer, head)`` (``js``/``cosine``;
        ``max_memory``: checked against :func:`~inspector.analysis.distances.distance_estimate`
        first)."""
        _distances.distance_estimate(self._ins.stack, method, MemoryLimit.of(max_memory)).check(
            _distances.DISTANCE_ADVICE
        )
        return _distances.head_distance_frame(self._ins.stack, method)

    def clusters(
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
            self.similarity(method), method=linkage, n_clusters=n_clusters, threshold=threshold
        )

    def embedding(self, method: str = "js") -> pd.DataFrame:
        """2-D classical MDS coordinates ``x, y`` of the heads, for plotting."""
        return _distances.head_embedding(self.similarity(method))

    def nearest(self, layer: int, head: int, k: int = 5, *, method: str = "js") -> pd.DataFrame:
        """The ``k`` heads whose attention is closest to head ``(layer, head)``."""
        return _distances.nearest_heads(self.similarity(method), layer, head, k)

    @property
    def kv_groups(self) -> dict[int, tuple[int, ...]]:
        """Kept query heads by the key/value head they share (grouped-query attention)."""
        kind = self._ins.kind
        return kv_groups(self._ins.capture, None if kind in (None, "encoder") else kind)

    def with_kv_head(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (any frame with a ``head`` column) plus a ``kv_head`` column after it."""
        if "head" not in frame.columns:
            raise InputError("with_kv_head() needs a frame with a 'head' column")
        kv = self._ins.capture.metadata.get("kv_heads") or list(range(int(frame["head"].max()) + 1))
        out = frame.copy()
        out.insert(
            int(out.columns.get_loc("head")) + 1,  # type: ignore[arg-type]
            "kv_head",
            np.asarray(kv, dtype=np.int16)[out["head"].to_numpy(dtype=np.int64)],
        )
        return out


class ViewsNamespace(_Namespace):
    """bertviz's views as self-contained pages (``ins.views``): ``head``, ``model``, ``neuron``.
    Each returns a :class:`~inspector.render.page.RenderedHTML` (``_repr_html_``, ``save``)."""

    def head(
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
        """bertviz's head view. ``kind`` (encoder-decoder: ``encoder``/``decoder``/``cross``)
        defaults to this inspection's part, or all of them; see
        :func:`inspector.render.bertviz.head_view`."""
        return _bertviz.head_view(
            self._ins.capture,
            kind=self._ins.kind if kind is None else kind,
            layer=layer,
            heads=heads,
            include_layers=include_layers,
            sentence_b_start=sentence_b_start,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )

    def model(
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
            self._ins.capture,
            kind=self._ins.kind if kind is None else kind,
            include_layers=include_layers,
            include_heads=include_heads,
            sentence_b_start=sentence_b_start,
            display_mode=display_mode,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )

    def neuron(
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
        bundle = model_bundle(self._ins.model, "the neuron view")
        queries, keys = query_key_vectors(bundle, self._ins.capture)
        return _bertviz.neuron_view(
            self._ins.capture,
            queries,
            keys,
            layer=layer,
            head=head,
            sentence_b_start=sentence_b_start,
            display_mode=display_mode,
            prettify_tokens=prettify_tokens,
            precision=precision,
        )


class GenerationNamespace(_Namespace):
    """What a ``generate()`` inspection generated and attended to (``ins.generation``)."""

    @property
    def prompt_length(self) -> int:
        """Query positions before the first generated token (all of them for ``inspect``)."""
        return _steps.prompt_length(self._ins.capture)

    @property
    def generated_mask(self) -> np.ndarray:
        """True for query tokens the model generated (decoder side for encoder-decoder)."""
        kind = self._ins.kind or "decoder"
        return np.asarray(self._ins.capture.stacks[kind].query.generated)

    def steps(
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
        options = _steps.StepOptions(
            top_k=top_k,
            layers=layers,
            heads=heads,
            kind=kind,
            skip_special=skip_special,
            readable=readable,
        )
        return _steps.generation_steps(self._ins.capture, options)


__all__ = ["GenerationNamespace", "HeadsNamespace", "ViewsNamespace"]
