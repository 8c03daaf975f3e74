"""What head importance measures: a :class:`Target` bound to one model's output.

A target turns a model output into one number per batch row (a class probability, a token's
log-probability, a loss, a sentence embedding's projection, or any callable). Nothing here runs
the model; :mod:`.importance` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..capture.tokenize import readable_tokens
from ..errors import InputError
from ..models.loading import ModelBundle

Score = Literal["prob", "logprob", "logit", "loss"]


@dataclass(frozen=True)
class Target:
    """What head importance measures: one number per input, computed from the model output.

    Build one with a class method or parse a string (CLI ``--target``):

    ========================  ===================================================================
    ``"auto"`` (default)      classifier: ``predicted``; masked LM: ``predicted`` at the first
                              ``[MASK]``; causal LM and encoder-decoder: ``predicted`` next token
                              after the last decoder position (log-prob); bare encoder:
                              ``embedding``
    ``"predicted"``           score of the class / token the unablated model predicts
    ``"token:Paris"``         :meth:`token` - score of a given token (masked or next position)
    ``"label:POSITIVE"``      :meth:`label` - score of a given class (name or index)
    ``"loss:1"``              :meth:`loss` - cross-entropy loss for a given label or token
    ``"embedding"``           bare encoders: mean-pooled last hidden state projected on the
                              unit vector of the unablated embedding (``"embedding:cosine"``:
                              cosine similarity to it, ablation only; ``"embedding:norm"``)
    a callable                :meth:`custom` - ``fn(output) -> Tensor`` of shape ``(batch,)``
    ========================  ===================================================================

    ``score`` is ``prob`` (classifier and masked-LM default), ``logprob`` (causal-LM default),
    ``logit`` or ``loss`` (negative log-probability). ``position`` picks the sequence position of
    a token-level head (default: first ``[MASK]`` for masked LMs, the last token for causal LMs).
    """

    kind: Literal["auto", "predicted", "token", "label", "embedding", "custom"] = "auto"
    value: str | int | None = None
    score: Score | None = None
    position: int | None = None
    embedding: Literal["projection", "cosine", "norm"] = "projection"
    fn: Callable[[Any], Any] | None = field(default=None, compare=False)

    @classmethod
    def auto(cls) -> Target:
        return cls("auto")

    @classmethod
    def predicted(cls, score: Score | None = None, *, position: int | None = None) -> Target:
        return cls("predicted", score=score, position=position)

    @classmethod
    def token(
        cls, token: str | int, score: Score | None = None, *, position: int | None = None
    ) -> Target:
        """A given token (string of one token, or an id) at the masked / next position."""
        return cls("token", token, score, position)

    @classmethod
    def label(cls, label: str | int, score: Score | None = None) -> Target:
        """A given class of a sequence classifier (a name from ``id2label`` or an index)."""
        return cls("label", label, score)

    @classmethod
    def loss(cls, label: str | int, *, position: int | None = None) -> Target:
        """Cross-entropy loss for ``label`` (a class for classifiers, a token for LMs)."""
        kind: Any = "token" if isinstance(label, str) and not label.isdigit() else "label"
        return cls(kind, label, "loss", position)

    @classmethod
    def sentence_embedding(
        cls, how: Literal["projection", "cosine", "norm"] = "projection"
    ) -> Target:
        return cls("embedding", embedding=how)

    @classmethod
    def custom(cls, fn: Callable[[Any], Any]) -> Target:
        """Any function of the model output returning one value per batch row, e.g.
        ``lambda out: out.logits[:, -1, 42]``."""
        if not callable(fn):
            raise InputError("Target.custom needs a callable fn(output) -> Tensor (batch,)")
        return cls("custom", fn=fn)

    @classmethod
    def parse(cls, spec: Target | str | Callable[[Any], Any] | None) -> Target:
        """Accept a :class:`Target`, ``None``, a callable or a string such as ``token:Paris``."""
        if spec is None:
            return cls()
        if isinstance(spec, Target):
            return spec
        if callable(spec):
            return cls.custom(spec)
        if not isinstance(spec, str):
            raise InputError(f"target must be a string, a Target or a callable, not {spec!r}")
        name, _, arg = spec.partition(":")
        name = name.strip().lower()
        if name in ("auto", "predicted") and not arg:
            return cls(name)  # type: ignore[arg-type]
        if name == "embedding":
            how = arg or "projection"
            if how not in ("projection", "cosine", "norm"):
                raise InputError(f"embedding:{how}: use projection, cosine or norm")
            return cls("embedding", embedding=how)  # type: ignore[arg-type]
        if name in ("token", "label", "loss") and arg:
            value: str | int = int(arg) if arg.lstrip("-").isdigit() else arg
            if name == "loss":
                return cls.loss(value)
            return cls(name, value)  # type: ignore[arg-type]
        raise InputError(
            f"unknown target {spec!r}; use auto, predicted, token:TOKEN, label:LABEL, "
            f"loss:LABEL, embedding[:cosine|:norm], or pass a callable"
        )


@dataclass(frozen=True)
class Resolved:
    """A target bound to one model and input: ``fn(output) -> (batch,)`` plus a description."""

    fn: Callable[[Any], Any]
    description: str


def logit_position(target: Target, bundle: ModelBundle, inputs: Mapping[str, Any]) -> int | None:
    """The one sequence position whose token logits ``target`` reads, known before the model
    runs (``None``: any, a callable may read them all).

    Head importance cuts a language model's logits to this position (:func:`at_position`), so
    an ablation pass of ``rows`` inputs holds ``rows x vocabulary`` logits, not ``rows x tokens
    x vocabulary`` (5 GB for SmolLM2 at 128 tokens and 73 rows).
    """
    if target.kind == "custom":
        return None
    if target.position is not None:
        return target.position
    if bundle.architecture in ("decoder", "encoder-decoder") or target.kind == "embedding":
        return -1
    mask_id = getattr(bundle.tokenizer, "mask_token_id", None)
    hits = (inputs["input_ids"][0] == (-1 if mask_id is None else mask_id)).nonzero()
    return int(hits[0, 0]) if hits.shape[0] else None


def at_position(logits: Any, position: int) -> Any:
    """``logits[:, position]`` of ``(batch, seq, vocab)`` logits, also when they were cut to
    that one position (a length-1 sequence axis)."""
    return logits[:, 0] if logits.shape[1] == 1 else logits[:, position]


def _token_id(bundle: ModelBundle, token: str | int) -> int:
    if isinstance(token, int):
        return token
    tok = bundle.tokenizer
    for candidate in (token, " " + token):
        ids = tok.encode(candidate, add_special_tokens=False)
        if len(ids) == 1:
            return int(ids[0])
    pieces = tok.convert_ids_to_tokens(tok.encode(token, add_special_tokens=False))
    raise InputError(
        f"target token {token!r} is not one token for this tokenizer (it splits into {pieces}); "
        f"give a single token or its id"
    )


def _scored(logits: Any, index: Any, score: str) -> Any:
    import torch

    if score == "logit":
        return logits.gather(-1, index[..., None])[..., 0]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, index[..., None])[..., 0]
    if score == "logprob":
        return logp
    if score == "loss":
        return -logp
    if score == "prob":
        return logp.exp()
    raise InputError(f"score must be prob, logprob, logit or loss, not {score!r}")


def resolve_target(
    target: Target, bundle: ModelBundle, inputs: Mapping[str, Any], clean: Any
) -> Resolved:
    """Bind ``target`` to this model and input, using the unablated output ``clean``."""
    import torch

    if target.kind == "custom":
        assert target.fn is not None
        return Resolved(target.fn, getattr(target.fn, "__name__", "custom function"))
    logits = getattr(clean, "logits", None)
    if target.kind == "embedding" or (target.kind == "auto" and logits is None):
        return _embedding_target(target, bundle, inputs, clean)
    if logits is None:
        raise InputError(
            f"target {target.kind!r} needs logits, but {type(bundle.model).__name__} has no head "
            f"(it returns hidden states): use target='embedding' or a callable"
        )
    kind = "predicted" if target.kind == "auto" else target.kind
    if logits.ndim == 2:  # sequence classifier: (batch, classes)
        score = target.score or "prob"
        if kind == "token":
            raise InputError("this model is a sequence classifier: use label:LABEL, not token:")
        cls_id = _label_id(bundle, target.value) if kind == "label" else int(logits[0].argmax())
        names = getattr(bundle.model.config, "id2label", {}) or {}
        idx = torch.tensor([cls_id], device=logits.device)
        return Resolved(
            lambda out: _scored(out.logits, idx.expand(out.logits.shape[0]), score),
            f"{score} of class {names.get(cls_id, cls_id)!r}",
        )
    # token-level head: (batch, seq, vocab); an encoder-decoder predicts from its decoder side
    causal = bundle.architecture in ("decoder", "encoder-decoder")
    pos = target.position
    if pos is None:
        if causal:
            pos = -1
        else:
            mask_id = getattr(bundle.tokenizer, "mask_token_id", None)
            hits = (inputs["input_ids"][0] == (-1 if mask_id is None else mask_id)).nonzero()
            if hits.shape[0] == 0:
                raise InputError(
                    "a masked-LM target needs a [MASK] token in the text (or Target.token(..., "
                    "position=N)); add the tokenizer's mask token where the prediction is made"
                )
            pos = int(hits[0, 0])
    score = target.score or ("logprob" if causal else "prob")
    if kind == "label":
        kind = "token"
    if kind == "token":
        assert target.value is not None
        tok_id = _token_id(bundle, target.value)
    else:
        tok_id = int(at_position(logits, pos)[0].argmax())
    raw = str(bundle.tokenizer.convert_ids_to_tokens([tok_id])[0])
    special = tok_id in set(bundle.tokenizer.all_special_ids)
    name = readable_tokens(bundle.tokenizer, [raw], [special])[0]  # ␣Paris, not ĠParis
    idx = torch.tensor([tok_id], device=logits.device)
    where = "next token" if causal and pos == -1 else f"position {pos}"
    p = pos
    return Resolved(
        lambda out: _scored(at_position(out.logits, p), idx.expand(out.logits.shape[0]), score),
        f"{score} of token {name!r} ({where})",
    )


def _label_id(bundle: ModelBundle, value: str | int | None) -> int:
    cfg = bundle.model.config
    n = int(getattr(cfg, "num_labels", 0) or 0)
    if isinstance(value, int):
        if not 0 <= value < n:
            raise InputError(f"label {value} is out of range: the classifier has {n} classes")
        return value
    label2id = dict(getattr(cfg, "label2id", {}) or {})
    label2id.update({v: k for k, v in (getattr(cfg, "id2label", {}) or {}).items()})
    if value in label2id:
        return int(label2id[value])
    raise InputError(f"unknown label {value!r}; the classifier's labels: {list(label2id)}")


def _embedding_target(
    target: Target, bundle: ModelBundle, inputs: Mapping[str, Any], clean: Any
) -> Resolved:
    import torch

    def pooled(out: Any) -> Any:
        hidden = getattr(out, "last_hidden_state", None)
        if hidden is None:
            hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) else None
        if hidden is None:
            raise InputError(
                "target 'embedding' needs the last hidden state; this model output has none"
            )
        if "attention_mask" not in inputs:  # images: every patch counts
            return hidden.mean(dim=1)
        mask = inputs["attention_mask"][:1].to(hidden.dtype)[..., None]
        return (hidden * mask).sum(1) / mask.sum(1)

    ref = pooled(clean)[0].float().detach()
    unit = ref / ref.norm()
    how = target.embedding
    if how == "norm":
        return Resolved(
            lambda out: pooled(out).float().norm(dim=-1), "norm of mean-pooled embedding"
        )
    if how == "cosine":
        return Resolved(
            lambda out: torch.nn.functional.cosine_similarity(pooled(out).float(), ref[None]),
            "cosine similarity of the mean-pooled embedding to the unablated one",
        )
    return Resolved(
        lambda out: pooled(out).float() @ unit,
        "mean-pooled embedding projected on the unablated embedding's direction",
    )


def target_values(resolved: Resolved, out: Any, rows: int) -> Any:
    """``resolved``'s values on ``out``: a tensor of shape ``(rows,)`` (checked)."""
    import torch

    value = resolved.fn(out)
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value)
    value = value.reshape(-1) if value.ndim > 1 and value.shape[-1] == 1 else value
    if value.shape != (rows,):
        raise InputError(
            f"the target ({resolved.description}) returned shape {tuple(value.shape)} for a batch "
            f"of {rows}; it must return one value per batch row, e.g. out.logits[:, -1, 42]"
        )
    return value


__all__ = [
    "Resolved",
    "Score",
    "Target",
    "at_position",
    "logit_position",
    "resolve_target",
    "target_values",
]
