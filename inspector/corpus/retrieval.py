"""The retrieval-head engine: needle-in-a-haystack prompts from the user's text, generated in
bounded memory, scored head by head (Wu et al. 2024; the scoring is
:mod:`inspector.analysis.retrieval`).

For each ``(length, depth)`` the haystack is cut to fill about ``length`` prompt tokens, the
needle is placed at ``depth`` (at a sentence end), the question follows (inside the tokenizer's
chat template when it has one), and the model generates greedily while
:func:`inspector.capture.scan.generate_last_rows` hands over only the last query row of every
step, so memory stays O(layers x heads x tokens) however long the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import bar as _bar
from ..analysis import retrieval as _r
from ..capture.run import bundle_metadata
from ..capture.scan import generate_last_rows, resolve_method
from ..capture.tokenize import chat_text, check_text, encode
from ..capture.types import Tokens, select_indexes
from ..errors import InputError, UnsupportedModelError
from ..models.loading import ModelBundle

#: The needle and question of the original needle-in-a-haystack test (Kamradt 2023).
DEFAULT_NEEDLE = (
    "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a "
    "sunny day."
)
DEFAULT_QUESTION = "What is the best thing to do in San Francisco?"
_ASK = "\n\nBased on the text above, answer the question.\nQuestion: {question}"


@dataclass(frozen=True)
class RetrievalRun:
    """What :func:`run_retrieval` measured: the trials and the kept layers and heads."""

    trials: tuple[_r.Trial, ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


def _prompt(bundle: ModelBundle, context: str, question: str) -> tuple[str, bool]:
    """The prompt text and whether it carries its own special tokens (a chat template)."""
    ask = _ASK.format(question=question)
    if getattr(bundle.tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": context + ask}]
        return chat_text(bundle, messages, add_generation_prompt=True), True
    return context + ask + "\nAnswer:", False


def needle_prompt(
    bundle: ModelBundle, haystack: str, needle: str, question: str, length: int, depth: float
) -> tuple[Tokens, tuple[int, int]]:
    """At most ``length`` prompt tokens (usually exactly) with ``needle`` at ``depth``; the
    tokens and the needle's token span ``(start, end)``."""
    overhead_text, templated = _prompt(bundle, needle, question)
    overhead = len(encode(bundle, overhead_text, add_special_tokens=not templated))
    room = length - overhead
    for _ in range(4):  # tokens can merge across the joins: trim until the prompt fits
        if room < 1:
            raise InputError(
                f"length {length} leaves no room for the haystack: the needle and question alone "
                f"take {overhead} tokens"
            )
        tokens, span = _build(bundle, haystack, needle, question, room, depth)
        if len(tokens) <= length:
            return tokens, span
        room -= len(tokens) - length
    raise InputError(f"could not build a prompt of at most {length} tokens")


def _build(
    bundle: ModelBundle, haystack: str, needle: str, question: str, room: int, depth: float
) -> tuple[Tokens, tuple[int, int]]:
    hay = haystack
    while len(hay) < 8 * room:  # repeat a short haystack until it surely holds `room` tokens
        hay = hay + "\n\n" + haystack
    cut = encode(bundle, hay, truncation=True, max_length=room, add_special_tokens=False).tokens
    ends = cut.offsets[:, 1]
    hay_text = hay[: int(ends[ends >= 0].max())] if (ends >= 0).any() else hay
    context, at = _r.insert_needle(hay_text, needle, depth)
    text, templated = _prompt(bundle, context, question)
    start_char = text.index(context) + at
    end_char = start_char + len(needle)
    tokens = encode(bundle, text, add_special_tokens=not templated).tokens
    offs = tokens.offsets
    inside = (offs[:, 0] < end_char) & (offs[:, 1] > start_char) & (offs[:, 0] >= 0)
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        raise InputError("could not find the needle's tokens in the prompt (no character offsets)")
    return tokens, (int(hits[0]), int(hits[-1]) + 1)


def run_retrieval(
    bundle: ModelBundle,
    haystack: str,
    *,
    needle: str = DEFAULT_NEEDLE,
    question: str = DEFAULT_QUESTION,
    lengths: Sequence[int] = (1000,),
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    method: str = "auto",
    max_new_tokens: int | None = None,
    max_memory: Any = None,
    progress: bool | None = None,
) -> RetrievalRun:
    """Run every ``(length, depth)`` trial and score each head (see the module docstring).

    Args:
        bundle: a loaded decoder.
        haystack: the text the needle hides in (repeated when shorter than a length needs).
        needle / question: the fact to retrieve and the question about it.
        lengths: prompt lengths in tokens.
        depths: needle positions as fractions of the haystack (0 = start, 1 = end).
        layers / heads: the heads to score (default all).
        method: ``auto``, ``eager`` or ``blockwise`` (see :mod:`inspector.capture.scan`).
        max_new_tokens: tokens generated per trial (default: the needle's length + 10).
        max_memory: the memory budget (default: what is available).
        progress: a tqdm bar over the trials (default: on a terminal; elsewhere a line
            every 30 s, see :mod:`inspector._progress`).
    """
    if bundle.architecture != "decoder":
        raise UnsupportedModelError(
            f"{bundle.name} is {'an' if bundle.architecture[0] == 'e' else 'a'} "
            f"{bundle.architecture}; retrieval heads are measured while a decoder generates "
            f"(load e.g. smollm2)"
        )
    haystack = check_text(haystack, "haystack")
    needle = check_text(needle, "needle")
    question = check_text(question, "question")
    lengths = [int(n) for n in lengths]
    depths = [float(d) for d in depths]
    if not lengths or not depths:
        raise InputError("give at least one length and one depth")
    if any(n < 1 for n in lengths):
        raise InputError(f"lengths must be positive token counts, got {lengths}")
    if any(not 0.0 <= d <= 1.0 for d in depths):
        raise InputError(f"depths are fractions between 0 and 1, got {depths}")
    method = resolve_method(bundle, method)
    layer_idx = select_indexes(layers, bundle.n_layers, "layer")
    head_idx = select_indexes(heads, bundle.n_heads, "head")
    n_needle = len(encode(bundle, needle, add_special_tokens=False))
    new = max_new_tokens if max_new_tokens is not None else n_needle + 10

    trials = []
    bar = _bar(total=len(lengths) * len(depths), desc="retrieval", unit=" trials",
               progress=progress)  # fmt: skip
    try:
        for length in lengths:
            for depth in depths:
                tokens, span = needle_prompt(bundle, haystack, needle, question, length, depth)
                acc = _r.LastRowArgmax(len(tokens), new)
                ids = generate_last_rows(
                    bundle,
                    tokens,
                    acc,
                    max_new_tokens=new,
                    layers=layer_idx,
                    heads=head_idx,
                    method=method,
                    max_memory=max_memory,
                )
                response = bundle.tokenizer.decode(ids, skip_special_tokens=True)
                scores = _r.retrieval_step_scores(
                    acc.argmax[: len(ids)], ids, tokens.ids.tolist(), span
                )
                trials.append(
                    _r.Trial(
                        length=length,
                        depth=depth,
                        n_tokens=len(tokens),
                        needle_start=span[0],
                        needle_end=span[1],
                        response=response.strip(),
                        recall=_r.rouge1_recall(needle, response),
                        scores=scores,
                    )
                )
                bar.update(1)
    finally:
        bar.close()
    meta = bundle_metadata(bundle)
    meta.update(needle=needle, question=question, method=method, max_new_tokens=new)
    return RetrievalRun(tuple(trials), layer_idx, head_idx, meta)


__all__ = ["DEFAULT_NEEDLE", "DEFAULT_QUESTION", "RetrievalRun", "needle_prompt", "run_retrieval"]
