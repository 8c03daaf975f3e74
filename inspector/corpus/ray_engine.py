"""The atlas on Ray Data: the same batches and aggregates as the local engine, merged on the driver.

Texts become a Ray dataset; ``map_batches`` runs a pool of actors, each loading the model once
and returning one serialized :class:`~.aggregate.HeadAggregate` per batch
(:func:`~.engine.measure_batch`); the driver merges them as they stream in.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .._progress import show as show_progress
from ..errors import InputError
from ..models.loading import ModelBundle
from .aggregate import DEFAULT_BINS, HeadAggregate
from .atlas import Atlas
from .engine import (
    AtlasSpec,
    DistanceFn,
    MetricFn,
    atlas_metadata,
    measure_batch,
    registry_distance_fn,
    registry_metric_fn,
    require_texts,
    resolve_spec,
)
from .sources import TextSource, text_source


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

        from ..models.loading import load_model

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
    progress: bool | None = None,
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
    from ..models.loading import load_model

    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    spec, fn, dfn = resolve_spec(
        bundle, metrics, kind, max_length, distances, bins, metric_fn, distance_fn, metric_names
    )
    source = text_source(texts, column=column)
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    ctx = ray_data.DataContext.get_current()
    ctx.enable_progress_bars = show_progress(progress)
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
    meta = atlas_metadata(bundle, spec, source.description, "ray", batch_size)
    meta.update(
        seconds=round(seconds, 3),
        texts_per_second=round((agg.n_texts + agg.n_skipped) / seconds, 2) if seconds else None,
        num_workers=num_workers,
        num_gpus_per_worker=gpus,
        ray_address=address or "local",
    )
    require_texts(agg, source.description)
    return Atlas.from_aggregate(agg, meta)


__all__ = ["run_atlas_ray"]
