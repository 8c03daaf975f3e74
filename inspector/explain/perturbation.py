"""One input's token deletions, run through the model for one target: batched and memoised.

:class:`Deletions` runs the full input once (binding the target: the predicted class, the next
token of a decoder, the masked token, the embedding direction), then the target's value on any
set of kept content tokens. Deleted tokens are removed from the token ids (no
decode/re-tokenise round trip, which can merge or split tokens: ferret's evaluators decode
the ids to text and tokenize again), special tokens are never deleted, and inputs of the same
length run together in passes planned by :func:`inspector.capture.perturb.rows_per_pass`
(no padding, so every row is exactly the model on that input). A kept set asked for twice
(two methods, or the leave-one-out and a top-1 deletion) runs once. A decoder runs its deleted
inputs as prefix trees instead (:mod:`inspector.capture.prefix`): inputs that begin alike share
the states of their common beginning, about half the tokens on UD EWT sentences; the first
tree of each input is checked against the same input run alone, and a model the tree cannot
run (or that fails the check) runs its inputs by length as above.

The faithfulness scoreboard (:mod:`.faithfulness`) and the ``occlusion`` explainer
(:mod:`.attribution`) use it.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..capture.memory import MemoryLimit, memory_budget
from ..capture.perturb import MAX_ROWS, id_inputs, last_logits_only, rows_per_pass, start_id
from ..capture.prefix import plan_trees, tree_logits, tree_refusal
from ..capture.run import forward
from ..errors import InputError, UnsupportedModelError
from .registry import ExplainRequest, _head_kind
from .target import Resolved, Target, resolve_target, target_values
from .target import _token_id as token_id


def measured_target(target: Target) -> Target:
    """The target a faithfulness score measures: as given, but a probability (ferret's
    "probability before minus after") where the target has logits and names no score."""
    if target.kind in ("embedding", "custom") or target.score is not None:
        return target
    return dataclasses.replace(target, score="prob")


#: Targets that read the logits alone (a prefix-tree pass gives logits, not the rest of the
#: model's output).
_LOGIT_TARGETS = ("auto", "predicted", "token", "label")
#: How far a prefix-tree value may be from the same input run alone (float32 rounding).
_TREE_TOLERANCE = (1e-3, 1e-5)  # relative, absolute


@dataclasses.dataclass
class _Logits:
    """The part of a model output a logit target reads."""

    logits: Any


def _without_mask(inputs: Any) -> dict[str, Any]:
    """Inputs whose embedding target pools every position (none is padding here)."""
    return {k: v for k, v in inputs.items() if k != "attention_mask"}


class Deletions:
    """The target's value on one input with tokens deleted.

    Args:
        request: the capture, its model and the target (``Target.parse``-able).
        max_memory: the memory budget of one pass (default: what is available).
        max_rows: the most inputs in one pass (``None``: :data:`~inspector.capture.perturb.MAX_ROWS`
            a pass of equal-length inputs, and as many as a prefix tree of
            :data:`~inspector.capture.prefix.MAX_NODES` tokens holds).
        share_prefixes: run a decoder's inputs as prefix trees (see the module docstring).

    Attributes:
        content: positions of the content tokens (the ones that can be deleted), ``(m,)``.
        baseline: the target's value on the full input.
        description: what the target is (``prob of token '␣Paris' (next token)``).
        rows / passes: inputs and forward passes run so far (the full input included).
        input_tokens / run_tokens: the tokens of the inputs run so far, and the tokens the model
            ran for them (fewer where prefix trees shared beginnings).
        tree_refused: why the inputs did not run as prefix trees (``None`` while they do, or
            before any ran).
    """

    def __init__(
        self,
        request: ExplainRequest,
        *,
        max_memory: MemoryLimit | None = None,
        max_rows: int | None = None,
        share_prefixes: bool = True,
    ) -> None:
        bundle = request.model("token deletion")
        capture = request.capture
        if capture.is_encoder_decoder or capture.image is not None or request.kind != "self":
            raise UnsupportedModelError(
                "token deletion (faithfulness, occlusion) runs on the text input of an encoder or "
                "decoder model; encoder-decoder models and images are not supported"
            )
        self.bundle = bundle
        self.tokens = request.tokens
        self.target = measured_target(request.target)
        self.head = _head_kind(bundle)
        position = self.target.position
        n = len(self.tokens)
        if self.head == "decoder" and position is not None and position not in (-1, n - 1):
            raise InputError(
                "faithfulness deletes tokens, so a decoder target at a fixed position moves; use "
                "the next-token target (no position), or explain a generated token with step="
            )
        self.call_kw = last_logits_only(bundle) if self.head == "decoder" else {}
        self.budget = memory_budget(max_memory)
        if max_rows is not None and (
            not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1
        ):
            raise InputError(f"max_rows must be a positive integer or None, got {max_rows!r}")
        self.max_rows = max_rows
        # the pre-flight: the full input alone must fit, before anything runs
        rows_per_pass(bundle, n, all_logits=not self.call_kw, max_rows=1, budget=self.budget)
        self.rows = self.passes = self.input_tokens = self.run_tokens = 0
        self.tree_refused: str | None = None
        if not share_prefixes:
            self.tree_refused = "share_prefixes=False"
        elif self.head != "decoder" or not self.call_kw:
            self.tree_refused = "not a decoder's next-token target"
        elif self.target.kind not in _LOGIT_TARGETS:
            self.tree_refused = f"a {self.target.kind} target reads more than the logits"
        else:
            self.tree_refused = tree_refusal(bundle)
        self._tree_checked = False
        ids = np.asarray(self.tokens.ids, dtype=np.int64)
        types = np.asarray(self.tokens.type_ids, dtype=np.int64)
        self._ids, self._types = ids, types
        inputs = id_inputs(bundle, ids[None], types[None])
        out = self._run(inputs, 1)
        self._resolved = resolve_target(self.target, bundle, _without_mask(inputs), out)
        self.description = self._resolved.description
        self.baseline = float(target_values(self._resolved, out, 1)[0])
        protected = np.asarray(self.tokens.special, dtype=bool).copy()
        self._mask_token: int | None = None
        self._target_at: int | None = None
        if self.head == "masked":
            self._target_at, self._mask_token = self._masked_target(inputs, out)
            protected[self._target_at] = True
        self._protected = protected
        self.content = np.flatnonzero(~protected)
        self._memo: dict[tuple[int, ...], float] = {}  # model input -> target value

    # ------------------------------------------------------------------ the model
    def _run(self, inputs: Any, rows: int) -> Any:
        self.rows += rows
        self.passes += 1
        tokens = rows * int(inputs["input_ids"].shape[-1])
        self.input_tokens += tokens
        self.run_tokens += tokens
        return forward(self.bundle, inputs, **self.call_kw)

    def _masked_target(self, inputs: Any, out: Any) -> tuple[int, int]:
        """A masked LM's target position and token id, fixed on the full input."""
        t = self.target
        pos = t.position
        if pos is None:
            mask_id = getattr(self.bundle.tokenizer, "mask_token_id", None)
            hits = np.flatnonzero(self._ids == (-1 if mask_id is None else mask_id))
            pos = int(hits[0])  # resolve_target has refused an input without one
        pos = pos + len(self._ids) if pos < 0 else pos
        if t.kind in ("token", "label") and t.value is not None:
            return pos, token_id(self.bundle, t.value)
        return pos, int(out.logits[0, pos].argmax())

    def _resolved_at(self, full: np.ndarray, out: Any) -> Resolved:
        """The target of a pass whose rows keep the input positions ``full``: a masked LM's
        masked token moves left by the tokens deleted before it."""
        if self._target_at is None:
            return self._resolved
        assert self._mask_token is not None
        where = int(np.flatnonzero(full == self._target_at)[0])
        pinned = dataclasses.replace(
            self.target, kind="token", value=self._mask_token, position=where
        )
        return resolve_target(pinned, self.bundle, {}, out)

    # ------------------------------------------------------------------ deletions
    def full_positions(self, keep: Sequence[int]) -> np.ndarray:
        """Input positions of a kept set of content tokens (protected tokens always kept)."""
        kept = np.zeros(len(self._ids), dtype=bool)
        kept[self._protected] = True
        kept[self.content[list(keep)]] = True
        return np.flatnonzero(kept)

    def _key(self, full: np.ndarray) -> tuple[int, ...]:
        """What the model sees: the token ids (and type ids), and a masked target's place."""
        where: tuple[int, ...] = ()
        if self._target_at is not None:
            where = (int(np.flatnonzero(full == self._target_at)[0]),)
        return (*self._ids[full].tolist(), -1, *self._types[full].tolist(), -1, *where)

    def values(self, keeps: Iterable[tuple[int, ...]]) -> dict[tuple[int, ...], float]:
        """The target's value for each kept set (content-token indexes, ``0 .. m-1``), the full
        input's set included. Inputs the model has seen already (the same token ids: another
        method's deletion, or deleting either of two equal neighbours) are not run again."""
        wanted = list(dict.fromkeys(tuple(int(i) for i in k) for k in keeps))
        full_key = self._key(np.arange(len(self._ids)))
        self._memo.setdefault(full_key, self.baseline)
        keys = {}
        groups: dict[tuple[int, int], dict[tuple[int, ...], np.ndarray]] = {}
        for keep in wanted:
            full = self.full_positions(keep)
            key = keys[keep] = self._key(full)
            if key in self._memo:
                continue
            mask_at = key[-1] if self._target_at is not None else -1
            groups.setdefault((max(len(full), 1), mask_at), {})[key] = full
        if groups and self.tree_refused is None:
            self._run_trees([item for items in groups.values() for item in items.items()])
            groups = {
                g: {k: f for k, f in items.items() if k not in self._memo}
                for g, items in groups.items()
            }
        for (length, _), items in sorted(groups.items()):
            per_pass = rows_per_pass(
                self.bundle,
                length,
                all_logits=self.head != "decoder" or not self.call_kw,
                max_rows=self.max_rows or MAX_ROWS,
                budget=self.budget,
            )
            todo = list(items.items())
            for start in range(0, len(todo), per_pass):
                self._run_chunk(todo[start : start + per_pass])
        return {k: self._memo[keys[k]] for k in wanted}

    def _row(self, full: np.ndarray) -> list[int]:
        """The token ids of the input keeping positions ``full`` (the start token if none)."""
        return self._ids[full].tolist() if full.size else [start_id(self.bundle)]

    def _run_trees(self, todo: list[tuple[tuple[int, ...], np.ndarray]]) -> None:
        """Run ``todo``'s inputs as prefix trees, storing their values; on a model the tree
        cannot run, or a first tree whose check fails, set :attr:`tree_refused` and leave the
        rest to the passes by length."""
        rows = [self._row(full) for _, full in todo]
        for part in plan_trees(self.bundle, rows, budget=self.budget, max_rows=self.max_rows):
            chunk = [rows[i] for i in part]
            try:
                logits, nodes = tree_logits(self.bundle, chunk)
            except UnsupportedModelError as exc:
                self.tree_refused = str(exc)
                return
            self.rows += len(part)
            self.passes += 1
            self.input_tokens += sum(len(r) for r in chunk)
            self.run_tokens += nodes
            vals = target_values(self._resolved, _Logits(logits), len(part)).double().cpu().numpy()
            if not self._tree_checked:
                key, full = todo[part[-1]]
                self._run_chunk([(key, full)])
                alone, tree = self._memo[key], float(vals[-1])
                rel, tol = _TREE_TOLERANCE
                if abs(alone - tree) > tol + rel * abs(alone):
                    self.tree_refused = (
                        f"a prefix-tree value ({tree:.6g}) differs from the input run alone "
                        f"({alone:.6g})"
                    )
                    return
                self._tree_checked = True
            for i, v in zip(part, vals, strict=True):
                self._memo[todo[i][0]] = float(v)

    def _run_chunk(self, chunk: list[tuple[tuple[int, ...], np.ndarray]]) -> None:
        lone = np.array([start_id(self.bundle)], dtype=np.int64)
        ids = np.stack([self._ids[full] if full.size else lone for _, full in chunk])
        types = np.stack([self._types[full] if full.size else lone * 0 for _, full in chunk])
        out = self._run(id_inputs(self.bundle, ids, types), len(chunk))
        resolved = self._resolved_at(chunk[0][1], out)
        vals = target_values(resolved, out, len(chunk)).double().cpu().numpy()
        for (key, _), v in zip(chunk, vals, strict=True):
            self._memo[key] = float(v)

    def leave_one_out(self) -> np.ndarray:
        """``baseline - value(content token i deleted)`` for every content token, ``(m,)``:
        how much deleting each token lowers the target."""
        m = len(self.content)
        keeps = [tuple(j for j in range(m) if j != i) for i in range(m)]
        got = self.values(keeps)
        return np.array([self.baseline - got[k] for k in keeps], dtype=np.float64)


#: The deletions run on each live capture, by target and model: the scoreboard's leave-one-out
#: inputs serve the ``occlusion`` explainer on the same capture (a weak cache: an entry goes
#: with its capture).
_RUNS: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Deletions]] = (
    weakref.WeakKeyDictionary()
)


def _run_key(
    request: ExplainRequest, max_memory: MemoryLimit | None, max_rows: int | None
) -> tuple[Any, ...]:
    bundle = request.model("token deletion")
    return (measured_target(request.target), id(bundle), str(max_memory), max_rows)


def run_counts(
    request: ExplainRequest, *, max_memory: MemoryLimit | None = None, max_rows: int | None = None
) -> tuple[int, int]:
    """Rows and passes :func:`deletions_for` has run so far for this request (0, 0 if none)."""
    found = _RUNS.get(request.capture, {}).get(_run_key(request, max_memory, max_rows))
    return (found.rows, found.passes) if found is not None else (0, 0)


def deletions_for(
    request: ExplainRequest, *, max_memory: MemoryLimit | None = None, max_rows: int | None = None
) -> Deletions:
    """The :class:`Deletions` of ``request``'s capture, target and model: made once, then
    shared (its inputs already run are not run again)."""
    per_capture = _RUNS.setdefault(request.capture, {})
    key = _run_key(request, max_memory, max_rows)
    if key not in per_capture:
        per_capture[key] = Deletions(request, max_memory=max_memory, max_rows=max_rows)
    return per_capture[key]


__all__ = ["Deletions", "deletions_for", "measured_target", "run_counts"]
