"""``Inspection.explain``: every registered explainer, by name, on one inspection.

The namespace reads :data:`inspector.explain.EXPLAINERS`: ``ins.explain.rollout()``,
``ins.explain("norms")`` and ``ins.explain.scores("rollout")`` all run the same entry with an
:class:`~inspector.explain.ExplainRequest` built from the inspection (its capture, its stack, the
model that made it, the target). A new explainer is one registry entry; nothing here changes.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import pandas as pd

from ..capture import memory as _memory
from ..capture.memory import MemoryLimit
from ..capture.types import AttentionStack, Capture
from ..errors import InputError, UnsupportedModelError
from ..explain.model import default_kind
from ..explain.registry import EXPLAINERS, Explainer, ExplainRequest, get_explainer
from ..explain.result import Explanation
from ..explain.target import Target
from ..models.loading import ModelBundle
from ..render import report as _report
from ..render.page import Report

#: What to do when a page does not fit.
REPORT_ADVICE = (
    "Keep fewer layers=[...] / heads=[...] in the inspection, write the scan page instead "
    "(report(scan=True)), or raise max_memory= if you know more is free"
)


class HasBundle(Protocol):
    """What an inspection needs of the model that made it (a :class:`LoadedModel`)."""

    bundle: ModelBundle


class InspectionLike(Protocol):
    """What the namespaces read of an :class:`~inspector.Inspection`."""

    capture: Capture
    kind: str | None
    model: HasBundle | None

    @property
    def stack(self) -> AttentionStack: ...


def model_bundle(model: HasBundle | None, what: str) -> ModelBundle:
    """The bundle of the model that made an inspection, or an error saying ``what`` needs it."""
    if model is None:
        raise UnsupportedModelError(
            f"{what} runs the model again: use LoadedModel.inspect(...), not an inspection read "
            f"back from a file"
        )
    return model.bundle


@contextlib.contextmanager
def model_preflight(
    model: HasBundle | None, make: Callable[[], _memory.MemoryEstimate], advice: str
) -> Iterator[_memory.MemoryEstimate]:
    """:func:`~inspector.capture.memory.preflight` under the lock of the model that made an
    inspection (none for one read back from a file), for the steps that allocate after a
    capture: reports, streamed frames."""
    bundle = getattr(model, "bundle", None)
    lock = getattr(bundle, "lock", None) or contextlib.nullcontext()
    with _memory.preflight(lock, make, advice) as est:
        yield est


class ExplainNamespace:
    """The explainers of one inspection (``ins.explain``).

    * ``ins.explain()`` - the "what mattered" summary (:class:`~inspector.explain.Explanation`);
    * ``ins.explain.NAME(target=None, **options)`` or ``ins.explain("NAME", ...)`` - one
      registered method (``ins.explain.methods()`` lists them with what they return and need);
    * ``ins.explain.scores("NAME", target=None)`` - its token scores for the target;
    * ``ins.explain.report(path, ...)`` - the report with a "what mattered" section.

    Example:
        >>> ins.explain.rollout().head(2)  # doctest: +SKIP
        >>> ins.explain.ablation(target="token:Paris")  # doctest: +SKIP
    """

    def __init__(self, inspection: InspectionLike) -> None:
        self._ins = inspection

    def __repr__(self) -> str:
        return f"<explain: {', '.join(EXPLAINERS)}>"

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *EXPLAINERS})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in EXPLAINERS:
            raise AttributeError(
                f"no explainer {name!r}; registered explainers: {list(EXPLAINERS)}"
            )
        run = functools.partial(self.__call__, name)
        functools.update_wrapper(run, EXPLAINERS[name].fn)
        return run

    def request(self, target: Target | str | Any = None) -> ExplainRequest:
        """The :class:`~inspector.explain.ExplainRequest` the explainers of this inspection
        receive (its capture, its stack, the model that made it, ``target`` parsed)."""
        ins = self._ins
        bundle = ins.model.bundle if ins.model is not None else None
        kind = ins.kind or (default_kind(bundle) if bundle is not None else "encoder")
        return ExplainRequest(ins.capture, kind, bundle, Target.parse(target))

    def __call__(self, name: str | None = None, /, *, target: Any = None, **options: Any) -> Any:
        """Run the explainer ``name`` (default: the "what mattered" ``summary``) for ``target``
        with its own keyword ``options``."""
        entry = get_explainer("summary" if name is None else name)
        if "max_memory" in options:  # parsed once here, passed down as a MemoryLimit
            options["max_memory"] = MemoryLimit.of(options["max_memory"])
        return entry(self.request(target), **options)

    def scores(self, name: str, *, target: Any = None) -> np.ndarray:
        """``(n,)`` token scores of method ``name`` for ``target`` (higher: more important)."""
        return get_explainer(name).scores(self.request(target))

    def faithfulness(
        self,
        methods: Any = None,
        *,
        target: Any = "auto",
        step: int | None = None,
        steps: Any = "k",
        only_positive: bool = True,
        max_memory: int | str | None = None,
        max_rows: int | None = None,
    ) -> Any:
        """How faithful every token-level explanation of this input is: AOPC comprehensiveness,
        AOPC sufficiency and τ with leave-one-out per method (``step=``: a generated token).
        See :func:`inspector.api.faithfulness.inspection_faithfulness`."""
        from .faithfulness_result import inspection_faithfulness

        return inspection_faithfulness(
            self._ins, methods, target=target, step=step, steps=steps,
            only_positive=only_positive, max_memory=MemoryLimit.of(max_memory),
            max_rows=max_rows,
        )  # fmt: skip

    @staticmethod
    def methods() -> pd.DataFrame:
        """The registered explainers: what each returns and needs, and whether it ranks tokens."""
        rows = [_describe(e) for e in EXPLAINERS.values()]
        return pd.DataFrame(rows).set_index("name")

    def report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        target: Any = None,
        method: str = "ablation",
        layer: int | None = None,
        top: int = 4,
        explanation: Explanation | None = None,
        title: str | None = None,
        precision: str = "uint8",
        progress: bool | None = None,
        max_memory: int | str | None = None,
        faithfulness: Any = None,
        routes: bool | None = None,
    ) -> Report:
        """The HTML report with a "what mattered" section (see ``ins.explain()``; pass a ready
        ``explanation`` to render it without running the model again). ``max_memory``: the
        budget of the summary and of building the page (default: what is free then).
        ``faithfulness``: a result of :meth:`faithfulness` or :func:`inspector.faithfulness` (or
        ``True``: score this input) adds "Which map to trust" and draws the maps most faithful
        first. ``routes``: add the "Information flow route" section (the route graph of an
        encoder's representation, by default its mean-pooled embedding; one more forward pass):
        ``None`` (default) does so on post-LN encoders (MiniLM, BERT) and leaves it out where
        the routes do not follow the model; ``True``: always (an error says why it cannot; a
        decoder's prediction is drawn by ``ins.explain.information_flow().report(path)``).

        Example:
            >>> ins.explain.report("reports/explain.html", target="predicted")  # doctest: +SKIP
        """
        if explanation is not None and not isinstance(explanation, Explanation):
            raise InputError("explanation= takes the result of ins.explain()")
        limit = MemoryLimit.of(max_memory)
        expl = explanation or self(
            target=target, method=method, layer=layer, top=top, progress=progress,
            max_memory=limit,
        )  # fmt: skip
        if faithfulness is True:
            faithfulness = self.faithfulness(target=target or "auto")
        from .faithfulness_result import explain_sections

        sections = explain_sections(expl, faithfulness)
        route = self._route_section(target, routes)
        if route is not None:
            sections.append(route)
        capture: Capture = self._ins.capture
        with model_preflight(
            self._ins.model,
            lambda: _report.report_estimate(capture, precision, limit),
            REPORT_ADVICE,
        ):
            rendered = _report.build_report(
                capture,
                title=title,
                precision=precision,
                extra_sections=sections,
            )
        if path is not None:
            rendered.save(path)
        return rendered

    def _route_section(self, target: Any, routes: bool | None) -> Any:
        """The report's route section builder, or ``None`` (see :meth:`report`)."""
        from ..render.trace import route_section

        if routes is False:
            return None
        bundle = self._ins.model.bundle if self._ins.model is not None else None
        if routes is None and (bundle is None or bundle.architecture != "encoder"):
            return None
        try:
            found = self("information_flow", target=target)
        except (UnsupportedModelError, InputError):
            if routes:
                raise
            return None
        if found.attribution is not None:  # a decoder's prediction: its own page
            raise InputError(
                "routes=True draws an encoder's route; a decoder's prediction has its page: "
                "ins.explain.information_flow().report(path)"
            )
        return lambda _ctx: route_section(found)


def _describe(entry: Explainer) -> dict[str, Any]:
    return {
        "name": entry.name,
        "label": entry.label,
        "returns": entry.returns,
        "needs": entry.needs,
        "token_scores": entry.token_scores is not None,
        "description": entry.description,
    }


__all__ = [
    "REPORT_ADVICE",
    "ExplainNamespace",
    "HasBundle",
    "InspectionLike",
    "model_bundle",
    "model_preflight",
]
