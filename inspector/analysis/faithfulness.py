"""Faithfulness of token-level explanations: AOPC comprehensiveness, AOPC sufficiency and
Kendall τ against leave-one-out, with ferret's definitions (DeYoung et al. 2020, ERASER; the
``ferret`` library's ``AOPC_Comprehensiveness_Evaluation``, ``AOPC_Sufficiency_Evaluation`` and
``TauLOO_Evaluation`` in ``ferret/evaluators/faithfulness_measures.py``).

Pure functions of token scores and target values; nothing here runs a model
(:mod:`inspector.explain.faithfulness` runs the deleted inputs). Everything works on the
positions of the *content* tokens (special tokens are excluded before anything is ranked and are
never deleted: ferret's ``remove_first_last``).

Definitions, as ferret computes them:

* a *rationale* of size ``k`` is the top ``k`` content tokens of the scores
  (``argsort()[-k:][::-1]``); with ``only_positive`` (ferret's default) only tokens with a score
  ``> 0`` enter it, so it may hold fewer than ``k``;
* the sizes tried are ``k = 1 .. n`` (``steps="k"``: ferret's ``based_on="k"``), ferret 0.5's
  default fractions 10%, 20%, ... 100% (``steps="ferret"``) or ERASER's bins 1, 5, 10, 20, 50%
  (``steps="eraser"``); a fraction ``p`` gives ``k = int(p·n)`` and is skipped when that is 0;
* a size whose rationale set repeats the previous one is skipped (it would count the same
  deletion twice);
* comprehensiveness of one size is ``target(full) - target(rationale deleted)``, sufficiency
  ``target(full) - target(only the rationale kept)``; AOPC is their mean over the sizes kept. No
  rationale at all (no positive score) gives ferret's defaults: comprehensiveness 0,
  sufficiency 1;
* τ is Kendall's τ-b (``scipy.stats.kendalltau``) between the scores and the leave-one-out
  scores ``target(full) - target(token i deleted)``.

Higher comprehensiveness, lower sufficiency and higher τ are more faithful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import InputError

#: The metrics, in table order, and whether higher values are more faithful.
METRICS: dict[str, bool] = {"comprehensiveness": True, "sufficiency": False, "tau_loo": True}
#: Step fractions by name (``steps=``): ferret 0.5's default and ERASER's AOPC bins.
STEP_FRACTIONS: dict[str, tuple[float, ...]] = {
    "ferret": tuple(float(p) for p in np.arange(0.1, 1.1, 0.1)),
    "eraser": (0.01, 0.05, 0.10, 0.20, 0.50),
}
#: ferret's values when an explanation gives no rationale at all.
EMPTY_VALUE = {"comprehensiveness": 0.0, "sufficiency": 1.0}

Steps = Literal["k", "ferret", "eraser"] | Sequence[float]


def check_steps(steps: Steps) -> tuple[float, ...] | None:
    """``None`` for ``"k"`` (every size ``1..n``), else the fractions of the content tokens."""
    if isinstance(steps, str):
        if steps == "k":
            return None
        if steps in STEP_FRACTIONS:
            return STEP_FRACTIONS[steps]
        raise InputError(
            f"steps must be 'k' (k = 1..n), 'ferret' (10%..100%), 'eraser' (1, 5, 10, 20, 50%) "
            f"or a list of fractions, not {steps!r}"
        )
    try:
        fractions = tuple(float(p) for p in steps)
    except (TypeError, ValueError):
        raise InputError(f"steps must be a name or a list of fractions, not {steps!r}") from None
    if not fractions or any(not 0 < p <= 1 for p in fractions):
        raise InputError(f"step fractions must lie in (0, 1], got {list(fractions)}")
    return fractions


def top_k(scores: np.ndarray, k: int, *, only_positive: bool = True) -> np.ndarray | None:
    """The ``k`` best-scored positions, best first (ferret's ``_get_id_tokens_top_k``):
    ``argsort()[-k:][::-1]``, and with ``only_positive`` only those scored above 0 (``None``
    when that leaves none)."""
    s = np.asarray(scores, dtype=np.float64)
    top = s.argsort()[-k:][::-1]
    if only_positive:
        top = top[s[top] > 0]
    return top if top.size else None


def rationales(
    scores: np.ndarray, *, steps: Steps = "k", only_positive: bool = True
) -> list[np.ndarray]:
    """The rationales (position arrays, best first) at every size tried, a size whose set
    repeats the previous one skipped (ferret's rule).

    Example:
        >>> [r.tolist() for r in rationales(np.array([0.5, -1.0, 2.0]))]
        [[2], [2, 0]]
    """
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[0]
    fractions = check_steps(steps)
    sizes = range(1, n + 1) if fractions is None else [int(p * n) for p in fractions]
    out: list[np.ndarray] = []
    last: set[int] | None = None
    for k in sizes:
        if not 0 < k <= n:
            continue
        top = top_k(s, k, only_positive=only_positive)
        if top is None or (last is not None and set(top.tolist()) == last):
            continue
        last = set(top.tolist())
        out.append(top)
    return out


def comprehensiveness_keep(n: int, rationale: np.ndarray) -> tuple[int, ...]:
    """The content positions left after deleting ``rationale`` (in order)."""
    return tuple(int(i) for i in np.delete(np.arange(n), rationale))


def sufficiency_keep(rationale: np.ndarray) -> tuple[int, ...]:
    """The content positions kept: the rationale alone, in the original order."""
    return tuple(int(i) for i in np.sort(rationale))


def loo_keeps(n: int) -> list[tuple[int, ...]]:
    """The ``n`` leave-one-out inputs: every content position but one."""
    return [tuple(j for j in range(n) if j != i) for i in range(n)]


@dataclass(frozen=True)
class DeletionPlan:
    """What one explanation of one text needs run: the kept content positions of every
    comprehensiveness and sufficiency step."""

    comprehensiveness: tuple[tuple[int, ...], ...]
    sufficiency: tuple[tuple[int, ...], ...]

    @property
    def keeps(self) -> list[tuple[int, ...]]:
        return [*self.comprehensiveness, *self.sufficiency]


def deletion_plan(
    scores: np.ndarray, *, steps: Steps = "k", only_positive: bool = True
) -> DeletionPlan:
    """The deletions that score ``scores`` (content tokens only)."""
    n = np.asarray(scores).shape[0]
    tops = rationales(scores, steps=steps, only_positive=only_positive)
    return DeletionPlan(
        tuple(comprehensiveness_keep(n, r) for r in tops),
        tuple(sufficiency_keep(r) for r in tops),
    )


def aopc(baseline: float, values: Sequence[float], *, empty: float) -> float:
    """``mean(baseline - values)`` (ferret's ``_compute_aopc``), ``empty`` for no values."""
    if len(values) == 0:
        return float(empty)
    return float(np.mean(float(baseline) - np.asarray(values, dtype=np.float64)))


def kendall_tau(loo: np.ndarray, scores: np.ndarray) -> float:
    """Kendall's τ-b between leave-one-out scores and an explanation's scores (NaN when either
    is constant, as scipy gives)."""
    from scipy.stats import kendalltau

    a = np.asarray(loo, dtype=np.float64)
    b = np.asarray(scores, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"leave-one-out scores {a.shape} and token scores {b.shape} differ")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(kendalltau(a, b)[0])


def evaluate(
    plan: DeletionPlan,
    baseline: float,
    value_of: Mapping[tuple[int, ...], float],
    loo: np.ndarray,
    scores: np.ndarray,
) -> dict[str, float]:
    """The three metrics of one explanation of one text.

    Args:
        plan: its :func:`deletion_plan`.
        baseline: the target's value on the full input.
        value_of: the target's value for each kept-position tuple the plan names.
        loo: the leave-one-out scores ``baseline - value(without i)`` of the content tokens.
        scores: the explanation's scores of the content tokens.
    """
    comp = [value_of[k] for k in plan.comprehensiveness]
    suff = [value_of[k] for k in plan.sufficiency]
    return {
        "comprehensiveness": aopc(baseline, comp, empty=EMPTY_VALUE["comprehensiveness"]),
        "sufficiency": aopc(baseline, suff, empty=EMPTY_VALUE["sufficiency"]),
        "tau_loo": kendall_tau(loo, scores),
    }


def random_scores(ids: Sequence[int], seed: int = 0) -> np.ndarray:
    """A seeded random ranking of a token sequence: uniform scores in ``(0, 1]`` from a
    generator seeded with ``seed`` and the token ids (the same input always gets the same
    ranking, in every process; another input or seed gets another)."""
    entropy = [int(seed) & 0xFFFFFFFF, *(int(i) & 0xFFFFFFFF for i in ids)]
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    return 1.0 - rng.random(len(ids))


__all__ = [
    "EMPTY_VALUE",
    "METRICS",
    "STEP_FRACTIONS",
    "DeletionPlan",
    "Steps",
    "aopc",
    "check_steps",
    "comprehensiveness_keep",
    "deletion_plan",
    "evaluate",
    "kendall_tau",
    "loo_keeps",
    "random_scores",
    "rationales",
    "sufficiency_keep",
    "top_k",
]
