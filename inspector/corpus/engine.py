"""The corpus engines that run a model: the atlas' local engine and the syntactic probe.

Texts from a :class:`~.sources.TextSource` run in right-padded batches
(:func:`inspector.capture.batch.forward_batch`); each input's unpadded attention is measured with
the metrics registry (:mod:`inspector.analysis.metrics`) and folded into a
:class:`~.aggregate.HeadAggregate`. The local engine checkpoints its aggregate atomically, so an
interrupted run resumes where it stopped without counting a text twice; :mod:`.ray_engine` runs
the same :func:`measure_batch` on Ray Data.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path
from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..capture.batch import forward_batch, plan_batches
from ..capture.tokenize import Encoded, encode
from ..capture.types import AttentionStack
from ..errors import InputError, InputTooLongError
from ..models.loading import ModelBundle
from .aggregate import DEFAULT_BINS, HeadAggregate, aggregate_values
from .atlas import Atlas
from .probe import (
    ProbeCounts,
    ProbeResult,
    gold_word_attention,
    probe_result,
    score_sentence,
    word_predictions,
)
from .sources import text_source
from .treebank import GoldSentence, read_treebank

CHECKPOINT_VERSION = 1
MetricFn = Callable[[AttentionStack], Mapping[str, np.ndarray]]
DistanceFn = Callable[[AttentionStack], np.ndarray]

#: Besides the registry's numeric metrics the atlas keeps ``sink_share`` (``metrics.sink_arrays``).
SINK_SHARE = _metrics.SINK_SHARE.name


def registry_metric_fn(names: Sequence[str] | None) -> tuple[tuple[str, ...], MetricFn]:
    """The metric names and a per-stack function from the metrics registry."""
    registry = _metrics
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
    def fn(stack: AttentionStack) -> np.ndarray:
        return np.asarray(_distances.head_distances(stack, method=method), dtype=np.float64)

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
    *,
    max_memory: Any = None,
    before_risky: Callable[[], None] | None = None,
) -> HeadAggregate:
    """Run one batch of raw items (texts; blanks and non-strings are skipped) and aggregate it.

    The batch runs in passes that fit the memory budget (:func:`~inspector.capture.batch.
    plan_batches`: split and sorted by length only when the whole batch does not fit);
    ``before_risky`` is called once first when a pass takes a large share of it (the local
    engine checkpoints there, so a kill loses nothing).
    """
    encoded: list[Encoded] = []
    skipped = 0
    for item in items:
        if not isinstance(item, str) or not item.strip():
            skipped += 1
            continue
        encoded.append(encode(bundle, item, max_length=spec.max_length, truncation=True))
    plan = plan_batches(bundle, [len(e) for e in encoded], max_memory=max_memory)
    if plan.risky and before_risky is not None:
        before_risky()
    values = np.full(
        (len(encoded), len(spec.metrics), bundle.n_layers, bundle.n_heads), np.nan, np.float64
    )
    dists: dict[int, np.ndarray] = {}
    for group in plan.groups:
        for i, cap in zip(group, forward_batch(bundle, [encoded[i] for i in group]), strict=True):
            stack = cap.stacks[spec.kind]
            arrays = metric_fn(stack)
            for m, name in enumerate(spec.metrics):
                values[i, m] = arrays[name]
            if spec.distances and distance_fn is not None:
                dists[i] = distance_fn(stack)
    return aggregate_values(
        values,
        spec.metrics,
        bins=spec.bins,
        distances=np.stack([dists[i] for i in sorted(dists)]) if dists else None,
        distances_enabled=spec.distances,
        n_tokens=sum(len(e) for e in encoded),
        n_truncated=sum(e.truncated for e in encoded),
        n_skipped=skipped,
    )


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


def resolve_spec(
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
    max_memory: Any = None,
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
        max_memory: the memory budget of a batch (default: what is available, cgroup limits
            included); batches that do not fit run in smaller passes, after a checkpoint.

    Returns:
        An :class:`Atlas`.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    source = text_source(texts, column=column)
    spec, metric_fn, distance_fn = resolve_spec(
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

            def save_first(done: tuple[HeadAggregate, int] = state) -> None:
                if checkpoint is not None and done[1] > n_done:
                    save_checkpoint(checkpoint, done[0], done[1], fingerprint)

            delta = measure_batch(
                bundle,
                chunk,
                spec,
                metric_fn,
                distance_fn,
                max_memory=max_memory,
                before_risky=save_first,
            )
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
    meta = atlas_metadata(bundle, spec, source.description, "local", batch_size)
    meta.update(
        seconds=round(seconds, 3), texts_per_second=round(new / seconds, 2) if seconds else None
    )
    meta["resumed_from"] = n_done
    require_texts(state[0], source.description)
    return Atlas.from_aggregate(state[0], meta)


def require_texts(agg: HeadAggregate, description: str) -> None:
    if agg.n_texts == 0:
        skipped = f" ({agg.n_skipped} skipped as empty or too long)" if agg.n_skipped else ""
        raise InputError(f"no text to measure in {description}{skipped}; give non-empty texts")


def atlas_metadata(
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


# ----------------------------------------------------------------------------- syntactic probe


def syntax_probe(
    bundle: ModelBundle,
    treebank: str | os.PathLike[str] | Sequence[GoldSentence],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    subtypes: bool = False,
    exclude: Sequence[str] = ("punct", "root"),
    max_length: int | None = None,
    progress: bool = False,
) -> ProbeResult:
    """Run the Clark et al. (2019) syntactic head probe on a CoNLL-U treebank.

    Args:
        bundle: a loaded model with a fast tokenizer.
        treebank: a ``.conllu`` path, or sentences from :func:`~.treebank.read_treebank`.
        batch_size: sentences per forward pass (sentences are batched by length).
        limit: use only the first ``limit`` sentences.
        subtypes: keep relation subtypes (``nmod:poss``) apart instead of folding them.
        exclude: relations not scored (default ``punct`` and ``root``, as Clark et al.).
        max_length: token limit; longer sentences are skipped and counted.
        progress: show a tqdm bar.

    Returns:
        A :class:`~.probe.ProbeResult`; ``result.table`` has one row per relation.

    Example:
        >>> r = syntax_probe(load_model("minilm"), "en_ewt-ud-dev.conllu")  # doctest: +SKIP
        >>> r.table.head()  # doctest: +SKIP
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(treebank, str | os.PathLike):
        sentences = list(read_treebank(treebank, limit=limit))
        source = str(treebank)
    else:
        sentences = list(treebank)[:limit]
        source = f"{len(sentences)} sentences"
    if not sentences:
        raise InputError(f"no sentences in {source}")
    excluded = set(exclude)
    kind = default_kind(bundle)
    n_l, n_h = bundle.n_layers, bundle.n_heads
    counts: dict[str, ProbeCounts] = {}
    skipped = {"too_long": 0, "unaligned": 0}
    encoded: list[tuple[GoldSentence, Encoded]] = []
    for sent in sentences:
        try:
            encoded.append((sent, encode(bundle, list(sent.words), max_length=max_length)))
        except InputTooLongError:
            skipped["too_long"] += 1
    encoded.sort(key=lambda pair: len(pair[1]))

    from tqdm.auto import tqdm

    bar = tqdm(total=len(encoded), unit=" sentences", disable=not progress, desc="probe")
    try:
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            captures = forward_batch(bundle, [e for _, e in part])
            for (sent, _), cap in zip(part, captures, strict=True):
                attn = gold_word_attention(cap.stacks[kind], len(sent.words))
                if attn is None:
                    skipped["unaligned"] += 1
                    continue
                score_sentence(sent, word_predictions(attn), counts, excluded, subtypes, n_l, n_h)
            bar.update(len(part))
    finally:
        bar.close()
    meta = {
        "model_name": bundle.name,
        "treebank": source,
        "n_sentences": len(sentences),
        "n_scored_sentences": len(encoded) - skipped["unaligned"],
        "skipped_too_long": skipped["too_long"],
        "skipped_unaligned": skipped["unaligned"],
        "excluded_relations": sorted(excluded),
        "subtypes": subtypes,
    }
    return probe_result(counts, n_l, n_h, meta)


__all__ = [
    "AtlasSpec",
    "load_checkpoint",
    "measure_batch",
    "run_atlas",
    "save_checkpoint",
    "syntax_probe",
]
