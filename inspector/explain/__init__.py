"""Debugging decisions: which tokens and which heads actually matter for a model's output.

Raw attention weights mislead: a head can put most of its weight on a "sink" token such as
``[CLS]`` while passing on almost nothing from it. This package offers four corrections:

* :mod:`.flow` - attention rollout and attention flow (Abnar & Zuidema 2020); pure.
* :mod:`.norms` - norm-based attention ``‖α·f(x)‖`` (Kobayashi et al. 2020); runs the model.
* :mod:`.importance` - head importance by ablation or gate gradient (Michel et al. 2019) for a
  :class:`~.target.Target`; runs the model.
* :mod:`.summary` - the report's "what mattered" :class:`~.result.Explanation`.
* :mod:`.attribution` - direct logit attribution and the logit lens; :mod:`.routes` - information
  flow routes (Ferrando & Voita 2024); both read the residual stream through :mod:`.residual`
  (entries in :mod:`.trace_entries`).
* :mod:`.registry` - the explainer registry: every method above is one
  :class:`~.registry.Explainer` entry (:mod:`.builtin`) declaring what it returns and needs.
* :mod:`.gradients` - gradient x input and integrated gradients (captum), leave-one-out
  occlusion and a seeded random ranking, as entries with token scores.
* :mod:`.faithfulness` - which of them to trust: AOPC comprehensiveness / sufficiency and τ with
  leave-one-out of every entry with token scores, its deletions run by :mod:`.perturbation`.

Methods that run the model ask :mod:`inspector.capture` to do it (its one hook context manager
and tokenization path) and find projections in :mod:`inspector.models.families`. Adding a method
is one module here plus one facade method in :mod:`inspector.api`.
"""

from . import builtin as _builtin  # noqa: F401  (registers the built-in explainers)
from . import gradients as _gradients  # noqa: F401  (gradients, occlusion, random)
from . import trace_entries as _trace_entries  # noqa: F401  (logit attribution, routes)
from .flow import (
    FLOW_MAX_TOKENS,
    attention_flow,
    exclude_special_tokens,
    matrix_frame,
    renormalise,
    residual_attention,
    rollout,
)
from .importance import ablated_heads, head_importance, head_importance_many
from .norms import attention_norms
from .registry import (
    EXPLAINERS,
    Explainer,
    ExplainRequest,
    get_explainer,
    list_explainers,
    register_explainer,
    scoped_explainers,
)
from .result import Explanation, NormAttention, sink_heads
from .summary import explain
from .target import Target

__all__ = [
    "EXPLAINERS",
    "FLOW_MAX_TOKENS",
    "ExplainRequest",
    "Explainer",
    "Explanation",
    "NormAttention",
    "Target",
    "ablated_heads",
    "attention_flow",
    "attention_norms",
    "exclude_special_tokens",
    "explain",
    "get_explainer",
    "head_importance",
    "head_importance_many",
    "list_explainers",
    "matrix_frame",
    "register_explainer",
    "renormalise",
    "residual_attention",
    "rollout",
    "scoped_explainers",
    "sink_heads",
]
