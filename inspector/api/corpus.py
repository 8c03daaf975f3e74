"""The facade over many inputs: metrics over texts, comparisons, the corpus atlas, the probe.

Every function takes a :data:`~inspector.api.model.ModelLike`. Results that can be shown get the
facade's convenience methods here (:class:`Atlas` and :class:`Comparison` add ``report()``), so
the lower layers' data classes never render themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from .. import frames as _frames
from ..analysis import distances as _distances
from ..analysis import metrics as _metrics
from ..capture.memory import MemoryLimit
from ..corpus import atlas as _atlas
from ..corpus import engine as _engine
from ..corpus import options as _options
from ..corpus import probe as _probe
from ..corpus.aggregate import DEFAULT_BINS
from ..errors import InputError
from ..explain import importance as _importance
from .model import LoadedModel, ModelLike, as_model, stacks_of
from .options import options_of
from .results import Atlas


def head_metrics(
    model: ModelLike,
    texts: Sequence[str] | str,
    names: Sequence[str] | str | None = None,
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    progress: bool | None = None,
    max_memory: int | str | None = None,
) -> pd.DataFrame:
    """Per-head metrics averaged over many texts: means, ``<metric>_std`` and ``n``.

    ``progress``: a bar over the texts on stderr (``None``: on a terminal; elsewhere a line
    every 30 s).
    ``max_memory``: the budget of each text's capture and its metrics (``"4GB"``; default:
    what is free then); a text that would not fit is refused with ``ResourceError`` before
    the model runs on it. The metrics take one layer at a time.

    Example:
        >>> inspector.head_metrics(m, ["The cat sat.", "A dog barked."])  # doctest: +SKIP
    """
    stacks = stacks_of(
        model, texts, kind, truncation, max_length, progress=progress, max_memory=max_memory
    )
    return _metrics.aggregate_head_metrics(stacks, names)


def head_similarity(
    model: ModelLike,
    texts: Sequence[str] | str,
    method: str = "js",
    *,
    kind: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    progress: bool | None = None,
    max_memory: int | str | None = None,
) -> pd.DataFrame:
    """Head-to-head distances averaged over many texts, square on ``(layer, head)``
    (``progress``, ``max_memory``: as :func:`head_metrics`)."""
    stacks = stacks_of(
        model, texts, kind, truncation, max_length, progress=progress, max_memory=max_memory
    )
    return _distances.mean_head_distances(stacks, method, max_memory=MemoryLimit.of(max_memory))


def head_importance(
    model: ModelLike,
    texts: Sequence[str] | str,
    *,
    target: Any = None,
    method: _importance.Method = "ablation",
    mode: _importance.AblationMode = "zero",
    batch_size: int = 73,
    per_text: bool = False,
    progress: bool | None = None,
    max_memory: int | str | None = None,
) -> pd.DataFrame:
    """Head importance on ``(layer, head)`` averaged over ``texts`` (ablation or gradient).

    Texts are tokenized as ``inspect`` does: one longer than the model accepts is refused.
    ``max_memory``: the budget of each pass (default: what is free then); ablation passes
    take as many rows as fit, one that cannot fit is refused with ``ResourceError``.
    See :func:`inspector.explain.importance.head_importance_many` and :class:`inspector.Target`.

    Example:
        >>> inspector.head_importance(m, sentences, method="gradient")  # doctest: +SKIP
    """
    if isinstance(texts, str):
        texts = [texts]
    return _importance.head_importance_many(
        as_model(model).bundle,
        list(texts),
        target=target,
        method=method,
        mode=mode,
        batch_size=batch_size,
        per_text=per_text,
        progress=progress,
        max_memory=MemoryLimit.of(max_memory),
    )


def atlas(
    model: ModelLike,
    texts: Any,
    *,
    engine: str = "local",
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
    progress: bool | None = None,
    limit: int | None = None,
    skip_bad_lines: bool = False,
    address: str | None = None,
    num_workers: int = 2,
    max_memory: int | str | None = None,
) -> Atlas:
    """Per-head attention statistics over a corpus, streamed in padded batches.

    Args:
        model: anything :func:`load` accepts. The Ray engine's workers load it by name, so pass
            a name or folder every worker can reach.
        texts: a list or iterable of texts, a text file (one per line), ``"file.csv:column"``,
            a Parquet file (``column=``), a ``.conllu`` treebank or a ``datasets`` dataset.
        engine: ``"local"`` or ``"ray"`` (Ray Data); both checkpoint and resume the same way.
        column, batch_size, max_length, metrics, kind, distances, bins, checkpoint, resume,
            checkpoint_every, progress, limit, skip_bad_lines: see
            :class:`inspector.corpus.options.AtlasOptions`. A checkpoint records its corpus (file
            path, size, the SHA-256 of its content and a hash of the texts counted); ``resume=True``
            refuses another or an edited corpus.
        address / num_workers: the Ray cluster and number of model replicas (``engine="ray"``).
        max_memory: memory budget of a batch (local engine; default: what is available):
            batches that would not fit run in smaller passes, after a checkpoint.

    Returns:
        An :class:`Atlas`: ``.summary`` (on ``(layer, head)``: metric, n, mean, std, 95%
        intervals, quantiles), ``.distances`` (mean head-distance matrix), ``.metadata``;
        ``.save(path)`` and ``.report(path)``.

    Example:
        >>> a = inspector.atlas("minilm", "corpus.txt", batch_size=32)  # doctest: +SKIP
        >>> a.metric("to_prev")  # doctest: +SKIP
    """
    if engine == "local" and address is not None:
        raise InputError(
            f"address={address!r} names a Ray cluster, which only engine='ray' uses (CLI: "
            f"--engine ray --address ...)"
        )
    if engine not in ("local", "ray"):
        raise InputError(f"engine must be 'local' or 'ray', not {engine!r}")
    options = options_of(_options.AtlasOptions, locals())
    if engine == "local":
        return Atlas(_engine.run_atlas(as_model(model).bundle, texts, options))
    from ..corpus.ray_engine import run_atlas_ray

    target: Any = model.bundle if isinstance(model, LoadedModel) else model
    return Atlas(run_atlas_ray(target, texts, options, address=address, num_workers=num_workers))


def read_atlas(path: str | os.PathLike[str]) -> Atlas:
    """Read an atlas written by :meth:`Atlas.save` / ``inspector atlas``."""
    return Atlas(_atlas.read_atlas(path))


def syntax_probe(
    model: ModelLike,
    conllu_path: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    subtypes: bool = False,
    exclude: Sequence[str] = ("punct", "root"),
    max_length: int | None = None,
    progress: bool | None = None,
    skip_bad_lines: bool = False,
    max_memory: int | str | None = None,
) -> _probe.ProbeResult:
    """Clark et al. (2019) syntactic head probe on a CoNLL-U treebank.

    For every dependency relation: the head whose most-attended other word is most often the
    syntactic head (or, transposed, the dependent), next to the best fixed-offset baseline.
    Sentences without heads (HEAD ``_``) or with a cycle are skipped and counted in
    ``metadata``. See :class:`inspector.corpus.options.ProbeOptions`. ``max_memory``: the
    budget of a batch (default: what is free then); batches run in passes that fit it.

    Example:
        >>> r = inspector.syntax_probe("minilm", "en_ewt-ud-dev.conllu")  # doctest: +SKIP
        >>> r.table  # doctest: +SKIP
    """
    options = options_of(_options.ProbeOptions, locals())
    return _engine.syntax_probe(as_model(model).bundle, conllu_path, options)


# ------------------------------------------------------------------------------------- files


def read_parquet(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a frame written by :meth:`Inspection.to_parquet` (metadata: ``attrs['inspector']``)."""
    return _frames.read_parquet(path)


__all__ = [
    "atlas",
    "head_importance",
    "head_metrics",
    "head_similarity",
    "read_atlas",
    "read_parquet",
    "syntax_probe",
]
