"""The explainer registry: every explanation method is one entry with one signature.

An :class:`Explainer` declares what it **returns** (``tokens``: one score per input token for
the target; ``heads``: a ``(layer, head)`` frame; ``matrix``: a ``(query, key)`` frame; ``graph``:
a route graph; ``summary``: the "what mattered" bundle) and what it **needs** (``weights``: the
captured attention alone, or ``model``: the model runs again through :mod:`inspector.capture`).
Its function takes an :class:`ExplainRequest` plus keyword options and returns its result.

Entries that can rank input tokens for a target also give ``token_scores(request) -> (n,)``:
the faithfulness scoreboard reads exactly those, and the report, the CLI's ``--methods``
choices and ``Inspection.explain`` read the registry. Register with
:func:`register_explainer`; :func:`scoped_explainers` restores the registry on exit (tests).

Example:
    >>> import numpy as np
    >>> from inspector.explain.registry import Explainer, scoped_explainers, register_explainer
    >>> with scoped_explainers():  # doctest: +SKIP
    ...     register_explainer(Explainer(
    ...         "first", lambda req: np.eye(len(req.tokens))[0], "tokens", "weights",
    ...         "first token", token_scores=lambda req: np.eye(len(req.tokens))[0]))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from .._registry import Registry
from ..capture.types import AttentionStack, Capture, Tokens
from ..errors import InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from .target import Target

Returns = Literal["tokens", "heads", "matrix", "graph", "summary"]
Needs = Literal["weights", "model"]


@dataclass(frozen=True)
class ExplainRequest:
    """What every explainer receives: one capture, the stack it explains, the model that made it
    (``None`` for a capture read back from disk) and the target.

    Attributes:
        capture: the capture.
        kind: the stack explained (``self``, or an encoder-decoder's ``encoder`` / ``decoder``).
        bundle: the loaded model, for explainers that need ``model``.
        target: what is explained (:class:`~.target.Target`; ``auto`` by default).
    """

    capture: Capture
    kind: str
    bundle: ModelBundle | None = None
    target: Target = field(default_factory=Target)

    def __post_init__(self) -> None:
        if self.kind not in self.capture.stacks:
            raise InputError(
                f"no {self.kind!r} attention in this capture; available: "
                f"{list(self.capture.stacks)}"
            )
        if not isinstance(self.target, Target):
            object.__setattr__(self, "target", Target.parse(self.target))

    @property
    def stack(self) -> AttentionStack:
        return self.capture.stacks[self.kind]

    @property
    def tokens(self) -> Tokens:
        """The input tokens a token-level explainer scores (the stack's keys)."""
        return self.stack.key

    def model(self, what: str) -> ModelBundle:
        """The bundle, or an error saying that ``what`` needs the model that made the capture."""
        if self.bundle is None:
            raise UnsupportedModelError(
                f"{what} runs the model again: explain an inspection made by "
                f"LoadedModel.inspect(...), not one read back from a file"
            )
        return self.bundle

    def target_rows(self) -> np.ndarray:
        """The query rows whose output the target reads, as weights that sum to 1 over
        ``(query,)``: the target's own ``position`` when it has one; the mean over all rows for
        a sentence-embedding target (mean pooling) or a bare encoder's ``auto``; the first
        ``[MASK]`` of a masked LM; the last row of a decoder; ``[CLS]`` (row 0) of a
        classifier."""
        n = len(self.stack.query)
        rows = np.zeros(n, dtype=np.float64)
        target = self.target
        if target.position is not None:
            pos = target.position + n if target.position < 0 else target.position
            if not 0 <= pos < n:
                raise InputError(f"target position {target.position} is outside {n} tokens")
            rows[pos] = 1.0
            return rows
        bundle = self.bundle
        head = _head_kind(bundle)
        if target.kind == "embedding" or (target.kind == "auto" and head == "bare"):
            rows[:] = 1.0 / n
        elif head == "masked":
            mask_id = getattr(getattr(bundle, "tokenizer", None), "mask_token_id", None)
            ids = np.asarray(self.stack.query.ids)
            where = np.flatnonzero(ids == mask_id) if mask_id is not None else np.array([])
            rows[int(where[0]) if len(where) else 0] = 1.0
        elif head == "classifier":
            rows[0] = 1.0
        else:
            rows[-1] = 1.0
        return rows


def _head_kind(bundle: ModelBundle | None) -> str:
    if bundle is None:
        return "decoder"
    if bundle.architecture in ("decoder", "encoder-decoder"):
        return "decoder"
    name = type(bundle.model).__name__
    if "MaskedLM" in name or "ForPreTraining" in name:
        return "masked"
    if "Classification" in name:
        return "classifier"
    return "bare"


ExplainFn = Callable[..., Any]
TokenScoreFn = Callable[[ExplainRequest], np.ndarray]


@dataclass(frozen=True)
class Explainer:
    """One explanation method.

    Attributes:
        name: the registry key; ``Inspection.explain.<name>()`` and ``--methods NAME``.
        fn: ``fn(request, **options) -> result``.
        returns: what ``fn`` returns (:data:`Returns`).
        needs: ``weights`` (the captured attention alone) or ``model`` (runs the model again).
        label: how reports and tables name it.
        token_scores: ``token_scores(request) -> (n,)`` float scores of the input tokens for the
            request's target, higher = more important; ``None`` when the method cannot rank
            tokens. The faithfulness scoreboard scores exactly the entries that have one.
        description: one line for help texts.
    """

    name: str
    fn: ExplainFn
    returns: Returns
    needs: Needs
    label: str
    token_scores: TokenScoreFn | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InputError(f"an explainer name must be a Python identifier, got {self.name!r}")
        if not callable(self.fn):
            raise InputError(f"explainer {self.name!r}: fn must be callable")
        if self.returns not in get_args(Returns):
            raise InputError(
                f"explainer {self.name!r}: returns must be one of {get_args(Returns)}, "
                f"got {self.returns!r}"
            )
        if self.needs not in get_args(Needs):
            raise InputError(
                f"explainer {self.name!r}: needs must be one of {get_args(Needs)}, "
                f"got {self.needs!r}"
            )
        if self.token_scores is not None and not callable(self.token_scores):
            raise InputError(f"explainer {self.name!r}: token_scores must be callable")

    def __call__(self, request: ExplainRequest, **options: Any) -> Any:
        if self.needs == "model":
            request.model(self.name)
        return self.fn(request, **options)

    def scores(self, request: ExplainRequest) -> np.ndarray:
        """This method's token scores for ``request`` (validated: one finite float per token)."""
        if self.token_scores is None:
            raise InputError(f"explainer {self.name!r} gives no token scores")
        if self.needs == "model":
            request.model(self.name)
        scores = np.asarray(self.token_scores(request), dtype=np.float64)
        n = len(request.tokens)
        if scores.shape != (n,):
            raise InputError(
                f"explainer {self.name!r} gave token scores of shape {scores.shape}, "
                f"expected ({n},)"
            )
        if not np.isfinite(scores).all():
            raise InputError(f"explainer {self.name!r} gave non-finite token scores")
        return scores


#: Registered explainers, name -> :class:`Explainer`, in registration order.
EXPLAINERS: Registry[Explainer] = Registry("explainer")


def register_explainer(
    explainer: Explainer, *, overwrite: bool = False, before: str | None = None
) -> Explainer:
    """Add ``explainer`` to the registry (returns it, so it can decorate a module's entry)."""
    if not isinstance(explainer, Explainer):
        raise InputError(f"register_explainer takes an Explainer, got {type(explainer).__name__}")
    EXPLAINERS.register(explainer.name, explainer, overwrite=overwrite, before=before)
    return explainer


def list_explainers(
    *, returns: Returns | None = None, needs: Needs | None = None, token_scores: bool = False
) -> list[str]:
    """Names of the registered explainers, optionally only those returning ``returns``,
    needing ``needs``, or (``token_scores=True``) able to rank input tokens."""
    return [
        name
        for name, e in EXPLAINERS.items()
        if (returns is None or e.returns == returns)
        and (needs is None or e.needs == needs)
        and (not token_scores or e.token_scores is not None)
    ]


def get_explainer(name: str) -> Explainer:
    """The entry ``name`` (an unknown name is an :class:`InputError` listing the others)."""
    return EXPLAINERS.get_entry(name)


@contextmanager
def scoped_explainers() -> Iterator[Registry[Explainer]]:
    """Entries registered inside the block are gone after it."""
    with EXPLAINERS.scoped() as registry:
        yield registry


__all__ = [
    "EXPLAINERS",
    "ExplainRequest",
    "Explainer",
    "Needs",
    "Returns",
    "get_explainer",
    "list_explainers",
    "register_explainer",
    "scoped_explainers",
]
