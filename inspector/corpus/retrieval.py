"""The retrieval-head engine: needle-in-a-haystack prompts from the user's text, generated in
bounded memory, scored head by head (Wu et al. 2024; the scoring is
:mod:`inspector.analysis.retrieval`).

For each ``(length, depth)`` the haystack is cut to fill about ``length`` prompt tokens, the
needle is placed at ``depth`` (on the nearest sentence end, line end or word start; the depth it
got is reported), the question follows (inside the tokenizer's chat template when it has one),
and the model generates greedily while :func:`inspector.capture.scan.generate_last_rows` hands
over only the last query row of every step, so memory stays O(layers x heads x tokens) however
long the prompt. The protocol (``"wu"``, the paper's code, or ``"needle"``) picks the scored
span, the recall and when decoding stops (:mod:`inspector.analysis.retrieval`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._progress import bar as _bar
from ..analysis import retrieval as _r
from ..capture.memory import MemoryLimit
from ..capture.options import Selection
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
#: The answer part of each documented needle (the paper's ``real_needle``): the Kamradt needle,
#: and the three needles of the paper's ``haystack_for_detect/needles.jsonl``.
KNOWN_ANSWERS: dict[str, str] = {
    DEFAULT_NEEDLE: "eat a sandwich and sit in Dolores Park on a sunny day",
    "A new report from the WMO shows that records were once again broken, and in some cases "
    "smashed, for greenhouse gas levels, surface temperatures, ocean heat and acidification.": (
        "records were once again broken, and in some cases smashed, for greenhouse gas levels, "
        "surface temperatures, ocean heat and acidification."
    ),
    "The best thing to do in Beijing is to take a walk in Chaoyang Park and have a cup of "
    "Espresso in the evening.": (
        "take a walk in Chaoyang Park and have a cup of Espresso in the evening"
    ),
    "Mr Green is disliked by everyone because he is a mean person and also he can't ride a horse "
    "or dive a car.": "Because he is a mean person and also he can't ride a horse or dive a car.",
}
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


@dataclass(frozen=True)
class NeedlePrompt:
    """One trial's prompt: its tokens, the needle's and the answer's token spans ``(start,
    end)`` and the depth the needle got (a share of the haystack's tokens before it)."""

    tokens: Tokens
    needle: tuple[int, int]
    answer: tuple[int, int]
    depth_used: float


def needle_prompt(
    bundle: ModelBundle,
    haystack: str,
    needle: str,
    question: str,
    length: int,
    depth: float,
    answer: str | None = None,
) -> NeedlePrompt:
    """At most ``length`` prompt tokens (usually exactly) with ``needle`` at ``depth``.

    ``answer`` (a part of the needle) is located as the paper's code does: the first prompt
    window holding more than 90% of its distinct token ids (:func:`~.retrieval.answer_span`),
    its ids taken as the prompt tokenizes them; without it the answer span is the needle's."""
    overhead_text, templated = _prompt(bundle, needle, question)
    overhead = len(encode(bundle, overhead_text, add_special_tokens=not templated))
    room = length - overhead
    for _ in range(4):  # tokens can merge across the joins: trim until the prompt fits
        if room < 1:
            raise InputError(
                f"length {length} leaves no room for the haystack: the needle and question alone "
                f"take {overhead} tokens"
            )
        built = _build(bundle, haystack, needle, question, room, depth, answer)
        if len(built.tokens) <= length:
            return built
        room -= len(built.tokens) - length
    raise InputError(f"could not build a prompt of at most {length} tokens")


def _token_span(offsets: np.ndarray, start_char: int, end_char: int, what: str) -> tuple[int, int]:
    inside = (offsets[:, 0] < end_char) & (offsets[:, 1] > start_char) & (offsets[:, 0] >= 0)
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        raise InputError(f"could not find the {what}'s tokens in the prompt (no character offsets)")
    return int(hits[0]), int(hits[-1]) + 1


def _build(
    bundle: ModelBundle,
    haystack: str,
    needle: str,
    question: str,
    room: int,
    depth: float,
    answer: str | None,
) -> NeedlePrompt:
    hay = haystack
    while len(hay) < 8 * room:  # repeat a short haystack until it surely holds `room` tokens
        hay = hay + "\n\n" + haystack
    cut = encode(bundle, hay, truncation=True, max_length=room, add_special_tokens=False).tokens
    ends = cut.offsets[:, 1]
    hay_text = hay[: int(ends[ends >= 0].max())] if (ends >= 0).any() else hay
    context, at = _r.insert_needle(hay_text, needle, depth)
    text, templated = _prompt(bundle, context, question)
    context_start = text.index(context)
    start_char = context_start + at
    end_char = start_char + len(needle)
    tokens = encode(bundle, text, add_special_tokens=not templated).tokens
    offs = tokens.offsets
    span = _token_span(offs, start_char, end_char, "needle")
    used = _r.depth_used(
        offs, (context_start, context_start + len(context)), (start_char, end_char)
    )
    if answer is None:
        return NeedlePrompt(tokens, span, span, used)
    where = _find(needle, answer)
    if where is None:
        raise InputError(f"the answer {answer!r} is not a part of the needle {needle!r}")
    a_first, a_end = _token_span(offs, start_char + where[0], start_char + where[1], "answer")
    ids = tokens.ids.tolist()
    found = _r.answer_span(ids, ids[a_first:a_end])
    if found is None:  # cannot happen: the answer's own window holds all of its ids
        raise InputError("could not find the answer's tokens in the prompt")
    return NeedlePrompt(tokens, span, found, used)


def _find(needle: str, answer: str) -> tuple[int, int] | None:
    """The answer's characters in the needle, ignoring case."""
    found = re.search(re.escape(answer), needle, flags=re.IGNORECASE)
    return None if found is None else found.span()


def resolve_answer(needle: str, answer: str | None, protocol: str) -> str | None:
    """The answer to score under ``protocol`` (``None`` under ``"needle"``): ``answer``, or the
    known answer of a documented needle; it must be a part of the needle."""
    _r.check_protocol(protocol)
    if protocol == "needle":
        if answer is not None:
            raise InputError(
                "answer= is scored under protocol='wu' only; protocol='needle' scores the whole "
                "needle (drop answer= or use protocol='wu')"
            )
        return None
    if answer is None:
        answer = KNOWN_ANSWERS.get(needle.strip())
        if answer is None:
            raise InputError(
                "give answer=, the part of the needle the question asks for (CLI --answer): "
                "protocol='wu' scores only that part, as the paper's code does; or use "
                "protocol='needle' to score the whole needle"
            )
    answer = check_text(answer, "answer").strip()
    if _find(needle, answer) is None:
        raise InputError(
            f"the answer {answer!r} is not a part of the needle {needle!r}; give the needle's "
            f"words the question asks for"
        )
    return answer


@dataclass(frozen=True, kw_only=True)
class RetrievalOptions:
    """What :func:`run_retrieval` asks and measures: built once by the facade, passed down
    unchanged (checked by :func:`run_retrieval` against the model).

    Attributes:
        needle / question: the fact to retrieve and the question about it.
        answer: the part of the needle the question asks for, scored under ``"wu"`` (default:
            the known answer of a needle in :data:`KNOWN_ANSWERS`; required for others).
        protocol: ``"wu"`` (the paper's code: the answer's span, ``rouge-score`` recall of the
            answer, up to 50 tokens stopping after a newline) or ``"needle"`` (the whole
            needle, word recall of the needle, up to its length + 10 tokens or the end token).
        lengths: prompt lengths in tokens.
        depths: needle positions as fractions of the haystack (0 = start, 1 = end).
        layers / heads: the heads to score (default all).
        method: ``auto``, ``eager`` or ``blockwise`` (see :mod:`inspector.capture.scan`).
        max_new_tokens: tokens generated at most per trial (default: the protocol's).
        max_memory: the memory budget (default: what is available).
        progress: a tqdm bar over the trials (default: on a terminal; elsewhere a line
            every 30 s, see :mod:`inspector._progress`).
    """

    needle: str = DEFAULT_NEEDLE
    question: str = DEFAULT_QUESTION
    answer: str | None = None
    protocol: str = "wu"
    lengths: Sequence[int] = (1000,)
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0)
    layers: Sequence[int] | int | None = None
    heads: Sequence[int] | int | None = None
    method: str = "auto"
    max_new_tokens: int | None = None
    max_memory: MemoryLimit | None = None
    progress: bool | None = None


def run_retrieval(
    bundle: ModelBundle, haystack: str, options: RetrievalOptions | None = None
) -> RetrievalRun:
    """Run every ``(length, depth)`` trial and score each head (see the module docstring).

    Args:
        bundle: a loaded decoder.
        haystack: the text the needle hides in (repeated when shorter than a length needs).
        options: the needle, question, protocol, lengths, depths, heads ...
            (:class:`RetrievalOptions`; default: its defaults).
    """
    o = options or RetrievalOptions()
    if bundle.architecture != "decoder":
        raise UnsupportedModelError(
            f"{bundle.name} is {'an' if bundle.architecture[0] == 'e' else 'a'} "
            f"{bundle.architecture}; retrieval heads are measured while a decoder generates "
            f"(load e.g. smollm2)"
        )
    haystack = check_text(haystack, "haystack")
    needle = check_text(o.needle, "needle")
    question = check_text(o.question, "question")
    protocol = o.protocol
    answer = resolve_answer(needle, o.answer, protocol)
    lengths = [int(n) for n in o.lengths]
    depths = [float(d) for d in o.depths]
    if not lengths or not depths:
        raise InputError("give at least one length and one depth")
    if any(n < 1 for n in lengths):
        raise InputError(f"lengths must be positive token counts, got {lengths}")
    if any(not 0.0 <= d <= 1.0 for d in depths):
        raise InputError(f"depths are fractions between 0 and 1, got {depths}")
    method = resolve_method(bundle, o.method)
    layer_idx = select_indexes(o.layers, bundle.n_layers, "layer")
    head_idx = select_indexes(o.heads, bundle.n_heads, "head")
    n_needle = len(encode(bundle, needle, add_special_tokens=False))
    rule = _r.StopRule.for_protocol(
        protocol, needle_tokens=n_needle, max_new_tokens=o.max_new_tokens
    )
    tok = bundle.tokenizer
    eos = _eos_ids(bundle)
    reference = needle if answer is None else answer

    def stops(token_id: int) -> bool:
        return rule.stops_after(tok.decode([token_id]), token_id in eos)

    trials = []
    bar = _bar(total=len(lengths) * len(depths), desc="retrieval", unit=" trials",
               progress=o.progress)  # fmt: skip
    try:
        for length in lengths:
            for depth in depths:
                p = needle_prompt(bundle, haystack, needle, question, length, depth, answer)
                acc = _r.LastRowArgmax(len(p.tokens), rule.max_new_tokens)
                ids = generate_last_rows(
                    bundle,
                    p.tokens,
                    acc,
                    max_new_tokens=rule.max_new_tokens,
                    select=Selection(layer_idx, head_idx),
                    method=method,
                    max_memory=o.max_memory,
                    stop_after=stops if rule.newline else None,
                    stop_at_eos=rule.eos,
                )
                ids = ids[: rule.kept([tok.decode([i]) for i in ids], [i in eos for i in ids])]
                response = tok.decode(ids, skip_special_tokens=True).strip()
                recall = (
                    _r.rouge1_recall(needle, response)
                    if protocol == "needle"
                    else _r.rouge1_recall_stemmed(reference, response)
                )
                scores = _r.retrieval_step_scores(
                    acc.argmax[: len(ids)], ids, p.tokens.ids.tolist(), p.answer
                )
                trials.append(
                    _r.Trial(
                        length=length,
                        depth=depth,
                        depth_used=p.depth_used,
                        n_tokens=len(p.tokens),
                        needle_start=p.needle[0],
                        needle_end=p.needle[1],
                        answer_start=p.answer[0],
                        answer_end=p.answer[1],
                        response=response,
                        recall=recall,
                        scores=scores,
                    )
                )
                bar.update(1)
    finally:
        bar.close()
    meta = bundle_metadata(bundle)
    meta.update(
        needle=needle,
        question=question,
        answer=answer,
        protocol=protocol,
        method=method,
        max_new_tokens=rule.max_new_tokens,
    )
    return RetrievalRun(tuple(trials), layer_idx, head_idx, meta)


def _eos_ids(bundle: ModelBundle) -> frozenset[int]:
    """The model's end-of-sequence ids (its generation config's, else the tokenizer's)."""
    found = getattr(bundle.model.generation_config, "eos_token_id", None)
    if found is None:
        found = bundle.tokenizer.eos_token_id
    if found is None:
        return frozenset()
    return frozenset(int(i) for i in (found if isinstance(found, (list, tuple)) else [found]))


__all__ = [
    "DEFAULT_NEEDLE",
    "DEFAULT_QUESTION",
    "KNOWN_ANSWERS",
    "NeedlePrompt",
    "RetrievalOptions",
    "RetrievalRun",
    "needle_prompt",
    "resolve_answer",
    "run_retrieval",
]
