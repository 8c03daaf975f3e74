"""Which map to trust: the faithfulness of every token-level explanation, for one inspection or
over a corpus, as :class:`FaithfulnessResult` (frames, summary with 95% intervals, report).

:func:`inspector.faithfulness` (:mod:`.faithfulness_corpus`) runs over a corpus with progress
and a checkpoint to resume from, like the atlas; :func:`inspection_faithfulness`
(``ins.explain.faithfulness``) scores one inspection (``step=``: a token a decoder
generated). The scores are ferret's AOPC comprehensiveness, AOPC sufficiency and τ with
leave-one-out (see :mod:`inspector.analysis.faithfulness`), on token ids: ferret decodes the
perturbed ids to text and tokenizes again, which can merge or split tokens, so its inputs are
not always the ones its rationale named; here they always are.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..analysis import faithfulness as _f
from ..analysis.faithfulness_table import Faithfulness
from ..capture.memory import MemoryLimit
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
from .results import Result, saved


class FaithfulnessResult(Result[Faithfulness]):
    """:class:`inspector.analysis.faithfulness_table.Faithfulness` (``data``) plus
    :meth:`report` and :meth:`save`.

    ``frame`` (text, method, metric, value), ``scores`` (text, method, position, token, score),
    ``summary()`` (mean and 95% interval per method and metric, and the paired difference to the
    random floor), ``ranking()``, ``markdown()``.
    """

    __slots__ = ()

    def report(
        self, path: str | os.PathLike[str] | None = None, *, title: str | None = None
    ) -> Report:
        """The "Which map to trust" page."""
        return saved(_report.faithfulness_report(self.data, title=title), path)

    def save(self, path: str | os.PathLike[str]) -> list[Path]:
        """Write ``frame`` to ``path`` (``.csv`` or ``.parquet``, atomically) and ``scores``
        beside it (``faith.csv`` → ``faith.scores.csv``); returns both paths."""
        return [write_frame(self.frame, path), write_frame(self.scores, scores_path(path))]


def as_faithfulness(result: Any) -> Any:
    """The data of a facade result (``FaithfulnessResult.data``), anything else as it is."""
    return result.data if isinstance(result, FaithfulnessResult) else result


def scores_path(output: str | os.PathLike[str]) -> Path:
    """Where :meth:`FaithfulnessResult.save` puts the token scores of ``output``."""
    p = Path(output)
    return p.with_name(f"{p.stem}.scores{p.suffix}")


def faithfulness_methods() -> list[str]:
    """The explainers the scoreboard can score: every registered one with token scores."""
    return _scoreboard.scored_methods(None)


def base_metadata(
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
    max_memory: MemoryLimit | int | str | None = None,
    max_rows: int | None = None,
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
        max_memory / max_rows: memory budget and row cap of one pass of deleted inputs (``None``:
            as planned: 64 rows a pass, or a decoder's prefix trees of up to 4,096 tokens).
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
        request, names, steps=steps, only_positive=only_positive,
        max_memory=MemoryLimit.of(max_memory), max_rows=max_rows,
    )  # fmt: skip
    meta = {**base_metadata(model.bundle, names, target, steps, only_positive), **result.metadata}
    meta["texts"] = [inspection.capture.metadata.get("text", "")]
    if step is not None:
        meta["generation_step"] = request.capture.metadata.get("generation_step")
    return FaithfulnessResult(Faithfulness(result.frame, result.scores, meta))


def explain_sections(
    expl: Any, faithfulness: Faithfulness | None
) -> list[Callable[[Any], Section]]:
    """The explain report's sections: "What mattered", and with a faithfulness result first
    "Which map to trust", the maps then drawn most faithful first."""
    if faithfulness is None:
        return [explain_section(expl)]
    faithfulness = as_faithfulness(faithfulness)
    if not isinstance(faithfulness, Faithfulness):
        raise InputError(
            "faithfulness= takes a result of ins.explain.faithfulness() or inspector.faithfulness()"
            f", or True to score this input; got {type(faithfulness).__name__}"
        )
    order = map_order(faithfulness, EXPLAIN_MAPS)
    note = (
        f"The raw and norm-based maps below are drawn at layer {expl.layer}; the scoreboard "
        f"ranks their tokens at the last layer, and rollout through all layers."
    )
    return [
        faithfulness_section(faithfulness, shown=order, note=note),
        explain_section(expl, order),
    ]


__all__ = [
    "FaithfulnessResult",
    "explain_sections",
    "faithfulness_methods",
    "inspection_faithfulness",
    "scores_path",
]
