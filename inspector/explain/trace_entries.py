"""The "why this token" explainers: registry entries for logit attribution, the logit lens and
information flow routes.

* ``logit_attribution`` (``heads``): :func:`.attribution.trace_logit`'s ``(layer, head)`` frame
  of direct logit attribution (non-head rows, ``head = -1``, have their ``kind``); with
  ``per_token=True`` each head's term split by source position instead. Token scores: the
  per-token attribution of the target token summed over heads and layers.
* ``logit_lens`` (``summary``): the predicted token's rank and logit after every layer, and the
  tokens each layer promotes.
* ``information_flow`` (``graph``): :func:`.routes.information_flow`'s route graph. Token
  scores: each input token's share of the output node through the walked graph.

Every entry takes ``step=`` for an inspection made by ``m.generate(...)``: the prediction of
generated token ``step`` (0 = the first), explained at the position it was predicted from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..capture.memory import MemoryLimit
from ..errors import InputError, UnsupportedModelError
from . import attribution as _attribution
from . import encoder_routes as _enc
from . import routes as _routes
from .registry import Explainer, ExplainRequest, register_explainer
from .residual import has_unembedding
from .route_result import Routes


def step_position(
    request: ExplainRequest, step: int | None, position: int | None
) -> tuple[int, Any]:
    """``(position, default token)`` of the prediction explained: for ``step`` of a generated
    sequence, the position it was predicted from and the token generated there; else
    ``position``, by default the target's, a masked LM's first ``[MASK]`` or the last one."""
    tokens = _attribution.stack_tokens(request.capture, request.kind)
    if step is None:
        target = request.target
        token = target.value if target.kind == "token" else None
        if position is not None:
            return position, token
        if target.position is not None:
            return target.position, token
        return _default_position(request, tokens), token
    n_gen = int(np.asarray(tokens.generated).sum())
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise InputError(f"step must be an integer, got {step!r}")
    if n_gen == 0:
        raise InputError(
            "step= is for an inspection made by m.generate(...); this one generated no tokens "
            "(use position= instead)"
        )
    if not -n_gen <= step < n_gen:
        raise InputError(f"step {step} is outside the {n_gen} generated tokens")
    step = int(step) % n_gen
    at = tokens.prompt_length + step
    return at - 1, int(tokens.ids[at])


def _default_position(request: ExplainRequest, tokens: Any) -> int:
    """The last position (a decoder's next token), or a masked LM's first ``[MASK]``."""
    bundle = request.bundle
    if bundle is None or bundle.architecture != "encoder" or not has_unembedding(bundle):
        return -1  # (an encoder without a head is refused with its own message)
    mask_id = getattr(bundle.tokenizer, "mask_token_id", None)
    hits = np.flatnonzero(np.asarray(tokens.ids) == (-1 if mask_id is None else mask_id))
    if not len(hits):
        mask = getattr(bundle.tokenizer, "mask_token", None) or "the mask token"
        raise InputError(
            f"a masked LM's logit attribution explains the token predicted at a mask: put "
            f"{mask} in the text, or give position="
        )
    return int(hits[0])


def _masked(request: ExplainRequest) -> bool:
    """True for a masked LM's input with its mask token in it."""
    bundle = request.model("information_flow")
    mask_id = getattr(bundle.tokenizer, "mask_token_id", None)
    ids = np.asarray(_attribution.stack_tokens(request.capture, request.kind).ids)
    return has_unembedding(bundle) and mask_id is not None and bool((ids == mask_id).any())


def _traced(
    request: ExplainRequest,
    name: str,
    step: int | None,
    position: int | None,
    token: str | int | None,
    **options: Any,
) -> _attribution.Attribution:
    """:func:`.attribution.trace_logit` of the prediction ``step`` / ``position`` names, of
    ``token`` (default: the generated or target token, else the prediction)."""
    position, default = step_position(request, step, position)
    return _attribution.trace_logit(
        request.model(name), request.capture, token=default if token is None else token,
        position=position, **options,
    )  # fmt: skip


def _logit_attribution(
    request: ExplainRequest,
    *,
    token: str | int | None = None,
    against: str | int | None = None,
    position: int | None = None,
    per_token: bool = False,
    step: int | None = None,
    method: str = "auto",
    max_memory: MemoryLimit | None = None,
) -> pd.DataFrame:
    """Direct logit attribution (see :func:`.attribution.trace_logit`)."""
    result = _traced(
        request, "logit_attribution", step, position, token, against=against,
        per_token=per_token, method=method, max_memory=max_memory,
    )  # fmt: skip
    if not per_token:
        return result.frame
    assert result.per_token is not None
    result.per_token.attrs.update(result.frame.attrs)
    return result.per_token


def _logit_lens(
    request: ExplainRequest,
    *,
    token: str | int | None = None,
    position: int | None = None,
    step: int | None = None,
    top: int = 5,
    max_memory: MemoryLimit | None = None,
) -> pd.DataFrame:
    """The logit lens of one prediction (see :func:`.attribution.lens_frame`)."""
    result = _traced(request, "logit_lens", step, position, token, lens_top=top,
                     max_memory=max_memory)  # fmt: skip
    lens = result.lens
    lens.attrs.update(result.frame.attrs)
    return lens


def _scorable(name: str, fn: Any) -> Any:
    """Token scores of ``name`` that say "cannot score this input" as an :class:`InputError`
    (the faithfulness scoreboard skips such methods, with the reason) for a model the method
    does not follow (an encoder, post-LN routes)."""

    def scores(request: ExplainRequest) -> np.ndarray:
        try:
            out: np.ndarray = fn(request)
        except UnsupportedModelError as exc:
            raise InputError(f"{name} cannot score this input: {exc}") from exc
        return out

    return scores


def _attribution_scores(request: ExplainRequest) -> np.ndarray:
    position, token = step_position(request, None, None)
    bundle = request.model("logit_attribution")
    if token is None:
        return _attribution.token_scores(bundle, request.capture, request.kind, position)
    result = _attribution.trace_logit(
        bundle, request.capture, token=token, position=position, per_token=True
    )
    assert result.per_token is not None
    want = "cross_head" if request.kind == "cross" else "head"
    part = result.per_token[result.per_token["kind"] == want]
    return np.bincount(
        part["source_pos"].to_numpy(), part["attribution"].to_numpy(), minlength=len(request.tokens)
    )


def _information_flow(
    request: ExplainRequest,
    *,
    position: int | None = None,
    threshold: float = 0.04,
    step: int | None = None,
    token: str | int | None = None,
    against: str | int | None = None,
    method: str = "auto",
    max_memory: MemoryLimit | None = None,
) -> Routes:
    """Information flow routes (see :func:`.routes.information_flow`; on a post-LN encoder
    :func:`.encoder_routes.encoder_information_flow`: to ``position``'s final representation,
    or by default (``target='embedding'``) to the mean-pooled embedding)."""
    bundle = request.model("information_flow")
    if bundle.architecture == "encoder":
        _enc.check_encoder_options(bundle, token=token, against=against, step=step)
        target = request.target
        if position is None and target.position is not None:
            position = target.position
        if target.kind == "embedding" and position is not None:
            raise InputError("target='embedding' traces every position: leave out position=")
        if position is None and target.kind != "embedding" and _masked(request):
            position = _default_position(request, request.tokens)  # a masked LM's [MASK]
        if target.kind == "token" and token is None:
            token = target.value
        if position is None and (token is not None or against is not None):
            raise InputError(
                "token= and against= name the token predicted at a position; the route to the "
                "mean-pooled embedding predicts none: put the mask token in the text or give "
                "position="
            )
        query = _routes.RouteQuery(position, threshold, token, against, method, max_memory)
        return _enc.encoder_information_flow(bundle, request.capture, query)
    position, default = step_position(request, step, -1 if position is None else position)
    token = default if token is None else token
    query = _routes.RouteQuery(position, threshold, token, against, method, max_memory)
    return _routes.information_flow(bundle, request.capture, query)


def _flow_scores(request: ExplainRequest) -> np.ndarray:
    if request.kind not in ("self",):
        raise InputError("information flow routes trace decoder-only models (kind 'self')")
    if request.model("information_flow").architecture == "encoder":
        # the scoreboard ranks methods by the prediction's own target; an encoder's route
        # explains its representation, which the scoreboard does not score yet
        raise InputError(
            "information_flow cannot score this input: on an encoder its routes explain a "
            "representation (ins.explain.information_flow()), not the scored target"
        )
    return _information_flow(request).token_scores()


TRACE_EXPLAINERS = (
    Explainer(
        "logit_attribution",
        _logit_attribution,
        "heads",
        "model",
        "direct logit attribution",
        _scorable("logit_attribution", _attribution_scores),
        "exact: what each head, MLP and embedding wrote into the predicted token's logit",
    ),
    Explainer(
        "logit_lens",
        _logit_lens,
        "summary",
        "model",
        "logit lens",
        None,
        "the predicted token's rank and logit after every layer, and what each layer promotes",
    ),
    Explainer(
        "information_flow",
        _information_flow,
        "graph",
        "model",
        "information flow routes",
        _scorable("information_flow", _flow_scores),
        "Ferrando & Voita 2024: the contribution graph walked back from the prediction",
    ),
)

for _entry in TRACE_EXPLAINERS:
    register_explainer(_entry)

__all__ = ["TRACE_EXPLAINERS", "step_position"]
