"""``Inspection.heads``, ``Inspection.views`` and ``Inspection.generation``: one object per concern.

Like pandas' accessors (``df.str``, ``df.dt``), each namespace holds the methods of one concern
and delegates to the layer that owns it; ``Inspection`` keeps its data and exports.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

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
from .explaining import InspectionLike, model_bundle


class _Namespace:
    def __init__(self, inspection: InspectionLike) -> None:
        self._ins = inspection

    def __repr__(self) -> str:
        public = [n for n in dir(type(self)) if not n.startswith("_")]
        return f"<{type(self).__name__.removesuffix('Namespace').lower()}: {', '.join(public)}>"


R = TypeVar("R")


def _capture_of(ins: InspectionLike) -> tuple[Any, ...]:
    return (ins.capture,)


def _with_vectors(ins: InspectionLike) -> tuple[Any, ...]:
    """The capture and its query/key vectors, recomputed by the model that made it."""
    bundle = model_bundle(ins.model, "the neuron view")
    return (ins.capture, *query_key_vectors(bundle, ins.capture))


class _OnCapture(Generic[R]):
    """A namespace method that is ``fn`` with this inspection's data as its first arguments
    (``leading``: the capture by default) and its part as the default ``kind``: one
    definition of the view's keywords, in ``fn``'s signature."""

    def __init__(
        self,
        fn: Callable[..., R],
        leading: Callable[[InspectionLike], tuple[Any, ...]] = _capture_of,
    ) -> None:
        self.fn, self.leading = fn, leading
        signature = inspect.signature(fn)
        keywords = [p for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
        self.signature = signature.replace(parameters=keywords)  # what the caller gives
        self.takes_kind = "kind" in self.signature.parameters

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ns: _Namespace | None, owner: type | None = None) -> Callable[..., R]:
        if ns is None:
            return self.fn
        ins = ns._ins

        @functools.wraps(self.fn)
        def run(**options: Any) -> R:
            self.signature.bind(**options)  # a wrong keyword: a TypeError naming it
            if self.takes_kind and options.get("kind") is None:
                options["kind"] = ins.kind
            return self.fn(*self.leading(ins), **options)

        run.__signature__ = self.signature  # type: ignore[attr-defined]
        run.__name__ = run.__qualname__ = self.name
        return run


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

    #: bertviz's head view. ``kind`` (encoder-decoder: ``encoder``/``decoder``/``cross``)
    #: defaults to this inspection's part, or all of them; see
    #: :func:`inspector.render.bertviz.head_view`.
    head = _OnCapture(_bertviz.head_view)
    #: bertviz's model view (every layer x head); see :func:`inspector.render.bertviz.model_view`.
    model = _OnCapture(_bertviz.model_view)
    #: bertviz's neuron view (query/key vectors, recomputed from the model on the same tokens);
    #: models whose vectors do not reproduce the weights (rotary embeddings) raise
    #: :class:`~inspector.errors.UnsupportedModelError`.
    neuron = _OnCapture(_bertviz.neuron_view, _with_vectors)


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
