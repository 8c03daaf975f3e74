"""Which map to trust: the faithfulness of every token-level explanation, for one inspection or
over a corpus, as :class:`FaithfulnessResult` (frames, summary with 95% intervals, report).

:func:`faithfulness` runs over a corpus (any source :func:`inspector.atlas` reads: a list, a text
file, ``FILE.csv:COLUMN``, Parquet, a ``.conllu`` treebank, a dataset) with progress and a
checkpoint to resume from, like the atlas. :func:`inspection_faithfulness` scores one
inspection (``step=``: a token a decoder generated). The scores are ferret's AOPC
comprehensiveness, AOPC sufficiency and τ with leave-one-out (see
:mod:`inspector.analysis.faithfulness`), on token ids: ferret decodes the perturbed ids to text
and tokenizes again, which can merge or split tokens, so its inputs are not always the ones its
rationale named; here they always are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .._progress import bar as progress_bar
from ..analysis import faithfulness as _f
from ..analysis.faithfulness_table import Faithfulness, concat
from ..corpus.checkpoint import discard_checkpoint
from ..corpus.scoreboard import ScoreboardState, open_scoreboard, save_scoreboard
from ..corpus.sources import BadLine, text_source
from ..errors import InputError, UnsupportedModelError
from ..explain import faithfulness as _scoreboard
from ..explain.registry import ExplainRequest
from ..explain.target import Target
from ..frames import write_frame
from ..render import report as _report
from ..render.page import Report
from ..render.section import Section
from ..render.sections.explain import explain_section
from ..render.sections.faithfulness import EXPLAIN_MAPS, faithfulness_section, map_order
from .model import ModelLike, as_model


class FaithfulnessResult(Faithfulness):
    """:class:`inspector.analysis.faithfulness_table.Faithfulness` plus :meth:`report` and
    :meth:`save`.

    ``frame`` (text, method, metric, value), ``scores`` (text, method, position, token, score),
    ``summary()`` (mean and 95% interval per method and metric, and the paired difference to the
    random floor), ``ranking()``, ``markdown()``.
    """

    def report(
        self, path: str | os.PathLike[str] | None = None, *, title: str | None = None
    ) -> Report:
        """The "Which map to trust" page."""
        rendered = _report.faithfulness_report(self, title=title)
        if path is not None:
            rendered.save(path)
        return rendered

    def save(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write ``frame`` to ``path`` (``.csv`` or ``.parquet``, atomically) and ``scores``
        beside it (``faith.csv`` → ``faith.scores.csv``); returns both paths."""
        target = Path(path)
        scores_path = target.with_name(f"{target.stem}.scores{target.suffix}")
        return [write_frame(self.frame, target), write_frame(self.scores, scores_path)]


def _facade(result: Faithfulness) -> FaithfulnessResult:
    return FaithfulnessResult(**{f.name: getattr(result, f.name) for f in fields(result)})


def scores_path(output: str | os.PathLike[str]) -> Path:
    """Where :meth:`FaithfulnessResult.save` puts the token scores of ``output``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.scores{p.suffix}")


def faithfulness_methods() -> list[str]:
    """The explainers the scoreboard can score: every registered one with token scores."""
    return _scoreboard.scored_methods(None)


def _base_metadata(
    bundle: Any, names: list[str], target: Any, steps: Any, only_positive: bool
) -> dict[str, Any]:
    from ..explain.registry import get_explainer

    return {
        "model_name": bundle.name,
        "methods": names,
        "labels": {n: get_explainer(n).label for n in names},
        "target_spec": str(target),
        "steps": steps if isinstance(steps, str) else list(steps),
        "only_positive": bool(only_positive),
    }


def inspection_faithfulness(
    inspection: Any,
    methods: Sequence[str] | str | None = None,
    *,
    target: Any = "auto",
    step: int | None = None,
    steps: _f.Steps = "k",
    only_positive: bool = True,
    max_memory: Any = None,
    max_rows: int = 64,
) -> FaithfulnessResult:
    """How faithful every token-level explanation of one inspection is (``ins.explain
    .faithfulness``): ``frame`` has one row per method and metric.

    Args:
        inspection: an :class:`inspector.Inspection` made by ``LoadedModel.inspect`` (or
            ``generate``: then ``step=`` picks the generated token to explain).
        methods: explainer names (default: every registered one with token scores).
        target: ``"auto"`` (predicted class, masked token, a decoder's next token, a bare
            encoder's embedding projection), a string such as ``"label:pos"``, or a Target.
        step: explain the ``step``-th generated token (0 = first; negative from the end).
        steps: rationale sizes: ``"k"`` (1..n), ``"ferret"`` (10%..100%), ``"eraser"`` (1, 5,
            10, 20, 50%) or a list of fractions.
        only_positive: only tokens scored above 0 enter a rationale (ferret's default).
        max_memory / max_rows: memory budget and row cap of one pass of deleted inputs.
    """
    model = getattr(inspection, "model", None)
    if model is None:
        raise UnsupportedModelError(
            "faithfulness runs the model again: use LoadedModel.inspect(...), not an inspection "
            "read back from a file"
        )
    kind = getattr(inspection, "kind", None) or "self"
    request = ExplainRequest(inspection.capture, kind, model.bundle, Target.parse(target))
    if step is not None:
        request = _scoreboard.step_request(request, step)
    names = _scoreboard.scored_methods(methods)
    result = _scoreboard.score_request(
        request, names, steps=steps, only_positive=only_positive, max_memory=max_memory,
        max_rows=max_rows,
    )  # fmt: skip
    meta = {**_base_metadata(model.bundle, names, target, steps, only_positive), **result.metadata}
    meta["texts"] = [inspection.capture.metadata.get("text", "")]
    if step is not None:
        meta["generation_step"] = request.capture.metadata.get("generation_step")
    return FaithfulnessResult(result.frame, result.scores, meta)


def _merge(meta: dict[str, Any], part: Faithfulness, index: int, text: str) -> None:
    """Add one text's counts and notes to the corpus metadata."""
    pm = part.metadata
    meta["texts"].append(text)
    meta["text_index"].append(index)
    meta["targets"].append(pm.get("target"))
    meta["skipped"].extend(pm.get("skipped") or [])
    meta["target"] = pm.get("target") if meta["n_texts"] == 0 else meta["target"]
    meta["n_texts"] += 1
    for key in ("n_tokens", "forward_rows", "forward_passes", "deletion_rows"):
        meta[key] = meta.get(key, 0) + int(pm.get(key, 0))
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
    max_memory: Any = None,
    max_rows: int = 64,
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
        max_length: truncate texts to this many tokens (default: refuse texts the model cannot
            take).
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
    base = _base_metadata(bundle, names, target, steps, only_positive)
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
                if isinstance(item, str) and item.strip():
                    ins = m.inspect(item, truncation=max_length is not None, max_length=max_length)
                    request = ExplainRequest(ins.capture, "self", bundle, spec)
                    part = _scoreboard.score_request(
                        request, names, steps=steps, only_positive=only_positive, text=n_done,
                        max_memory=max_memory, max_rows=max_rows,
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
    return _facade(current())


def explain_sections(
    expl: Any, faithfulness: Faithfulness | None
) -> list[Callable[[Any], Section]]:
    """The explain report's sections: "What mattered", and with a faithfulness result first
    "Which map to trust", the maps then drawn most faithful first."""
    if faithfulness is None:
        return [explain_section(expl)]
    if not isinstance(faithfulness, Faithfulness):
        raise InputError(
            "faithfulness= takes a result of ins.explain.faithfulness() or inspector.faithfulness()"
            f", or True to score this input; got {type(faithfulness).__name__}"
        )
    order = map_order(faithfulness, EXPLAIN_MAPS)
    return [faithfulness_section(faithfulness, shown=order), explain_section(expl, order)]


__all__ = [
    "FaithfulnessResult",
    "explain_sections",
    "faithfulness",
    "faithfulness_methods",
    "inspection_faithfulness",
    "scores_path",
]
