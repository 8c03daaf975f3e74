"""The faithfulness scoreboard: every token-level explanation of one input, scored by deleting
the tokens it ranks highest.

:func:`score_request` asks every registered explainer that gives token scores (or the ones
named) for its scores, plans the deletions each needs (:mod:`inspector.analysis.faithfulness`:
ferret's AOPC comprehensiveness and sufficiency steps, and the leave-one-out deletions τ is
measured against), runs all of them at once through :class:`~.perturbation.Deletions`
(deduplicated, memory-planned; same-length inputs batched, or a decoder's as prefix trees),
and returns a :class:`~inspector.analysis.faithfulness_table.Faithfulness`. A method that
cannot explain this input (attention flow over its token limit) or this model (logit
attribution on an encoder) is skipped and the reason recorded in ``metadata["skipped"]``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..analysis import faithfulness as _f
from ..analysis.faithfulness_table import Faithfulness, empty_frames
from ..capture.memory import MemoryLimit
from ..capture.types import AttentionStack, Capture, Tokens
from ..errors import InputError, UnsupportedModelError
from .perturbation import deletions_for, run_counts
from .registry import EXPLAINERS, ExplainRequest, get_explainer, list_explainers
from .target import Target


def scored_methods(methods: Sequence[str] | str | None = None) -> list[str]:
    """The explainers to score: every registered one with token scores (``None``), or the named
    ones, each checked (an unknown name, or one without token scores, is an
    :class:`InputError` listing those that can be scored)."""
    able = list_explainers(token_scores=True)
    if methods is None:
        return able
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InputError(f"methods is empty; give some of {able}, or None for all")
    for name in names:
        if name not in EXPLAINERS or name not in able:
            raise InputError(
                f"{name!r} is not an explainer with token scores; methods that can be scored: "
                f"{able}"
            )
    return list(dict.fromkeys(names))


def score_request(
    request: ExplainRequest,
    methods: Sequence[str] | str | None = None,
    *,
    steps: _f.Steps = "k",
    only_positive: bool = True,
    text: int = 0,
    max_memory: MemoryLimit | None = None,
    max_rows: int | None = None,
) -> Faithfulness:
    """Score the token-level explanations of one input.

    Args:
        request: the capture, its model and target (see :class:`~.registry.ExplainRequest`).
        methods: explainer names (default: every one with token scores).
        steps: rationale sizes: ``"k"`` (1..n, the default), ``"ferret"`` (10%..100%),
            ``"eraser"`` (1, 5, 10, 20, 50%) or a list of fractions.
        only_positive: only tokens scored above 0 enter a rationale (ferret's default).
        text: the ``text`` index written in the frames.
        max_memory / max_rows: the memory budget and row cap of one pass (``None``: as planned).
    """
    names = scored_methods(methods)
    _f.check_steps(steps)
    started = time.perf_counter()
    rows0, passes0 = run_counts(request, max_memory=max_memory, max_rows=max_rows)
    deletions = deletions_for(request, max_memory=max_memory, max_rows=max_rows)
    content = deletions.content
    tokens = request.tokens
    readable = list(tokens.readable or tokens.tokens)
    scores: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name in names:
        t0 = time.perf_counter()
        try:
            full = get_explainer(name).scores(request)
        except (InputError, UnsupportedModelError) as exc:  # this input, or this model
            skipped[name] = str(exc).split(";")[0]
            continue
        seconds[name] = time.perf_counter() - t0
        scores[name] = full[content]
    plans = {
        name: _f.deletion_plan(s, steps=steps, only_positive=only_positive)
        for name, s in scores.items()
    }
    m = len(content)
    loo_keeps = _f.loo_keeps(m)
    t0 = time.perf_counter()
    rows_before = deletions.rows
    tokens_before = (deletions.input_tokens, deletions.run_tokens)
    value_of = deletions.values([*loo_keeps, *(k for p in plans.values() for k in p.keeps)])
    loo = np.array([deletions.baseline - value_of[k] for k in loo_keeps], dtype=np.float64)
    deletion_seconds = time.perf_counter() - t0
    records = []
    score_parts = []
    for name, s in scores.items():
        for metric, value in _f.evaluate(plans[name], deletions.baseline, value_of, loo, s).items():
            records.append((text, name, metric, value))
        score_parts.append(
            pd.DataFrame(
                {
                    "text": np.full(m, text, dtype=np.int64),
                    "method": name,
                    "position": content.astype(np.int64),
                    "token": [readable[i] for i in content],
                    "score": s,
                }
            )
        )
    frame, score_frame = empty_frames()
    if records:
        frame = pd.DataFrame(records, columns=list(frame.columns))
        frame["text"] = frame["text"].astype(np.int64)
    if score_parts:
        score_frame = pd.concat(score_parts, ignore_index=True)
    metadata = {
        "methods": names,
        "labels": {name: get_explainer(name).label for name in names},
        "target": deletions.description,
        "baseline": deletions.baseline,
        "steps": steps if isinstance(steps, str) else list(steps),
        "only_positive": bool(only_positive),
        "n_texts": 1,
        "n_tokens": m,
        "skipped": [{"text": text, "method": k, "reason": v} for k, v in skipped.items()],
        "forward_rows": deletions.rows - rows0,
        "forward_passes": deletions.passes - passes0,
        "deletion_rows": deletions.rows - rows_before,
        "deletion_tokens": deletions.input_tokens - tokens_before[0],
        "run_tokens": deletions.run_tokens - tokens_before[1],
        "prefix_tree": deletions.tree_refused or "used",
        "seconds": time.perf_counter() - started,
        "deletion_seconds": deletion_seconds,
        "method_seconds": seconds,
    }
    return Faithfulness(frame, score_frame, metadata)


def _prefix(tokens: Tokens, p: int) -> Tokens:
    """The first ``p`` tokens of a sequence."""
    return dataclasses.replace(
        tokens,
        tokens=tokens.tokens[:p],
        ids=tokens.ids[:p],
        special=tokens.special[:p],
        word_ids=tokens.word_ids[:p],
        sequence_ids=tokens.sequence_ids[:p],
        offsets=tokens.offsets[:p],
        generated=None if tokens.generated is None else tokens.generated[:p],
        type_ids=None if tokens.type_ids is None else tokens.type_ids[:p],
        readable=None if tokens.readable is None else tokens.readable[:p],
    )


def step_request(request: ExplainRequest, step: int) -> ExplainRequest:
    """The request that explains generated token ``step`` (0 = the first generated; negative
    counts from the end): the prompt and the tokens generated before it, whose next token is
    the one the model generated. A decoder's attention on that prefix is the prefix rows and
    columns of the generation's attention (causal), so nothing runs again."""
    capture = request.capture
    if "self" not in capture.stacks or not capture.stacks["self"].causal:
        raise InputError("step= explains a token a decoder generated (LoadedModel.generate(...))")
    stack = capture.stacks["self"]
    q = stack.query
    n_gen = len(q) - q.prompt_length
    if n_gen == 0:
        raise InputError(
            "step= is for a generation: this inspection generated no token; make one with "
            "LoadedModel.generate(prompt, max_new_tokens=...)"
        )
    if not isinstance(step, int) or isinstance(step, bool) or not -n_gen <= step < n_gen:
        raise InputError(f"step must be an integer in [{-n_gen}, {n_gen - 1}], got {step!r}")
    if request.target.kind not in ("auto", "predicted"):
        raise InputError("with step= the target is the generated token; leave target= out")
    s = step % n_gen
    p = q.prompt_length + s
    tokens = _prefix(q, p)
    prefix = AttentionStack(
        stack.weights[:, :, :p, :p],
        tokens,
        tokens,
        "self",
        stack.causal,
        stack.layers,
        stack.heads,
        stack.tolerance,
    )
    meta = {**capture.metadata, "generation_step": s}
    target = Target.token(int(q.ids[p]), request.target.score)
    return ExplainRequest(Capture({"self": prefix}, meta), "self", request.bundle, target)


__all__ = ["score_request", "scored_methods", "step_request"]
