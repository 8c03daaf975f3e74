"""Run a loaded model once and keep its verified attention weights.

This module (with the explain module's hooks) is the only one that runs a model. Its output, a
:class:`Capture`, is a frozen, validated object: everything to its right is a pure function of it.

Glossary, used for array axes, docstrings and frame columns alike:
``layer`` (attention layer), ``head`` (query head), ``query`` (the attending position, a row),
``key`` (the attended-to position, a column). ``weights`` has shape ``(layer, head, query, key)``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from .errors import AttentionUnavailableError, CaptureError, InputError
from .loading import ModelBundle

Kind = Literal["self", "encoder", "decoder", "cross"]
KINDS: tuple[str, ...] = ("self", "encoder", "decoder", "cross")

#: Largest |row sum - 1| accepted, by the dtype the model ran in.
ROW_SUM_TOLERANCE = {"float32": 1e-4, "float64": 1e-6, "float16": 2e-2, "bfloat16": 5e-2}


def _ro(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Tokens:
    """One token sequence as the tokenizer shows it.

    Attributes:
        tokens: token strings, e.g. ``("[CLS]", "the", "cat", ...)``.
        ids: token ids, shape ``(n,)``.
        special: True for special tokens (``[CLS]``, ``<s>``, padding never appears).
        word_ids: index of the word each token belongs to, ``-1`` for special tokens. Words are
            numbered across a text pair (the second text's words follow the first's).
        sequence_ids: ``0`` for the first text, ``1`` for the pair text, ``-1`` for special tokens.
        offsets: ``(n, 2)`` character offsets into the token's own text, ``-1`` where unknown.
        texts: the source texts (one, or two for a pair).
    """

    tokens: tuple[str, ...]
    ids: np.ndarray
    special: np.ndarray
    word_ids: np.ndarray
    sequence_ids: np.ndarray
    offsets: np.ndarray
    texts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if n == 0:
            raise CaptureError("a token sequence is empty")
        for name in ("ids", "special", "word_ids", "sequence_ids"):
            if np.shape(getattr(self, name)) != (n,):
                raise CaptureError(
                    f"Tokens.{name} has shape {np.shape(getattr(self, name))}, expected ({n},)"
                )
        if np.shape(self.offsets) != (n, 2):
            raise CaptureError(
                f"Tokens.offsets has shape {np.shape(self.offsets)}, expected ({n}, 2)"
            )
        for name in ("ids", "special", "word_ids", "sequence_ids", "offsets"):
            _ro(getattr(self, name))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def sentence_b_start(self) -> int | None:
        """Position of the first token of the pair text, or ``None`` for a single text."""
        hits = np.flatnonzero(self.sequence_ids == 1)
        return int(hits[0]) if hits.size else None

    @property
    def n_words(self) -> int:
        return int(self.word_ids.max()) + 1 if (self.word_ids >= 0).any() else 0

    def word_strings(self) -> list[str]:
        """The text of each word, read from the source text through character offsets."""
        words: list[str] = []
        for w in range(self.n_words):
            idx = np.flatnonzero(self.word_ids == w)
            seq = int(self.sequence_ids[idx[0]])
            starts, ends = self.offsets[idx, 0], self.offsets[idx, 1]
            if self.texts and seq >= 0 and seq < len(self.texts) and (starts >= 0).all():
                words.append(self.texts[seq][int(starts.min()) : int(ends.max())].strip())
            else:
                words.append("".join(_strip_marker(self.tokens[i]) for i in idx))
        return words


def _strip_marker(token: str) -> str:
    return token.replace("##", "").replace("Ġ", "").replace("▁", "")


@dataclass(frozen=True, eq=False)
class AttentionStack:
    """Verified attention weights of one kind (self, encoder, decoder or cross).

    Attributes:
        weights: float32 array ``(layer, head, query, key)``; rows sum to 1.
        query: tokens along the query axis.
        key: tokens along the key axis (the same object as ``query`` for self-attention).
        kind: ``self``, ``encoder``, ``decoder`` or ``cross``.
        causal: True when a query may not see later keys (then the upper triangle is 0).
        layers: the model's layer index for each entry of axis 0.
        heads: the model's head index for each entry of axis 1.
        tolerance: accepted |row sum - 1|.
    """

    weights: np.ndarray
    query: Tokens
    key: Tokens
    kind: str = "self"
    causal: bool = False
    layers: tuple[int, ...] = ()
    heads: tuple[int, ...] = ()
    tolerance: float = 1e-4

    def __post_init__(self) -> None:
        w = self.weights
        if self.kind not in KINDS:
            raise CaptureError(f"unknown attention kind {self.kind!r}; one of {KINDS}")
        if not isinstance(w, np.ndarray) or w.ndim != 4:
            raise CaptureError(
                f"{self.kind} attention must be a 4-d array (layer, head, query, key), got "
                f"{getattr(w, 'shape', type(w).__name__)}"
            )
        if w.dtype != np.float32:
            object.__setattr__(self, "weights", w := w.astype(np.float32))
        n_layers, n_heads, n_q, n_k = w.shape
        if not self.layers:
            object.__setattr__(self, "layers", tuple(range(n_layers)))
        if not self.heads:
            object.__setattr__(self, "heads", tuple(range(n_heads)))
        if len(self.layers) != n_layers or len(self.heads) != n_heads:
            raise CaptureError(
                f"{self.kind} attention has {n_layers} layers x {n_heads} heads but names "
                f"{len(self.layers)} layers and {len(self.heads)} heads"
            )
        if (n_q, n_k) != (len(self.query), len(self.key)):
            raise CaptureError(
                f"{self.kind} attention covers {n_q} x {n_k} positions but there are "
                f"{len(self.query)} query and {len(self.key)} key tokens"
            )
        verify_weights(
            w,
            kind=self.kind,
            layers=self.layers,
            heads=self.heads,
            causal=self.causal,
            tolerance=self.tolerance,
        )
        _ro(w)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        n_l, n_h, n_q, n_k = self.weights.shape
        return (n_l, n_h, n_q, n_k)


def verify_weights(
    w: np.ndarray,
    *,
    kind: str = "self",
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    causal: bool = False,
    tolerance: float = 1e-4,
) -> None:
    """Raise :class:`CaptureError` unless ``w`` is finite, rows sum to 1 and causality holds."""
    layers = list(layers) if layers is not None else list(range(w.shape[0]))
    heads = list(heads) if heads is not None else list(range(w.shape[1]))
    finite = np.isfinite(w).all(axis=(2, 3))
    if not finite.all():
        li, hi = np.argwhere(~finite)[0]
        raise CaptureError(
            f"{kind} attention has non-finite values (NaN or inf) in layer {layers[li]} head "
            f"{heads[hi]}; the model overflowed, try dtype='float32'"
        )
    sums = w.sum(axis=3, dtype=np.float64)
    bad = np.abs(sums - 1.0) > tolerance
    if bad.any():
        li, hi, qi = np.argwhere(bad)[0]
        raise CaptureError(
            f"{kind} attention rows must sum to 1, but layer {layers[li]} head {heads[hi]} "
            f"query {qi} sums to {sums[li, hi, qi]:.6f}; the model's attention implementation "
            f"does not return softmax weights"
        )
    if causal and w.shape[2] == w.shape[3]:
        upper = np.triu(np.ones(w.shape[2:], dtype=bool), k=1)
        leak = np.abs(w[..., upper]).max() if upper.any() else 0.0
        if leak > tolerance:
            raise CaptureError(
                f"{kind} attention is causal but puts weight {leak:.3g} on later tokens"
            )


@dataclass(frozen=True, eq=False)
class Capture:
    """Everything one forward pass gave: attention stacks by kind, plus metadata.

    Self-attention models have one stack, ``"self"``; encoder-decoder models have ``"encoder"``,
    ``"decoder"`` and ``"cross"``.
    """

    stacks: Mapping[str, AttentionStack]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.stacks:
            raise CaptureError("a capture needs at least one attention stack")
        for key, stack in self.stacks.items():
            if key != stack.kind:
                raise CaptureError(f"stack stored as {key!r} is of kind {stack.kind!r}")
        object.__setattr__(self, "stacks", MappingProxyType(dict(self.stacks)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def is_encoder_decoder(self) -> bool:
        return "self" not in self.stacks


# --------------------------------------------------------------------------- running the model


def _check_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{name} is empty; give some text to inspect")
    return value


def _select(indexes: Sequence[int] | None, count: int, what: str) -> tuple[int, ...]:
    if indexes is None:
        return tuple(range(count))
    if isinstance(indexes, int | np.integer):
        indexes = [int(indexes)]
    out: list[int] = []
    for i in indexes:
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise InputError(f"{what} indexes must be integers, got {i!r}")
        j = int(i) + count if int(i) < 0 else int(i)
        if not 0 <= j < count:
            raise InputError(
                f"{what} {i} is out of range: the model has {count} {what}s (0..{count - 1})"
            )
        if j not in out:
            out.append(j)
    if not out:
        raise InputError(f"no {what}s selected; give at least one {what} index")
    return tuple(sorted(out))


def select_indexes(indexes: Sequence[int] | int | None, count: int, what: str) -> tuple[int, ...]:
    """Validate layer or head indexes (negative counts from the end) and sort them."""
    return _select(indexes, count, what)  # type: ignore[arg-type]


def _encode(
    bundle: ModelBundle, text: str, pair: str | None, *, truncation: bool, max_length: int | None
) -> Any:
    tok = bundle.tokenizer
    limit = max_length or bundle.max_positions
    kw: dict[str, Any] = {"return_special_tokens_mask": True}
    if getattr(tok, "is_fast", False):
        kw["return_offsets_mapping"] = True
    if truncation:
        if limit is None:
            raise InputError("truncation=True needs max_length=: this model has no position limit")
        kw.update(truncation=True, max_length=limit)
    enc = tok(text, pair, **kw) if pair is not None else tok(text, **kw)
    n = len(enc["input_ids"])
    if limit is not None and n > limit:
        raise InputError(
            f"the input is {n} tokens but the model accepts at most {limit}; shorten it or pass "
            f"truncation=True (CLI: --truncate) to keep the first {limit} tokens"
        )
    if n == 0:
        raise InputError("the tokenizer produced no tokens for this text")
    return enc


def _tokens_from_encoding(bundle: ModelBundle, enc: Any, texts: tuple[str, ...]) -> Tokens:
    tok = bundle.tokenizer
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    n = ids.shape[0]
    special = np.asarray(enc.get("special_tokens_mask", [0] * n), dtype=bool)
    # A tokenizer's special_tokens_mask only covers added [CLS]/[SEP]; also flag e.g. <s> typed in.
    special |= np.isin(ids, np.asarray(list(tok.all_special_ids), dtype=np.int64))
    if getattr(tok, "is_fast", False) and hasattr(enc, "word_ids"):
        raw_words = enc.word_ids()
        raw_seqs = enc.sequence_ids()
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(n, 2)
    else:
        raw_words, raw_seqs = _heuristic_words(tok.convert_ids_to_tokens(ids.tolist()), special)
        offsets = np.full((n, 2), -1, dtype=np.int32)
    seqs = np.array([-1 if s is None else s for s in raw_seqs], dtype=np.int8)
    words = np.full(n, -1, dtype=np.int32)
    seen: dict[tuple[int, int], int] = {}
    for i, (s, w) in enumerate(zip(raw_seqs, raw_words, strict=True)):
        if w is None or special[i]:
            continue
        words[i] = seen.setdefault((s or 0, w), len(seen))
    seqs[special] = -1
    offsets[special] = -1
    return Tokens(
        tokens=tuple(tok.convert_ids_to_tokens(ids.tolist())),
        ids=ids,
        special=special,
        word_ids=words,
        sequence_ids=seqs,
        offsets=offsets,
        texts=texts,
    )


def _heuristic_words(tokens: list[str], special: np.ndarray) -> tuple[list[Any], list[Any]]:
    """Word ids for slow tokenizers, which have no word_ids(): read the sub-word markers."""
    words: list[Any] = []
    w = -1
    for i, t in enumerate(tokens):
        if special[i]:
            words.append(None)
            continue
        if w < 0 or (
            not t.startswith("##")
            and not (i > 0 and not t.startswith(("Ġ", "▁")) and tokens[i - 1].endswith("@@"))
        ):
            w += 1
        words.append(w)
    return words, [None if s else 0 for s in special]


def _stack_attentions(
    attentions: Any, bundle: ModelBundle, kind: str, layers: tuple[int, ...], heads: tuple[int, ...]
) -> np.ndarray:
    import torch

    if attentions is None or len(attentions) == 0 or any(a is None for a in attentions):
        raise AttentionUnavailableError(
            f"{bundle.name}: the model returned no {kind} attention weights (attention "
            f"implementation {bundle.attn_implementation!r}); load it with "
            f"attn_implementation='eager' — inspector.load does this for you"
        )
    if len(attentions) != bundle.n_layers:
        raise CaptureError(
            f"{bundle.name}: got {len(attentions)} {kind} attention layers, the config says "
            f"{bundle.n_layers}; encoder and decoder stacks of different depth are not supported"
        )
    picked = [attentions[i] for i in layers]
    stacked = torch.stack([a[0] for a in picked])
    if len(heads) != stacked.shape[1]:
        stacked = stacked[:, list(heads)]
    return stacked.float().cpu().numpy()


def _package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("attention-inspector", "transformers", "torch", "tokenizers"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def bundle_metadata(bundle: ModelBundle) -> dict[str, Any]:
    """The model facts recorded with every capture."""
    return {
        "model_name": bundle.name,
        "model_source": bundle.source,
        "model_type": bundle.model_type,
        "model_class": type(bundle.model).__name__,
        "architecture": bundle.architecture,
        "n_layers": bundle.n_layers,
        "n_heads": bundle.n_heads,
        "n_kv_heads": bundle.n_kv_heads,
        "n_parameters": bundle.n_parameters,
        "max_positions": bundle.max_positions,
        "attn_implementation": bundle.attn_implementation,
        "dtype": bundle.dtype,
        "device": bundle.device,
        "versions": _package_versions(),
    }


def capture(
    bundle: ModelBundle,
    text: str,
    text_pair: str | None = None,
    *,
    target: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
) -> Capture:
    """Run ``bundle``'s model on one input and return its verified attention.

    Args:
        bundle: a loaded model.
        text: the input text.
        text_pair: an optional second text (sentence pair, e.g. for NLI or QA).
        target: decoder text for encoder-decoder models (default: the decoder start token only).
        truncation: cut inputs longer than the model's limit instead of raising.
        max_length: a lower limit than the model's own.
        layers, heads: keep only these layer / head indexes.

    Returns:
        A :class:`Capture` with ``weights`` of shape ``(layer, head, query, key)``.
    """
    import torch

    text = _check_text(text, "text")
    if text_pair is not None:
        text_pair = _check_text(text_pair, "text_pair")
    if target is not None:
        target = _check_text(target, "target")
        if bundle.architecture != "encoder-decoder":
            raise InputError(
                "target= is for encoder-decoder models (T5, BART); use text_pair= for a second text"
            )
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise InputError(f"max_length must be a positive integer, got {max_length!r}")
    layer_idx = select_indexes(layers, bundle.n_layers, "layer")
    head_idx = select_indexes(heads, bundle.n_heads, "head")

    enc = _encode(bundle, text, text_pair, truncation=truncation, max_length=max_length)
    texts = (text,) if text_pair is None else (text, text_pair)
    tokens = _tokens_from_encoding(bundle, enc, texts)
    model = bundle.model
    device = next(model.parameters()).device
    inputs: dict[str, Any] = {"input_ids": torch.tensor(tokens.ids.tolist(), device=device)[None]}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "token_type_ids" in enc and _accepts(model, "token_type_ids"):
        inputs["token_type_ids"] = torch.as_tensor(enc["token_type_ids"], device=device)[None]
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
    meta = bundle_metadata(bundle)
    meta.update(
        text=text,
        text_pair=text_pair,
        target=target,
        truncated=bool(truncation and len(tokens) >= (max_length or bundle.max_positions or 0)),
    )

    if bundle.architecture == "encoder-decoder":
        dec_tokens = _decoder_tokens(bundle, target)
        inputs["decoder_input_ids"] = torch.tensor(dec_tokens.ids.tolist(), device=device)[None]
        with torch.inference_mode():
            out = model(**inputs, output_attentions=True, return_dict=True)
        stacks = {
            "encoder": AttentionStack(
                _stack_attentions(out.encoder_attentions, bundle, "encoder", layer_idx, head_idx),
                tokens,
                tokens,
                "encoder",
                False,
                layer_idx,
                head_idx,
                tolerance,
            ),
            "decoder": AttentionStack(
                _stack_attentions(out.decoder_attentions, bundle, "decoder", layer_idx, head_idx),
                dec_tokens,
                dec_tokens,
                "decoder",
                True,
                layer_idx,
                head_idx,
                tolerance,
            ),
            "cross": AttentionStack(
                _stack_attentions(out.cross_attentions, bundle, "cross", layer_idx, head_idx),
                dec_tokens,
                tokens,
                "cross",
                False,
                layer_idx,
                head_idx,
                tolerance,
            ),
        }
        return Capture(stacks, meta)

    call_kw: dict[str, Any] = {}
    if bundle.architecture == "decoder" and _accepts(model, "logits_to_keep"):
        call_kw["logits_to_keep"] = 1
    with torch.inference_mode():
        out = model(**inputs, output_attentions=True, return_dict=True, **call_kw)
    weights = _stack_attentions(
        getattr(out, "attentions", None), bundle, "self", layer_idx, head_idx
    )
    stack = AttentionStack(
        weights,
        tokens,
        tokens,
        "self",
        bundle.architecture == "decoder",
        layer_idx,
        head_idx,
        tolerance,
    )
    return Capture({"self": stack}, meta)


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _decoder_tokens(bundle: ModelBundle, target: str | None) -> Tokens:
    tok = bundle.tokenizer
    cfg = bundle.model.config
    gen = getattr(bundle.model, "generation_config", None)
    start = getattr(cfg, "decoder_start_token_id", None)
    if start is None and gen is not None:
        start = getattr(gen, "decoder_start_token_id", None)
    if start is None:
        start = tok.pad_token_id if tok.pad_token_id is not None else tok.bos_token_id
    if start is None:
        raise CaptureError(f"{bundle.name}: the config names no decoder start token")
    if target is None:
        ids = np.array([start], dtype=np.int64)
        return Tokens(
            tuple(tok.convert_ids_to_tokens([start])),
            ids,
            np.array([True]),
            np.array([-1], dtype=np.int32),
            np.array([-1], dtype=np.int8),
            np.full((1, 2), -1, dtype=np.int32),
            (),
        )
    enc = tok(
        text_target=target,
        return_special_tokens_mask=True,
        **({"return_offsets_mapping": True} if getattr(tok, "is_fast", False) else {}),
    )
    inner = _tokens_from_encoding(bundle, enc, (target,))
    return Tokens(
        tokens=(tok.convert_ids_to_tokens([start])[0], *inner.tokens),
        ids=np.concatenate([[start], inner.ids]).astype(np.int64),
        special=np.concatenate([[True], inner.special]),
        word_ids=np.concatenate([[-1], inner.word_ids]).astype(np.int32),
        sequence_ids=np.concatenate([[-1], inner.sequence_ids]).astype(np.int8),
        offsets=np.concatenate([[[-1, -1]], inner.offsets]).astype(np.int32),
        texts=(target,),
    )
