"""The corpus engines that run a model: the atlas' local engine and the syntactic probe.

Texts from a :class:`~.sources.TextSource` run in right-padded batches
(:func:`inspector.capture.batch.forward_batch`); each input's unpadded attention is measured with
the metrics registry (:mod:`inspector.analysis.metrics`) and folded into a
:class:`~.aggregate.HeadAggregate`. The local engine checkpoints its aggregate atomically, so an
interrupted run resumes where it stopped without counting a text twice; :mod:`.ray_engine` runs
the same :func:`measure_batch` on Ray Data. Checkpoints (:mod:`.checkpoint`) record the source
they read, so ``resume`` refuses an edited, reordered or different corpus.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._progress import bar as progress_bar
from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..capture.batch import forward_batch, plan_batches
from ..capture.memory import MemoryLimit
from ..capture.tokenize import Encoded, encode, text_problem, token_limit
from ..capture.types import AttentionStack
from ..errors import InputError, InputTooLongError
from ..models.loading import ModelBundle
from .aggregate import DEFAULT_BINS, HeadAggregate, aggregate_values
from .atlas import Atlas
from .checkpoint import (
    RunState,
    default_checkpoint_path,
    discard_checkpoint,
    load_checkpoint,
    open_run,
    save_checkpoint,
)
from .options import AtlasOptions, DistanceFn, MetricFn, ProbeOptions
from .probe import (
    ProbeCounts,
    ProbeResult,
    gold_word_attention,
    probe_predictions,
    probe_result,
    score_sentence,
)
from .sources import TextSource, text_source
from .treebank import NO_HEADS, NOT_A_TREE, GoldSentence, read_treebank

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
        n_layers, n_heads = bundle.stack_shape(self.kind)
        return {
            "model": bundle.name,
            "source": bundle.source,
            "n_layers": n_layers,
            "n_heads": n_heads,
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
    max_memory: MemoryLimit | None = None,
    before_risky: Callable[[], None] | None = None,
) -> HeadAggregate:
    """Run one batch of raw items and aggregate it.

    Skipped and counted: non-strings (unreadable lines among them), blank texts, texts of
    control characters or lone surrogates, and texts that tokenize to special tokens only
    (combining marks, variation selectors, NUL lines). Longer texts are truncated at the limit.

    The batch runs in passes that fit the memory budget (:func:`~inspector.capture.batch.
    plan_batches`: split and sorted by length only when the whole batch does not fit);
    ``before_risky`` is called once first when a pass takes a large share of it (the local
    engine checkpoints there, so a kill loses nothing).
    """
    encoded: list[Encoded] = []
    skipped = 0
    truncation = token_limit(bundle, spec.max_length) is not None
    for item in items:
        if not isinstance(item, str) or text_problem(item) is not None:
            skipped += 1
            continue
        e = encode(
            bundle, item, max_length=spec.max_length, truncation=truncation, require_words=False
        )
        if bool(np.all(e.tokens.special)):
            skipped += 1
            continue
        encoded.append(e)
    plan = plan_batches(bundle, [len(e) for e in encoded], max_memory=max_memory)
    if plan.risky and before_risky is not None:
        before_risky()
    n_layers, n_heads = bundle.stack_shape(spec.kind)
    values = np.full((len(encoded), len(spec.metrics), n_layers, n_heads), np.nan, np.float64)
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


# ----------------------------------------------------------------------------------- local engine


def _chunks(it: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def resolve_spec(
    bundle: ModelBundle, options: AtlasOptions
) -> tuple[AtlasSpec, MetricFn, DistanceFn | None]:
    """What ``options`` measure on ``bundle`` and the functions that measure it (the metrics
    registry's unless ``options.metric_fn`` / ``distance_fn`` replace them)."""
    metric_fn, distance_fn = options.metric_fn, options.distance_fn
    kind = options.kind or default_kind(bundle)
    allowed = (
        ("encoder", "decoder", "cross") if bundle.architecture == "encoder-decoder" else ("self",)
    )
    if kind not in allowed:
        raise InputError(f"kind={kind!r} does not exist for this model; use one of {allowed}")
    if metric_fn is None:
        names, metric_fn = registry_metric_fn(options.metrics)
    else:
        names = tuple(options.metric_names or options.metrics or ())
        if not names:
            raise InputError("a custom metric_fn needs metric_names=[...]")
    if options.distances and distance_fn is None:
        distance_fn = registry_distance_fn()
    spec = AtlasSpec(tuple(names), kind, options.max_length, options.bins, options.distances)
    return spec, metric_fn, distance_fn


def run_atlas(
    bundle: ModelBundle,
    texts: Any,
    options: AtlasOptions | None = None,
) -> Atlas:
    """Stream ``texts`` through ``bundle`` in padded batches and build the head atlas.

    Args:
        bundle: a loaded model.
        texts: anything :func:`text_source` accepts (list, iterable, file, ``FILE:COLUMN``,
            DataFrame, ``datasets`` dataset).
        options: what to read and measure, where to checkpoint (:class:`~.options.AtlasOptions`;
            default: its defaults).

    Returns:
        An :class:`Atlas`.
    """
    options = options or AtlasOptions()
    checkpoint, every = options.checkpoint, options.checkpoint_every
    source = text_source(texts, column=options.column, skip_bad_lines=options.skip_bad_lines)
    spec, metric_fn, distance_fn = resolve_spec(bundle, options)
    fingerprint = spec.fingerprint(bundle)
    state, it = open_run(source, empty_aggregate(bundle, spec), fingerprint, options)
    n_start = state.n_done
    limit = options.limit
    total = source.total if limit is None else min(limit, source.total or limit)
    if limit is not None:
        it = itertools.islice(it, max(limit - n_start, 0))

    start = time.perf_counter()
    last_save = start
    saved_here = False
    bar = progress_bar(
        total=total,
        initial=n_start,
        unit=" sentences",
        progress=options.progress,
        desc=f"atlas {bundle.name}",
    )
    try:
        for chunk in _chunks(it, options.batch_size):

            def save_first(done: RunState = state) -> None:
                # the state before this batch: every consumed item of it fully measured
                if checkpoint is not None and done.n_done > n_start:
                    save_checkpoint(checkpoint, done, fingerprint, source)

            delta = measure_batch(
                bundle,
                chunk,
                spec,
                metric_fn,
                distance_fn,
                max_memory=options.max_memory,
                before_risky=save_first,
            )
            state = state.advanced(delta, chunk)  # one atomic assignment
            bar.update(len(chunk))
            if checkpoint is not None and time.perf_counter() - last_save >= every:
                save_checkpoint(checkpoint, state, fingerprint, source)
                saved_here, last_save = True, time.perf_counter()
    except BaseException:
        if checkpoint is not None and state.n_done > n_start:
            with contextlib.suppress(Exception):  # the first error is the one to report
                save_checkpoint(checkpoint, state, fingerprint, source)
        raise
    finally:
        bar.close()
    if state.aggregate.n_texts == 0 and saved_here and n_start == 0:
        discard_checkpoint(checkpoint)  # nothing measured: leave no checkpoint to resume
    require_texts(state, source.description)
    if checkpoint is not None and state.n_done > n_start:
        save_checkpoint(checkpoint, state, fingerprint, source)
    seconds = time.perf_counter() - start
    new = state.n_done - n_start
    meta = atlas_metadata(bundle, spec, source, "local", options.batch_size, state)
    meta.update(
        seconds=round(seconds, 3), texts_per_second=round(new / seconds, 2) if seconds else None
    )
    meta["resumed_from"] = n_start
    return Atlas.from_aggregate(state.aggregate, meta)


def empty_aggregate(bundle: ModelBundle, spec: AtlasSpec) -> HeadAggregate:
    n_layers, n_heads = bundle.stack_shape(spec.kind)
    return HeadAggregate.empty(
        spec.metrics, n_layers, n_heads, bins=spec.bins, distances=spec.distances
    )


def require_texts(state: RunState, description: str) -> None:
    """Refuse a run that measured no text (nothing is written for it)."""
    agg = state.aggregate
    if agg.n_texts == 0:
        why = ""
        if agg.n_skipped:
            bad = f", {state.bad_lines} of them unreadable lines" if state.bad_lines else ""
            why = (
                f" ({agg.n_skipped} item(s) skipped as blank, control characters or special "
                f"tokens only{bad})"
            )
        raise InputError(f"no text to measure in {description}{why}; give non-empty texts")


def atlas_metadata(
    bundle: ModelBundle,
    spec: AtlasSpec,
    source: TextSource,
    engine: str,
    batch_size: int,
    state: RunState,
) -> dict[str, Any]:
    return {
        "model_name": bundle.name,
        "model_type": bundle.model_type,
        "architecture": bundle.architecture,
        "kind": spec.kind,
        "source": source.description,
        "n_bad_lines": state.bad_lines,
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
    options: ProbeOptions | None = None,
) -> ProbeResult:
    """Run the Clark et al. (2019) syntactic head probe on a CoNLL-U treebank.

    Args:
        bundle: a loaded model with a fast tokenizer.
        treebank: a ``.conllu`` path, or sentences from :func:`~.treebank.read_treebank`.
        options: batches (sentences are batched by length), ``limit``, ``subtypes``,
            ``exclude`` ... (:class:`~.options.ProbeOptions`; default: its defaults).

    Sentences whose HEAD column is ``_`` or whose heads hold a cycle are skipped and counted
    (``metadata["skipped_no_heads"]`` / ``["skipped_not_a_tree"]``); a treebank with no
    scorable sentence is an :class:`InputError`.

    Returns:
        A :class:`~.probe.ProbeResult`; ``result.table`` has one row per relation.

    Example:
        >>> r = syntax_probe(load_model("minilm"), "en_ewt-ud-dev.conllu")  # doctest: +SKIP
        >>> r.table.head()  # doctest: +SKIP
    """
    options = options or ProbeOptions()
    limit, max_length, batch_size = options.limit, options.max_length, options.batch_size
    if isinstance(treebank, str | os.PathLike):
        sentences = list(
            read_treebank(treebank, limit=limit, skip_bad_lines=options.skip_bad_lines)
        )
        source = str(treebank)
    else:
        sentences = list(treebank)[:limit]
        source = f"{len(sentences)} sentences"
    if not sentences:
        raise InputError(f"no sentences in {source}; give a CoNLL-U treebank with sentences")
    excluded = set(options.exclude)
    kind = default_kind(bundle)
    n_l, n_h = bundle.stack_shape(kind)
    counts: dict[str, ProbeCounts] = {}
    skipped = {"too_long": 0, "unaligned": 0, NO_HEADS: 0, NOT_A_TREE: 0}
    encoded: list[tuple[GoldSentence, Encoded]] = []
    for sent in sentences:
        problem = sent.problem
        if problem is not None:
            skipped[problem] += 1
            continue
        try:
            words = list(sent.words)
            encoded.append(
                (sent, encode(bundle, words, max_length=max_length, require_words=False))
            )
        except InputTooLongError:
            skipped["too_long"] += 1
    if not encoded:
        raise InputError(_nothing_to_score(source, len(sentences), skipped))
    encoded.sort(key=lambda pair: len(pair[1]))

    bar = progress_bar(
        total=len(encoded), unit=" sentences", progress=options.progress, desc="probe"
    )
    try:
        for start in range(0, len(encoded), batch_size):
            part = encoded[start : start + batch_size]
            plan = plan_batches(bundle, [len(e) for _, e in part], max_memory=options.max_memory)
            for group in plan.groups:
                captures = forward_batch(bundle, [part[i][1] for i in group])
                for i, cap in zip(group, captures, strict=True):
                    sent = part[i][0]
                    attn = gold_word_attention(cap.stacks[kind], len(sent.words))
                    if attn is None:
                        skipped["unaligned"] += 1
                        continue
                    pred, transposed = probe_predictions(attn)
                    score_sentence(
                        sent, pred, counts, excluded, options.subtypes, n_l, n_h, transposed
                    )
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
        "skipped_no_heads": skipped[NO_HEADS],
        "skipped_not_a_tree": skipped[NOT_A_TREE],
        "excluded_relations": sorted(excluded),
        "subtypes": options.subtypes,
    }
    return probe_result(counts, n_l, n_h, meta)


def _nothing_to_score(source: str, n: int, skipped: Mapping[str, int]) -> str:
    reasons = {
        NO_HEADS: "have no HEAD (the column is '_')",
        NOT_A_TREE: "are not trees (their heads form a cycle)",
        "too_long": "are longer than the model accepts",
    }
    parts = [f"{skipped[k]} {why}" for k, why in reasons.items() if skipped.get(k)]
    return (
        f"no sentence of {source} can be scored: of {n} sentence(s), {'; '.join(parts)}; give a "
        f"treebank with basic dependency trees (HEAD and DEPREL columns)"
    )


__all__ = [
    "AtlasOptions",
    "AtlasSpec",
    "ProbeOptions",
    "default_checkpoint_path",
    "empty_aggregate",
    "load_checkpoint",
    "measure_batch",
    "run_atlas",
    "save_checkpoint",
    "syntax_probe",
]
