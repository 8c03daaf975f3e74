"""The atlas on Ray Data: the same batches and aggregates as the local engine, merged on the driver.

Texts become a Ray dataset; ``map_batches`` runs a pool of actors, each loading the model once
and returning one serialized :class:`~.aggregate.HeadAggregate` per batch
(:func:`~.engine.measure_batch`); the driver merges them as they stream in.

The driver reads the source itself (as the local engine does: line numbers, bad lines, the
same skipped counts), numbers every item and merges the batches strictly in source order (a
batch that arrives early waits), so the merged aggregate always covers exactly the first ``n``
items. With a checkpoint it saves that aggregate in the local engine's format, with the same
source guard (:mod:`.checkpoint`): a killed driver resumes with ``resume=True`` (CLI
``--engine ray --resume``), from a local or a Ray checkpoint alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .._progress import show as show_progress
from ..errors import CaptureError, InputError
from ..models.loading import ModelBundle
from .aggregate import HeadAggregate
from .atlas import Atlas
from .checkpoint import RunState, discard_checkpoint, open_run, save_checkpoint
from .engine import (
    AtlasSpec,
    DistanceFn,
    MetricFn,
    atlas_metadata,
    empty_aggregate,
    measure_batch,
    registry_distance_fn,
    registry_metric_fn,
    require_texts,
    resolve_spec,
)
from .options import AtlasOptions
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

        from ..models.loading import LoadOptions, load_model

        if threads:
            torch.set_num_threads(threads)
        if device is None and torch.cuda.is_available():
            device = "cuda"
        self.bundle = (
            model
            if isinstance(model, ModelBundle)
            else load_model(model, options=LoadOptions(device))
        )
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
        index = np.asarray(batch["i"], dtype=np.int64)  # which numbered items these were
        return {
            "aggregate": [agg.to_bytes()],
            "first": [int(index.min())],
            "last": [int(index.max())],
            "n": [len(index)],
        }


def run_atlas_ray(
    model: Any,
    texts: Any,
    options: AtlasOptions | None = None,
    *,
    num_workers: int = 2,
    num_gpus_per_worker: float | None = None,
    address: str | None = None,
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
        options: as :func:`~.engine.run_atlas` (:class:`~.options.AtlasOptions`; its
            ``max_memory`` is the local engine's): the driver checkpoints the merged aggregate
            (same file, same source guard), so a run killed with its driver continues with
            ``resume=True``.
        Other arguments: as :func:`~.engine.run_atlas`.
    """
    _check_address(address)  # before Ray and the model load: a wrong address fails at once
    try:
        import ray
        import ray.data as ray_data
    except ImportError as exc:
        raise InputError(
            "the Ray engine needs Ray Data: pip install 'attention-inspector[ray]'"
        ) from exc
    from ..models.loading import load_model

    options = options or AtlasOptions()
    bundle = model if isinstance(model, ModelBundle) else load_model(model)
    spec, _, _ = resolve_spec(bundle, options)
    source = text_source(texts, column=options.column, skip_bad_lines=options.skip_bad_lines)
    fingerprint = spec.fingerprint(bundle)
    state, it = open_run(source, empty_aggregate(bundle, spec), fingerprint, options)
    n_start, limit, checkpoint = state.n_done, options.limit, options.checkpoint
    if not ray.is_initialized():
        _connect(ray, address)
    ctx = ray_data.DataContext.get_current()
    ctx.enable_progress_bars = show_progress(options.progress)
    gpus = num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    # The driver reads the source (line numbers, bad lines, the source hash) and numbers the
    # items, so the workers' batches merge in source order and the merged prefix can be saved.
    if limit is not None:
        it = itertools.islice(it, max(limit - n_start, 0))
    items = list(it)
    ds = ray_data.from_items(
        [{"i": n_start + j, "text": t if isinstance(t, str) else ""} for j, t in enumerate(items)]
    )
    start = time.perf_counter()
    workers = {
        "model": model,
        "spec": spec,
        "metric_fn": options.metric_fn,
        "distance_fn": options.distance_fn,
        "device": None if gpus else "cpu",
        "threads": 1 if not gpus else None,
    }
    was_ordered = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    try:
        if items:
            out = ds.map_batches(
                _RayAtlasWorker,
                fn_constructor_kwargs=workers,
                batch_size=options.batch_size,
                batch_format="numpy",
                compute=ray_data.ActorPoolStrategy(size=num_workers),
                num_cpus=1,
                num_gpus=gpus,
            )
            rows: Iterator[Mapping[str, Any]] = iter(out.iter_rows())
        else:
            rows = iter(())
        state = _merge_in_order(
            rows, state, items, checkpoint, options.checkpoint_every, fingerprint, source
        )
    finally:
        ctx.execution_options.preserve_order = was_ordered
    seconds = time.perf_counter() - start
    if state.aggregate.n_texts == 0 and n_start == 0:
        discard_checkpoint(checkpoint)  # nothing measured: leave no checkpoint to resume
    require_texts(state, source.description)
    if checkpoint is not None and state.n_done > n_start:
        save_checkpoint(checkpoint, state, fingerprint, source)
    meta = atlas_metadata(bundle, spec, source, "ray", options.batch_size, state)
    new = state.n_done - n_start
    meta.update(
        seconds=round(seconds, 3),
        texts_per_second=round(new / seconds, 2) if seconds else None,
        num_workers=num_workers,
        num_gpus_per_worker=gpus,
        ray_address=address or "local",
        resumed_from=n_start,
    )
    return Atlas.from_aggregate(state.aggregate, meta)


def _check_address(address: str | None, timeout: float = 5.0) -> None:
    """Refuse an address no Ray cluster answers at, in one line, before Ray retries for minutes.

    ``None``, ``"auto"`` and ``"local"`` are Ray's own; ``HOST:PORT`` (a head's GCS port) and
    ``ray://HOST:PORT`` (Ray Client) must name a port that accepts a connection.
    """
    if address is None or address in ("auto", "local"):
        return
    if not isinstance(address, str):
        raise InputError(f"address must be a string such as 'HEAD:6379', not {address!r}")
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")  # an IPv6 host in brackets
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"Ray address {address!r} is not HOST:PORT (a head's port, 'ray start --head' "
            f"prints it), ray://HOST:PORT (Ray Client) or auto"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(
            f"no Ray cluster answers at {address} ({reason}); start one with 'ray start --head' "
            f"and pass the address it prints, or leave out the address to run Ray locally"
        ) from exc


def _connect(ray: Any, address: str | None) -> None:
    """``ray.init`` on ``address``, its refusals (no cluster, a bad address, a missing Ray
    Client, a wrong token) as one :class:`InputError` line."""
    try:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, TimeoutError, ValueError, ray.exceptions.RayError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        where = f"the Ray cluster at {address}" if address else "Ray"
        explicit = address not in (None, "auto", "local")
        if explicit and isinstance(exc, ConnectionError) and not _token_mode():
            reason += (  # Ray looks for a token by itself only when it finds the cluster itself
                "; a cluster with token authentication (the default of 'ray start --head') "
                "also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or "
                "~/.ray/auth_token) in this environment"
            )
        raise InputError(f"could not connect to {where}: {reason}") from exc


def _token_mode() -> bool:
    return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"


def _merge_in_order(
    rows: Iterator[Mapping[str, Any]],
    state: RunState,
    items: Sequence[Any],
    checkpoint: str | os.PathLike[str] | None,
    every: float,
    fingerprint: Mapping[str, Any],
    source: TextSource,
) -> RunState:
    """Merge numbered batches strictly in source order, checkpointing the merged prefix."""
    n_start = state.n_done
    pending: dict[int, tuple[HeadAggregate, int]] = {}
    last_save = time.perf_counter()
    try:
        for row in rows:
            first, last, n = int(row["first"]), int(row["last"]), int(row["n"])
            if last - first + 1 != n:
                raise CaptureError(
                    f"Ray handed back a batch of non-consecutive texts ({n} texts from {first} "
                    f"to {last}); checkpointed runs need Ray Data's preserve_order"
                )
            pending[first] = (HeadAggregate.from_bytes(row["aggregate"]), n)
            while state.n_done in pending:
                delta, count = pending.pop(state.n_done)
                offset = state.n_done - n_start
                state = state.advanced(delta, items[offset : offset + count])
            if checkpoint is not None and time.perf_counter() - last_save >= every:
                save_checkpoint(checkpoint, state, fingerprint, source)
                last_save = time.perf_counter()
    except BaseException:
        if checkpoint is not None and state.n_done > n_start:
            with contextlib.suppress(Exception):  # the first error is the one to report
                save_checkpoint(checkpoint, state, fingerprint, source)
        raise
    if pending or state.n_done != n_start + len(items):
        raise CaptureError(
            f"Ray returned {state.n_done - n_start} of {len(items)} texts in order; rerun with "
            f"resume=True to continue from the checkpoint"
        )
    return state


__all__ = ["run_atlas_ray"]
