"""Reading a generation step by step: what each generated token's step attended to most.

Pure functions of a :class:`~inspector.capture.types.Capture` made by
:func:`inspector.capture.generation.generate`; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..capture.types import Capture, captured_positions
from ..errors import InputError


def prompt_length(capture: Capture) -> int:
    """Positions before the first generated token on the query side (decoder for seq2seq)."""
    kind = "decoder" if capture.is_encoder_decoder else "self"
    return capture.stacks[kind].query.prompt_length


@dataclass(frozen=True)
class StepOptions:
    """What :func:`generation_steps` reads of each step, validated once.

    Attributes:
        top_k: keys kept per step, strongest first.
        layers, heads: average over these model indexes only (default: all kept).
        kind: ``"self"`` (decoders), ``"cross"`` (encoder-decoder default: the input tokens)
            or ``"decoder"``.
        skip_special: rank only non-special keys (attention sinks such as ``<|im_start|>`` or
            ``</s>`` often take most of the weight); weights stay as they are, not renormalised.
        readable: ``token`` / ``key_token`` as the tokenizer decodes them (``␣Paris``, ``⏎``)
            instead of the raw tokens (``ĠParis``, ``Ċ``).
    """

    top_k: int = 3
    layers: Sequence[int] | int | None = None
    heads: Sequence[int] | int | None = None
    kind: str | None = None
    skip_special: bool = False
    readable: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise InputError(f"top_k must be a positive integer, got {self.top_k!r}")


def generation_steps(capture: Capture, options: StepOptions | None = None) -> pd.DataFrame:
    """Step through a generation: what each generated token's step attended to most.

    Step ``s`` produced the token at position ``p``; the attention that chose it is the row of
    the query before it (``p - 1``), the last position the model saw at that step. Weights are
    averaged over the kept (or the given) layers and heads.

    Args:
        capture: from :func:`inspector.capture.generation.generate` (an ordinary capture has no
            generated tokens: empty frame).
        options: what to read (:class:`StepOptions`; default: its defaults).

    Returns:
        One row per (step, rank): ``step, position, token, query_pos, rank, key_pos, key_token,
        key_generated, weight``.
    """
    opts = options or StepOptions()
    kind = opts.kind or ("cross" if capture.is_encoder_decoder else "self")
    if kind not in capture.stacks:
        raise InputError(f"no {kind!r} attention in this capture; it has {list(capture.stacks)}")
    stack = capture.stacks[kind]
    li = captured_positions(opts.layers, stack.layers, "layer")
    hi = captured_positions(opts.heads, stack.heads, "head")
    query, key = stack.query, stack.key
    q_names = (query.readable or query.tokens) if opts.readable else query.tokens
    k_names = (key.readable or key.tokens) if opts.readable else key.tokens
    positions = np.flatnonzero(np.asarray(query.generated))
    rows: list[dict[str, Any]] = []
    key_generated = np.asarray(key.generated)
    for step, p in enumerate(positions):
        if p == 0:
            continue
        qpos = int(p) - 1
        w = stack.weights[np.ix_(li, hi)][:, :, qpos, :].astype(np.float64).mean(axis=(0, 1))
        if opts.skip_special:
            w = np.where(np.asarray(key.special), -np.inf, w)
        order = [k for k in np.argsort(-w, kind="stable")[: opts.top_k] if np.isfinite(w[k])]
        for rank, kpos in enumerate(order):
            rows.append(
                {
                    "step": step,
                    "position": int(p),
                    "token": q_names[p],
                    "query_pos": qpos,
                    "rank": rank,
                    "key_pos": int(kpos),
                    "key_token": k_names[kpos],
                    "key_generated": bool(key_generated[kpos]),
                    "weight": float(w[kpos]),
                }
            )
    columns = [
        "step",
        "position",
        "token",
        "query_pos",
        "rank",
        "key_pos",
        "key_token",
        "key_generated",
        "weight",
    ]
    return pd.DataFrame(rows, columns=columns)


__all__ = ["StepOptions", "generation_steps", "prompt_length"]
