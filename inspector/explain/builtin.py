"""The built-in explainers: one :class:`~.registry.Explainer` entry per method.

Each entry calls the method's own module (:mod:`.flow`, :mod:`.norms`, :mod:`.importance`,
:mod:`.summary`); this module only states what each returns and needs, and how it ranks input
tokens for a target (the target's rows of its ``(query, key)`` map, see
:meth:`~.registry.ExplainRequest.target_rows`). Later modules (trace, faithfulness) add their
entries the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..capture.memory import MemoryLimit
from . import flow as _flow
from . import importance as _importance
from . import norms as _norms
from . import summary as _summary
from .registry import Explainer, ExplainRequest, register_explainer


def _row_scores(request: ExplainRequest, matrix: np.ndarray) -> np.ndarray:
    """Token scores from a ``(query, key)`` map: the target rows' weighted mean."""
    return request.target_rows() @ np.asarray(matrix, dtype=np.float64)


def _raw_last(request: ExplainRequest) -> np.ndarray:
    return request.stack.weights[-1].mean(axis=0)


def _raw_mean(request: ExplainRequest) -> np.ndarray:
    return request.stack.weights.mean(axis=(0, 1))


def _attention(request: ExplainRequest, *, layer: int = -1) -> pd.DataFrame:
    """Raw attention of one layer (default: the last), mean over heads."""
    w = request.stack.weights
    if not -len(w) <= layer < len(w):
        from ..errors import InputError

        raise InputError(f"layer {layer} is out of range for {len(w)} captured layers")
    return _flow.matrix_frame(w[layer].mean(axis=0), request.stack.query)


def _attention_mean(request: ExplainRequest) -> pd.DataFrame:
    return _flow.matrix_frame(_raw_mean(request), request.stack.query)


def _rollout(request: ExplainRequest, **options: Any) -> pd.DataFrame:
    return _flow.matrix_frame(_flow.rollout(request.stack, **options), request.stack.query)


def _rollout_scores(request: ExplainRequest) -> np.ndarray:
    return _row_scores(request, _flow.rollout(request.stack))


def _flow_frame(request: ExplainRequest, **options: Any) -> pd.DataFrame:
    return _flow.matrix_frame(_flow.attention_flow(request.stack, **options), request.stack.query)


def _flow_scores(request: ExplainRequest) -> np.ndarray:
    rows = np.flatnonzero(request.target_rows() > 0).tolist()  # only the rows the target reads
    return _row_scores(request, _flow.attention_flow(request.stack, progress=False, rows=rows))


def _norms_frame(
    request: ExplainRequest,
    *,
    layers: Any = None,
    heads: Any = None,
    exclude_special: bool = False,
    normalise: bool = False,
    max_memory: MemoryLimit | None = None,
) -> pd.DataFrame:
    result = _norms.attention_norms(
        request.model("norms"),
        request.stack,
        layers=[layers] if isinstance(layers, int) else layers,
        heads=[heads] if isinstance(heads, int) else heads,
        capture=request.capture,
        max_memory=max_memory,
    )
    return result.frame(exclude_special=exclude_special, normalise=normalise)


def _norms_scores(request: ExplainRequest) -> np.ndarray:
    last = request.stack.layers[-1]
    result = _norms.attention_norms(
        request.model("norms"), request.stack, layers=[last], capture=request.capture
    )
    return _row_scores(request, _flow.renormalise(result.norms[-1]).mean(axis=0))


def _importance_inputs(request: ExplainRequest) -> Any:
    capture = request.capture
    if capture.is_encoder_decoder or capture.image is not None:
        return capture
    return request.stack.query


def _importance_entry(method: _importance.Method) -> Any:
    def run(
        request: ExplainRequest,
        *,
        mode: _importance.AblationMode = "zero",
        batch_size: int = 73,
        progress: bool | None = None,
        max_memory: MemoryLimit | None = None,
    ) -> pd.DataFrame:
        return _importance.head_importance(
            request.model(method),
            _importance_inputs(request),
            target=request.target,
            method=method,
            mode=mode,
            batch_size=batch_size,
            progress=progress,
            kind=request.kind,
            max_memory=max_memory,
        )

    return run


def _summary_fn(
    request: ExplainRequest,
    *,
    method: _importance.Method = "ablation",
    layer: int | None = None,
    top: int = 4,
    progress: bool | None = None,
    max_memory: MemoryLimit | None = None,
) -> Any:
    return _summary.explain(
        request.model("summary"), request.capture, target=request.target, method=method,
        layer=layer, top=top, progress=progress, kind=request.kind, max_memory=max_memory,
    )  # fmt: skip


BUILTIN_EXPLAINERS = (
    Explainer(
        "attention",
        _attention,
        "matrix",
        "weights",
        "raw attention (last layer)",
        lambda r: _row_scores(r, _raw_last(r)),
        "the captured weights of one layer, mean over heads",
    ),
    Explainer(
        "attention_mean",
        _attention_mean,
        "matrix",
        "weights",
        "raw attention (mean of layers)",
        lambda r: _row_scores(r, _raw_mean(r)),
        "the captured weights, mean over layers and heads",
    ),
    Explainer(
        "rollout",
        _rollout,
        "matrix",
        "weights",
        "attention rollout",
        _rollout_scores,
        "Abnar & Zuidema 2020: attention with the residual, multiplied through the layers",
    ),
    Explainer(
        "attention_flow",
        _flow_frame,
        "matrix",
        "weights",
        "attention flow",
        _flow_scores,
        f"Abnar & Zuidema 2020: max-flow through the layers (up to {_flow.FLOW_MAX_TOKENS} tokens)",
    ),
    Explainer(
        "norms",
        _norms_frame,
        "matrix",
        "model",
        "norm-based attention (last layer)",
        _norms_scores,
        "Kobayashi et al. 2020: ‖α·f(x)‖, the size of what each head moves",
    ),
    Explainer(
        "ablation",
        _importance_entry("ablation"),
        "heads",
        "model",
        "head importance (ablation)",
        None,
        "the target's change when one head at a time is ablated",
    ),
    Explainer(
        "gradient",
        _importance_entry("gradient"),
        "heads",
        "model",
        "head importance (gradient)",
        None,
        "Michel et al. 2019: the target's gradient with respect to a gate on each head",
    ),
    Explainer(
        "summary",
        _summary_fn,
        "summary",
        "model",
        "what mattered",
        None,
        "raw, norm-based and rollout maps, head importance, top heads and sinks",
    ),
)

for _entry in BUILTIN_EXPLAINERS:
    register_explainer(_entry)

__all__ = ["BUILTIN_EXPLAINERS"]
