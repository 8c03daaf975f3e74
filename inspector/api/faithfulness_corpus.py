"""``inspector.faithfulness``: the faithfulness scoreboard over a corpus, with progress and a
checkpoint to resume from, like the atlas (see :mod:`inspector.api.faithfulness` for the result
and one inspection's scores).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import Any

from .._progress import bar as progress_bar
from ..analysis import faithfulness as _f
from ..analysis.faithfulness_table import Faithfulness, concat
from ..capture.memory import MemoryLimit
from ..corpus.checkpoint import discard_checkpoint
from ..corpus.scoreboard import ScoreboardState, open_scoreboard, save_scoreboard
from ..corpus.sources import BadLine, text_source
from ..errors import InputError, InputTooLongError
from ..explain import faithfulness as _scoreboard
from ..explain.registry import ExplainRequest
from ..explain.target import Target
from .faithfulness_result import FaithfulnessResult, base_metadata
from .model import ModelLike, as_model


def _merge(meta: dict[str, Any], part: Faithfulness, index: int, text: str) -> None:
    """Add one text's counts and notes to the corpus metadata."""
    pm = part.metadata
    meta["texts"].append(text)
    meta["text_index"].append(index)
    meta["targets"].append(pm.get("target"))
    meta["skipped"].extend(pm.get("skipped") or [])
    target = str(pm.get("target"))
    if meta["n_texts"] == 0:
        meta["target"] = target
    elif meta["target"] != target:  # one token or class per text: say what they have in common
        meta["target"] = re.sub(r"of (token|class) '.*?'", r"of the explained \1", target)
    meta["n_texts"] += 1
    for key in (
        "n_tokens", "forward_rows", "forward_passes", "deletion_rows", "deletion_tokens",
        "run_tokens",
    ):  # fmt: skip
        meta[key] = meta.get(key, 0) + int(pm.get(key, 0))
    shared = meta.setdefault("prefix_tree", [])  # "used", or why a text's inputs ran one by one
    if pm.get("prefix_tree") is not None and pm["prefix_tree"] not in shared:
        shared.append(pm["prefix_tree"])
    for key in ("seconds", "deletion_seconds"):
        meta[key] = meta.get(key, 0.0) + float(pm.get(key, 0.0))
    totals = meta.setdefault("method_seconds", {})
    for name, sec in (pm.get("method_seconds") or {}).items():
        totals[name] = totals.get(name, 0.0) + float(sec)


def faithfulness(
    model: ModelLike,
    texts: Any,
    methods: Sequence[str] | str | None = None,
    *,
    target: Any = "auto",
    steps: _f.Steps = "k",
    only_positive: bool = True,
    column: str | None = None,
    limit: int | None = None,
    max_length: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: float = 30.0,
    progress: bool | None = None,
    max_memory: int | str | None = None,
    max_rows: int | None = None,
    skip_bad_lines: bool = False,
) -> FaithfulnessResult:
    """The faithfulness of every token-level explanation over a corpus: per text, the AOPC
    comprehensiveness, AOPC sufficiency and τ with leave-one-out of each method, and
    ``summary()`` with the mean and 95% interval per method and metric.

    Args:
        model: anything :func:`inspector.load` accepts.
        texts: a list of texts, a text file (one per line), ``FILE.csv:COLUMN``, Parquet, a
            ``.conllu`` treebank or a ``datasets`` dataset (see :func:`inspector.atlas`).
        methods, target, steps, only_positive, max_memory, max_rows: see
            :func:`inspection_faithfulness`.
        column: the text column of a table.
        limit: only the first ``limit`` items of the source.
        max_length: truncate texts to this many tokens (default: a text longer than the model
            takes is skipped and counted in ``metadata["n_too_long"]``).
        checkpoint / resume / checkpoint_every: save progress every ``checkpoint_every``
            seconds (and when interrupted) to ``checkpoint``; ``resume=True`` continues from it
            (the same settings and corpus, checked as the atlas checks them).
        progress: a bar over the texts (``None``: when stderr is a terminal).
        skip_bad_lines: count unreadable lines as skipped instead of stopping.

    Returns:
        A :class:`FaithfulnessResult`; ``text`` is each text's position in the source.

    Example:
        >>> r = inspector.faithfulness("smollm2", ["The cat sat on the mat."])  # doctest: +SKIP
        >>> r.summary()  # doctest: +SKIP
    """
    m = as_model(model)
    bundle = m.bundle
    budget = MemoryLimit.of(max_memory)
    names = _scoreboard.scored_methods(methods)
    _f.check_steps(steps)
    spec = Target.parse(target)
    source = text_source(texts, column=column, skip_bad_lines=skip_bad_lines)
    fingerprint = {
        "kind": "faithfulness",
        "model": bundle.name,
        "methods": names,
        "target": str(target),
        "steps": steps if isinstance(steps, str) else list(steps),
        "only_positive": bool(only_positive),
        "max_length": max_length,
    }
    state, items = open_scoreboard(
        source, fingerprint, checkpoint=checkpoint, resume=resume, limit=limit
    )
    base = base_metadata(bundle, names, target, steps, only_positive)
    meta: dict[str, Any] = {
        "texts": [], "text_index": [], "targets": [], "skipped": [], "n_texts": 0,
        "target": None, "n_skipped_texts": 0, "source": source.description,
        **{k: v for k, v in state.result.metadata.items() if k not in base}, **base,
    }  # fmt: skip
    parts: list[Faithfulness] = [state.result]
    total = source.total if limit is None else min(limit, source.total or limit)
    started = time.perf_counter()
    last_save = started
    n_done, digest, bad = state.n_done, state.digest, state.bad_lines
    before = float(meta.get("run_seconds", 0.0))

    def current() -> Faithfulness:
        meta.update(run_seconds=before + time.perf_counter() - started, n_items=n_done)
        meta["n_bad_lines"] = bad
        return concat(parts, meta)

    def save() -> None:
        if checkpoint is not None:
            snapshot = ScoreboardState(current(), n_done, digest, bad)
            save_scoreboard(checkpoint, snapshot, fingerprint, source)

    bar = progress_bar(total=total, desc="faithfulness", unit=" texts", progress=progress)
    try:
        with bar:
            bar.update(n_done)
            for item in items:
                if limit is not None and n_done >= limit:
                    break
                ins = None
                if isinstance(item, str) and item.strip():
                    try:
                        ins = m.inspect(
                            item, truncation=max_length is not None, max_length=max_length
                        )
                    except InputTooLongError:  # skipped and counted, as the probe does
                        meta["n_too_long"] = meta.get("n_too_long", 0) + 1
                if ins is not None:
                    request = ExplainRequest(ins.capture, "self", bundle, spec)
                    part = _scoreboard.score_request(
                        request, names, steps=steps, only_positive=only_positive, text=n_done,
                        max_memory=budget, max_rows=max_rows,
                    )  # fmt: skip
                    parts.append(part)
                    _merge(meta, part, n_done, item)
                else:
                    meta["n_skipped_texts"] += 1
                bad += isinstance(item, BadLine)
                digest = digest.copy().update((item,))
                n_done += 1
                bar.update(1)
                if checkpoint is not None and time.perf_counter() - last_save > checkpoint_every:
                    save()
                    last_save = time.perf_counter()
    except KeyboardInterrupt:
        save()
        raise
    if meta["n_texts"] == 0:
        discard_checkpoint(checkpoint)
        raise InputError(f"{source.description} has no text to score (all blank or skipped)")
    return FaithfulnessResult(current())


__all__ = ["faithfulness"]
