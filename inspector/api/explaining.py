"""The :class:`Inspection` methods that run the model again to explain a decision.

Rollout and flow read the captured stack; norms, head importance and the "what mattered" summary
hook the model that made the inspection. Split from :mod:`inspector.api.inspection` so that one
holds the captured data, frames, views and reports.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import pandas as pd

from ..capture.types import AttentionStack, Capture
from ..errors import UnsupportedModelError
from ..explain import flow as _flow
from ..explain import importance as _importance
from ..explain import norms as _norms
from ..explain import summary as _summary
from ..explain.result import Explanation
from ..models.loading import ModelBundle
from ..render import report as _report
from ..render.page import Report
from ..render.sections.explain import explain_section


class HasBundle(Protocol):
    """What an inspection needs of the model that made it (a :class:`LoadedModel`)."""

    bundle: ModelBundle


class ExplainMethods:
    """Explain methods of :class:`inspector.Inspection` (a base class, not used alone)."""

    capture: Capture
    kind: str | None
    model: HasBundle | None

    @property
    def stack(self) -> AttentionStack:
        raise NotImplementedError

    def _bundle_for(self, what: str) -> ModelBundle:
        if self.model is None:
            raise UnsupportedModelError(
                f"{what} runs the model again: use LoadedModel.inspect(...).{what}()"
            )
        return self.model.bundle

    def rollout(
        self,
        start_layer: int = 0,
        head_reduce: _flow.HeadReduce = "mean",
        *,
        exclude_special: bool = False,
    ) -> pd.DataFrame:
        """Attention rollout as a ``query_pos, key_pos, query_token, key_token, weight`` frame.

        See :func:`inspector.explain.flow.rollout`; ``exclude_special`` drops special tokens and
        renormalises the rows.
        """
        matrix = _flow.rollout(
            self.stack,
            start_layer=start_layer,
            head_reduce=head_reduce,
            exclude_special=exclude_special,
        )
        return _flow.matrix_frame(matrix, self.stack.query)

    def attention_flow(
        self,
        start_layer: int = 0,
        head_reduce: _flow.HeadReduce = "mean",
        *,
        exclude_special: bool = False,
        max_tokens: int = _flow.FLOW_MAX_TOKENS,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Attention flow (max-flow) as a frame like :meth:`rollout`; short inputs only.

        ``progress``: a bar over the max-flow problems on stderr (``None``: when stderr is a
        terminal)."""
        matrix = _flow.attention_flow(
            self.stack,
            start_layer=start_layer,
            head_reduce=head_reduce,
            exclude_special=exclude_special,
            max_tokens=max_tokens,
            progress=progress,
        )
        return _flow.matrix_frame(matrix, self.stack.query)

    def attention_norms(
        self,
        layers: Sequence[int] | int | None = None,
        heads: Sequence[int] | int | None = None,
        *,
        exclude_special: bool = False,
        normalise: bool = False,
    ) -> pd.DataFrame:
        """Norm-based attention ``‖α·f(x)‖``: the :meth:`frame` columns plus ``norm``.

        ``normalise`` turns ``norm`` into a per-row share (sums to 1, comparable with
        ``weight``). Arrays: ``inspector.explain.attention_norms(model.bundle, ins.stack)``.
        """
        result = _norms.attention_norms(
            self._bundle_for("attention_norms"),
            self.stack,
            layers=[layers] if isinstance(layers, int) else layers,
            heads=[heads] if isinstance(heads, int) else heads,
            capture=self.capture,
        )
        return result.frame(exclude_special=exclude_special, normalise=normalise)

    def head_importance(
        self,
        target: Any = None,
        method: _importance.Method = "ablation",
        *,
        mode: _importance.AblationMode = "zero",
        batch_size: int = 73,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """``(layer, head)`` importance for ``target`` on this input (ablation or gradient).

        ``target``: ``"predicted"``, ``"token:Paris"``, ``"label:POSITIVE"``, ``"loss:1"``,
        ``"embedding"``, an :class:`inspector.Target` or a callable; ``mode``: ablate by ``zero``
        or ``mean``; ``batch_size``: rows per ablation pass; ``progress``: a bar over the
        ablations (``None``: when stderr is a terminal). See
        :func:`inspector.explain.importance.head_importance`.
        """
        stack = self.stack  # an encoder-decoder inspection names its part first
        return _importance.head_importance(
            self._bundle_for("head_importance"),
            self.capture
            if self.capture.is_encoder_decoder or self.capture.image is not None
            else stack.query,
            target=target,
            method=method,
            mode=mode,
            batch_size=batch_size,
            progress=progress,
            kind=stack.kind,
        )

    def explain(
        self,
        target: Any = None,
        method: _importance.Method = "ablation",
        *,
        layer: int | None = None,
        top: int = 4,
        progress: bool | None = None,
    ) -> Explanation:
        """The "what mattered" summary (:class:`inspector.explain.Explanation`): raw,
        norm-based and rollout maps, head importance, its top heads and sink heads
        (``progress``: a bar over head ablations; ``None``: when stderr is a terminal)."""
        return _summary.explain(
            self._bundle_for("explain"), self.capture, target=target, method=method, layer=layer,
            top=top, progress=progress, kind=self.kind,
        )  # fmt: skip

    def explain_report(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        target: Any = None,
        method: _importance.Method = "ablation",
        layer: int | None = None,
        top: int = 4,
        explanation: Explanation | None = None,
        title: str | None = None,
        precision: str = "uint8",
        progress: bool | None = None,
    ) -> Report:
        """The HTML report with a "what mattered" section (see :meth:`explain`; pass a ready
        ``explanation`` to render it without running the model again).

        Example:
            >>> ins.explain_report("reports/explain.html", target="predicted")  # doctest: +SKIP
        """
        expl = explanation or self.explain(target, method, layer=layer, top=top, progress=progress)
        rendered = _report.build_report(
            self.capture,
            title=title,
            precision=precision,
            extra_sections=[explain_section(expl)],
        )
        if path is not None:
            rendered.save(path)
        return rendered


__all__ = ["ExplainMethods"]
