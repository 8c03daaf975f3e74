"""Run a loaded model once and keep its verified attention weights.

This module (with the explain module's hooks) is the only one that runs a model. Its output, a
:class:`Capture`, is a frozen, validated object: everything to its right is a pure function of it.

Glossary, used for array axes, docstrings and frame columns alike:
``layer`` (attention layer), ``head`` (query head), ``query`` (the attending position, a row),
``key`` (the attended-to position, a column). ``weights`` has shape ``(layer, head, query, key)``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import numpy as np

from .errors import AttentionUnavailableError, CaptureError, InputError, ResourceError
from .loading import ModelBundle, tokenizer_fingerprint

T = TypeVar("T")

Kind = Literal["self", "encoder", "decoder", "cross"]
KINDS: tuple[str, ...] = ("self", "encoder", "decoder", "cross")

#: Largest |row sum - 1| accepted, by the dtype the model ran in.
ROW_SUM_TOLERANCE = {"float32": 1e-4, "float64": 1e-6, "float16": 2e-2, "bfloat16": 5e-2}
#: Added to the tolerance when weights are stored as float16: each stored weight is off by at most
#: 2**-11 of itself, so a row of weights summing to 1 is off by at most about 5e-4.
FLOAT16_STORAGE_TOLERANCE = 1e-3
#: Storage dtypes accepted by ``capture(dtype=...)``.
STORAGE_DTYPES = ("float32", "float16")


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
        generated: True for tokens the model generated (see :mod:`inspector.generation`), False
            for prompt tokens; all False (the default) for an ordinary capture.
    """

    tokens: tuple[str, ...]
    ids: np.ndarray
    special: np.ndarray
    word_ids: np.ndarray
    sequence_ids: np.ndarray
    offsets: np.ndarray
    texts: tuple[str, ...] = ()
    generated: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if n == 0:
            raise CaptureError("a token sequence is empty")
        flags = np.zeros(n, dtype=bool) if self.generated is None else self.generated
        flags = np.asarray(flags, dtype=bool)
        if flags.shape != (n,):
            raise CaptureError(f"Tokens.generated has shape {flags.shape}, expected ({n},)")
        object.__setattr__(self, "generated", flags)
        for name in ("ids", "special", "word_ids", "sequence_ids"):
            if np.shape(getattr(self, name)) != (n,):
                raise CaptureError(
                    f"Tokens.{name} has shape {np.shape(getattr(self, name))}, expected ({n},)"
                )
        if np.shape(self.offsets) != (n, 2):
            raise CaptureError(
                f"Tokens.offsets has shape {np.shape(self.offsets)}, expected ({n}, 2)"
            )
        for name in ("ids", "special", "word_ids", "sequence_ids", "offsets", "generated"):
            _ro(getattr(self, name))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def prompt_length(self) -> int:
        """Number of tokens before the first generated one (all of them when none was)."""
        hits = np.flatnonzero(np.asarray(self.generated))
        return int(hits[0]) if hits.size else len(self.tokens)

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
        weights: float32 array ``(layer, head, query, key)``; rows sum to 1. A float16 array is
            kept as float16 (a storage option, see ``capture(dtype=...)``); its rows are then
            checked to within ``tolerance`` + :data:`FLOAT16_STORAGE_TOLERANCE`.
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
        if w.dtype == np.float16:
            if self.tolerance < FLOAT16_STORAGE_TOLERANCE:
                object.__setattr__(self, "tolerance", self.tolerance + FLOAT16_STORAGE_TOLERANCE)
        elif w.dtype != np.float32:
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
    # One pass over the weights: a NaN or inf anywhere makes its row sum non-finite, so the
    # row sums check finiteness too (the element-wise scan runs only to name the culprit).
    sums = w.sum(axis=3, dtype=np.float32)
    finite_rows = np.isfinite(sums)
    if not finite_rows.all():
        li, hi = np.argwhere(~finite_rows.all(axis=2))[0]
        raise CaptureError(
            f"{kind} attention has non-finite values (NaN or inf) in layer {layers[li]} head "
            f"{heads[hi]}; the model overflowed, try dtype='float32'"
        )
    bad = np.abs(sums - 1.0) > tolerance
    if bad.any():
        li, hi, qi = np.argwhere(bad)[0]
        raise CaptureError(
            f"{kind} attention rows must sum to 1, but layer {layers[li]} head {heads[hi]} "
            f"query {qi} sums to {sums[li, hi, qi]:.6f}; the model's attention implementation "
            f"does not return softmax weights"
        )
    lowest = float(w.min()) if w.size else 0.0
    if lowest < -tolerance:
        li, hi = np.argwhere(w.min(axis=(2, 3)) < -tolerance)[0]
        raise CaptureError(
            f"{kind} attention has a negative weight ({lowest:.3g}) in layer {layers[li]} head "
            f"{heads[hi]}; attention weights are probabilities"
        )
    if causal and w.shape[2] == w.shape[3] and w.shape[2] > 1:
        # Weights are >= 0 (checked above), so the mass above the diagonal is a masked row sum.
        upper = np.triu(np.ones(w.shape[2:], dtype=w.dtype), k=1)
        leak = max(float(np.einsum("hqk,qk->hq", layer, upper).max()) for layer in w)
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
    """A non-empty string with at least one visible character, or an :class:`InputError`."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InputError(f"{name} is empty; give some text to inspect")
    if all(unicodedata.category(c).startswith(("C", "Z")) for c in value):
        raise InputError(
            f"{name} has only control characters and spaces; give some visible text to inspect"
        )
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


def captured_positions(wanted: Any, present: tuple[int, ...], what: str) -> list[int]:
    """Positions in ``present`` (a stack's model layer or head indexes) of the ``wanted`` ones.

    ``None`` keeps all; an index that was not captured is an :class:`InputError` naming those
    that were.
    """
    if wanted is None:
        return list(range(len(present)))
    out: list[int] = []
    for i in [wanted] if isinstance(wanted, int | np.integer) else list(wanted):
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise InputError(f"{what} indexes must be integers, got {i!r}")
        if int(i) not in present:
            raise InputError(f"{what} {i} was not captured; captured {what}s: {list(present)}")
        if present.index(int(i)) not in out:
            out.append(present.index(int(i)))
    if not out:
        raise InputError(f"no {what}s selected; give at least one {what} index")
    return sorted(out)


def _encode(
    bundle: ModelBundle,
    text: str,
    pair: str | None,
    *,
    truncation: bool,
    max_length: int | None,
    add_special_tokens: bool = True,
) -> Any:
    tok = bundle.tokenizer
    limit = max_length or bundle.max_positions
    kw: dict[str, Any] = {"return_special_tokens_mask": True}
    if not add_special_tokens:  # chat templates write their own special tokens
        kw["add_special_tokens"] = False
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


def check_layer_attentions(attentions: Any, bundle: ModelBundle, kind: str) -> None:
    """Raise unless ``attentions`` holds one weight tensor per layer of the model."""
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


def _stack_attentions(
    attentions: Any, bundle: ModelBundle, kind: str, layers: tuple[int, ...], heads: tuple[int, ...]
) -> np.ndarray:
    import torch

    check_layer_attentions(attentions, bundle, kind)
    picked = [attentions[i] for i in layers]
    stacked = torch.stack([a[0] for a in picked])
    if len(heads) != stacked.shape[1]:
        stacked = stacked[:, list(heads)]
    return stacked.float().cpu().numpy()


# --------------------------------------------------------------------------- hooked recording
#
# Attention is read with forward hooks on the model's own attention modules (the ones its
# ``_can_record_outputs`` names, exactly those transformers itself hooks for output_attentions=True)
# instead of output_attentions=True, which keeps every layer's full matrix alive until the end of
# the forward. Each hook copies only the kept heads of a kept layer into a preallocated buffer, so
# memory follows what is kept. The same recorder serves cached generation: each call of a layer
# appends its query rows after the ones it has already written.


@dataclass(frozen=True)
class AttentionSite:
    """One attention module to hook: its qualified name, the module, and the output index."""

    name: str
    module: Any
    index: int


def _record_specs(model: Any) -> list[tuple[str, Any, int, str | None, str | None]]:
    """``(key, class, index, layer_name, class_name)`` for a model's attention outputs."""
    specs = getattr(type(model), "_can_record_outputs", None) or {}
    out: list[tuple[str, Any, int, str | None, str | None]] = []
    for key in ("attentions", "cross_attentions"):
        entries = specs.get(key)
        if entries is None:
            continue
        for spec in entries if isinstance(entries, list | tuple) else [entries]:
            if isinstance(spec, type):
                out.append((key, spec, 1, None, None))
            elif isinstance(spec, str):
                out.append((key, None, 1, None, spec))
            else:
                out.append(
                    (
                        key,
                        getattr(spec, "target_class", None),
                        int(getattr(spec, "index", 1)),
                        getattr(spec, "layer_name", None),
                        getattr(spec, "class_name", None),
                    )
                )
    return out


def attention_sites(model: Any) -> dict[str, list[AttentionSite]]:
    """The attention modules of ``model`` by kind (``self`` or ``encoder``/``decoder``/``cross``).

    Follows transformers' own rule: a sub-model (a ``PreTrainedModel`` inside the model, e.g. an
    encoder stack) uses its own ``_can_record_outputs``. Modules come in layer order. Returns an
    empty dict for models that declare nothing (then :func:`capture` falls back to
    ``output_attentions=True``).
    """
    from transformers import PreTrainedModel

    found: dict[str, list[AttentionSite]] = {"attentions": [], "cross_attentions": []}

    def visit(module: Any, name: str, tasks: list[Any]) -> None:
        for child_name, child in module.named_children():
            full = f"{name}.{child_name}"
            visit(
                child, full, _record_specs(child) if isinstance(child, PreTrainedModel) else tasks
            )
        for key, cls, index, layer_name, class_name in tasks:
            by_class = cls is not None and isinstance(module, cls)
            if not (by_class or (class_name is not None and name.endswith(class_name))):
                continue
            if layer_name is not None and f".{layer_name.strip('.')}." not in f"{name}.":
                continue
            found[key].append(AttentionSite(name.lstrip("."), module, index))

    visit(model, "", _record_specs(model))
    if not found["attentions"]:
        return {}
    if not getattr(model.config, "is_encoder_decoder", False):
        return {"self": found["attentions"]}
    encoder = model.get_encoder() if hasattr(model, "get_encoder") else None
    in_encoder = {id(m) for m in encoder.modules()} if encoder is not None else set()
    return {
        "encoder": [s for s in found["attentions"] if id(s.module) in in_encoder],
        "decoder": [s for s in found["attentions"] if id(s.module) not in in_encoder],
        "cross": found["cross_attentions"],
    }


def bundle_sites(bundle: ModelBundle) -> dict[str, list[AttentionSite]]:
    """:func:`attention_sites` of a loaded model, found once and kept with the bundle."""
    sites = bundle.extra.get("attention_sites")
    if sites is None:
        sites = bundle.extra["attention_sites"] = attention_sites(bundle.model)
    return dict(sites)


def storage_dtype(dtype: Any) -> str:
    """Validate a storage dtype (``None``, ``"float32"``, ``"float16"``, numpy or torch dtypes)."""
    if dtype is None:
        return "float32"
    name = str(getattr(dtype, "__name__", dtype)).replace("torch.", "").replace("numpy.", "")
    if name not in STORAGE_DTYPES:
        raise InputError(
            f"dtype={dtype!r} is not a storage option for attention weights; use 'float32' "
            f"(default) or 'float16' (half the memory, rows checked to 1e-3)"
        )
    return name


class AttentionRecorder:
    """Context manager: forward hooks that copy kept attention slices into buffers.

    Args:
        sites: attention modules by kind, from :func:`attention_sites`.
        layers / heads: model indexes to keep (sorted, validated).
        shapes: ``kind -> (rows, cols)``: the most query rows and key columns to hold.
        dtype: ``"float32"`` or ``"float16"`` storage.
        causal_kinds: kinds whose key count must equal the rows written so far plus the new ones
            (a consistency check on cached generation).

    Each call of a kept layer writes its ``(head, q, k)`` weights at rows ``filled .. filled+q``
    and columns ``0 .. k``. Hooks are removed on exit, also when the forward raised.
    """

    def __init__(
        self,
        sites: Mapping[str, Sequence[AttentionSite]],
        layers: tuple[int, ...],
        heads: tuple[int, ...],
        shapes: Mapping[str, tuple[int, int]],
        *,
        dtype: str = "float32",
        causal_kinds: Sequence[str] = ("self", "decoder"),
        model_name: str = "model",
    ) -> None:
        import torch

        self.sites = {k: list(sites[k]) for k in shapes}
        self.layers = layers
        self.heads = heads
        self.model_name = model_name
        self.causal_kinds = tuple(causal_kinds)
        torch_dtype = getattr(torch, dtype)
        # empty, not zeros: every row a hook writes is written in full (its columns past the
        # keys it saw are zeroed there), and weights() cuts away rows no hook wrote; zeroing
        # the whole buffer first would cost a second pass over hundreds of MiB.
        self.buffers = {
            k: torch.empty((len(layers), len(heads), rows, cols), dtype=torch_dtype)
            for k, (rows, cols) in shapes.items()
        }
        self.filled = {k: [0] * len(layers) for k in shapes}
        self.width = {k: 0 for k in shapes}
        self.calls = {k: 0 for k in shapes}
        self._head_index: Any = None
        self._handles: list[Any] = []

    def __enter__(self) -> AttentionRecorder:
        import torch

        for kind, sites in self.sites.items():
            if len(sites) <= max(self.layers):
                raise CaptureError(
                    f"{self.model_name}: found {len(sites)} {kind} attention modules, but layer "
                    f"{max(self.layers)} was asked for"
                )
        try:
            for kind, sites in self.sites.items():
                for li, layer in enumerate(self.layers):
                    hook = self._hook(kind, li, sites[layer].index)
                    self._handles.append(sites[layer].module.register_forward_hook(hook))
        except BaseException:
            self.remove()
            raise
        self._head_index = torch.tensor(self.heads)
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove every hook (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, kind: str, li: int, index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            w = output[index] if isinstance(output, tuple | list) else None
            if w is None:
                raise AttentionUnavailableError(
                    f"{self.model_name}: the {kind} attention module of layer {self.layers[li]} "
                    f"returned no weights; load the model with attn_implementation='eager' — "
                    f"inspector.load does this for you"
                )
            if w.dim() != 4 or w.shape[0] != 1:
                raise CaptureError(
                    f"{self.model_name}: {kind} attention of layer {self.layers[li]} has shape "
                    f"{tuple(w.shape)}; expected (1, head, query, key): one input at a time"
                )
            buf = self.buffers[kind]
            start = self.filled[kind][li]
            q, k = int(w.shape[2]), int(w.shape[3])
            if kind in self.causal_kinds and k != start + q:
                raise CaptureError(
                    f"{self.model_name}: {kind} attention of layer {self.layers[li]} sees {k} "
                    f"keys after {start} earlier rows and {q} new ones; caches that drop or "
                    f"reorder tokens (beam search, sliding windows) are not supported"
                )
            if start + q > buf.shape[2] or k > buf.shape[3]:
                raise CaptureError(
                    f"{self.model_name}: {kind} attention grew to {start + q} x {k} positions, "
                    f"more than the {buf.shape[2]} x {buf.shape[3]} expected"
                )
            part = (
                w[0]
                if len(self.heads) == w.shape[1]
                else w[0].index_select(0, self._head_index.to(w.device))
            )
            buf[li, :, start : start + q, :k].copy_(part)
            if k < buf.shape[3]:
                buf[li, :, start : start + q, k:].zero_()
            self.filled[kind][li] = start + q
            self.width[kind] = max(self.width[kind], k)
            self.calls[kind] += 1

        return hook

    def rows(self, kind: str) -> int:
        """Query rows written so far (the same for every kept layer after a full forward)."""
        counts = set(self.filled[kind])
        if len(counts) != 1:
            raise CaptureError(
                f"{self.model_name}: the kept {kind} layers ran a different number of times "
                f"({sorted(counts)} rows); did the forward stop early?"
            )
        return counts.pop()

    def weights(self, kind: str, rows: int | None = None, cols: int | None = None) -> np.ndarray:
        """The recorded ``(layer, head, query, key)`` array, cut to ``rows`` x ``cols``."""
        rows = self.rows(kind) if rows is None else rows
        cols = self.width[kind] if cols is None else cols
        if self.calls[kind] == 0:
            raise AttentionUnavailableError(
                f"{self.model_name}: no {kind} attention module ran during the forward pass"
            )
        written = self.rows(kind)
        if rows > written:
            raise CaptureError(
                f"{self.model_name}: the {kind} attention modules wrote {written} query rows, "
                f"{rows} were expected; the forward pass did not see the whole input"
            )
        buf = self.buffers[kind]
        if rows == buf.shape[2] and cols == buf.shape[3]:
            return buf.numpy()
        return buf[:, :, :rows, :cols].contiguous().numpy()


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """Read once per process: parsing package metadata costs ~10 ms, more than a short forward."""
    return tuple(_package_versions().items())


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
        "kv_heads": list(kv_head_map(bundle.n_heads, bundle.n_kv_heads)),
        "n_parameters": bundle.n_parameters,
        "max_positions": bundle.max_positions,
        "attn_implementation": bundle.attn_implementation,
        "tokenizer_fingerprint": tokenizer_fingerprint(bundle),
        "dtype": bundle.dtype,
        "device": bundle.device,
        "versions": dict(_installed_versions()),
    }


def kv_head_map(n_heads: int, n_kv_heads: int) -> tuple[int, ...]:
    """The key/value head each query head reads under grouped-query attention.

    transformers repeats each key/value head ``n_heads // n_kv_heads`` times in a row
    (``repeat_kv``), so query head ``h`` shares key/value head ``h // (n_heads // n_kv_heads)``.

    Example:
        >>> kv_head_map(9, 3)
        (0, 0, 0, 1, 1, 1, 2, 2, 2)
    """
    if n_kv_heads < 1 or n_heads % n_kv_heads:
        raise CaptureError(
            f"{n_heads} query heads cannot share {n_kv_heads} key/value heads evenly; check the "
            f"config's num_key_value_heads"
        )
    group = n_heads // n_kv_heads
    return tuple(h // group for h in range(n_heads))


def kv_groups(capture: Capture, kind: str | None = None) -> dict[int, tuple[int, ...]]:
    """Kept query heads by the key/value head they share (grouped-query attention).

    Example: SmolLM2 (9 query heads, 3 key/value heads) gives
    ``{0: (0, 1, 2), 1: (3, 4, 5), 2: (6, 7, 8)}``.
    """
    kind = kind or ("decoder" if capture.is_encoder_decoder else "self")
    heads = capture.stacks[kind].heads
    kv = capture.metadata.get("kv_heads") or list(range(max(heads) + 1))
    groups: dict[int, list[int]] = {}
    for h in heads:
        groups.setdefault(int(kv[h]), []).append(h)
    return {g: tuple(hs) for g, hs in sorted(groups.items())}


def chat_text(bundle: ModelBundle, messages: Any, *, add_generation_prompt: bool = False) -> str:
    """Apply the tokenizer's chat template to ``messages`` and return the templated text.

    Args:
        messages: a list of ``{"role": ..., "content": ...}`` dicts with string values.
        add_generation_prompt: end with the assistant's turn header (for generation).
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
        raise InputError(
            'messages must be a non-empty list of {"role": ..., "content": ...} dicts, e.g. '
            '[{"role": "user", "content": "Hi"}]'
        )
    for i, msg in enumerate(messages):
        if (
            not isinstance(msg, Mapping)
            or not isinstance(msg.get("role"), str)
            or not isinstance(msg.get("content"), str)
        ):
            raise InputError(
                f"messages[{i}] must be a dict with string 'role' and 'content', got {msg!r}"
            )
    tok = bundle.tokenizer
    if not getattr(tok, "chat_template", None):
        raise InputError(
            f"{bundle.name}: its tokenizer has no chat template; pass the text itself instead "
            f"of messages="
        )
    text = tok.apply_chat_template(
        [dict(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
    )
    return _check_text(text, "the chat template's output")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for numpy's and torch's ways of saying an allocation failed."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text
    )


def out_of_memory_hint(func: Callable[..., T]) -> Callable[..., T]:
    """Turn an allocation failure inside ``func`` into a :class:`ResourceError` with a fix."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            raise ResourceError(
                "ran out of memory while capturing attention; keep less with layers=[...] / "
                "heads=[...] (CLI --layers/--heads), store dtype='float16', or use a shorter "
                f"input (truncation=True, max_length=...) [{type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else 'no details'}]"
            ) from exc

    return wrapper


@out_of_memory_hint
def capture(
    bundle: ModelBundle,
    text: str | None = None,
    text_pair: str | None = None,
    *,
    target: str | None = None,
    truncation: bool = False,
    max_length: int | None = None,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    messages: Sequence[Mapping[str, str]] | None = None,
    add_generation_prompt: bool = False,
    dtype: Any = None,
) -> Capture:
    """Run ``bundle``'s model on one input and return its verified attention.

    Only the kept layers and heads are copied out of the model while it runs (forward hooks on
    its attention modules), so memory follows what is kept: 3 of SmolLM2's 30 layers hold a
    tenth of the full capture.

    Args:
        bundle: a loaded model.
        text: the input text.
        text_pair: an optional second text (sentence pair, e.g. for NLI or QA).
        target: decoder text for encoder-decoder models (default: the decoder start token only).
        truncation: cut inputs longer than the model's limit instead of raising.
        max_length: a lower limit than the model's own.
        layers, heads: keep only these layer / head indexes.
        messages: instead of ``text``, a chat (``[{"role": "user", "content": ...}]``) rendered
            with the tokenizer's chat template (its special tokens come from the template).
        add_generation_prompt: with ``messages``, end with the assistant's turn header.
        dtype: storage of the weights: ``"float32"`` (default) or ``"float16"`` (half the memory;
            rows then sum to 1 within 1e-3).

    Returns:
        A :class:`Capture` with ``weights`` of shape ``(layer, head, query, key)``.
    """
    import torch

    add_special = True
    if messages is not None:
        if text is not None or text_pair is not None:
            raise InputError("give either text (and text_pair) or messages=, not both")
        text = chat_text(bundle, messages, add_generation_prompt=add_generation_prompt)
        add_special = False
    elif text is None:
        raise InputError("give the text to inspect, or a chat as messages=[...]")
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
    store = storage_dtype(dtype)

    enc = _encode(
        bundle,
        text,
        text_pair,
        truncation=truncation,
        max_length=max_length,
        add_special_tokens=add_special,
    )
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
        storage_dtype=store,
    )
    if messages is not None:
        meta["messages"] = [dict(m) for m in messages]

    n = len(tokens)
    if bundle.architecture == "encoder-decoder":
        dec_tokens = _decoder_tokens(bundle, target)
        inputs["decoder_input_ids"] = torch.tensor(dec_tokens.ids.tolist(), device=device)[None]
        d = len(dec_tokens)
        shapes = {"encoder": (n, n), "decoder": (d, d), "cross": (d, n)}
        arrays = _run_recorded(bundle, inputs, {}, shapes, layer_idx, head_idx, store)
        spec = {
            "encoder": (tokens, tokens, False),
            "decoder": (dec_tokens, dec_tokens, True),
            "cross": (dec_tokens, tokens, False),
        }
        stacks = {
            kind: AttentionStack(arrays[kind], q, k, kind, causal, layer_idx, head_idx, tolerance)
            for kind, (q, k, causal) in spec.items()
        }
        return Capture(stacks, meta)

    call_kw: dict[str, Any] = {}
    if bundle.architecture == "decoder" and _accepts(model, "logits_to_keep"):
        call_kw["logits_to_keep"] = 1
    arrays = _run_recorded(bundle, inputs, call_kw, {"self": (n, n)}, layer_idx, head_idx, store)
    stack = AttentionStack(
        arrays["self"],
        tokens,
        tokens,
        "self",
        bundle.architecture == "decoder",
        layer_idx,
        head_idx,
        tolerance,
    )
    return Capture({"self": stack}, meta)


def _run_recorded(
    bundle: ModelBundle,
    inputs: Mapping[str, Any],
    call_kw: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, int]],
    layers: tuple[int, ...],
    heads: tuple[int, ...],
    store: str,
) -> dict[str, np.ndarray]:
    """One forward pass; the kept ``(layer, head, query, key)`` arrays by kind."""
    import torch

    model = bundle.model
    sites = bundle_sites(bundle)
    if sites and all(len(sites.get(kind, ())) == bundle.n_layers for kind in shapes):
        recorder = AttentionRecorder(
            sites, layers, heads, shapes, dtype=store, model_name=bundle.name
        )
        # The lock keeps other threads' passes out of this pass's hooks (and ours out of theirs).
        with bundle.lock, recorder, torch.inference_mode():
            model(**inputs, return_dict=True, **call_kw)
        return {kind: recorder.weights(kind, *shape) for kind, shape in shapes.items()}
    # No hookable attention modules (e.g. remote code): ask the model for every layer's weights.
    with bundle.lock, torch.inference_mode():
        out = model(**inputs, output_attentions=True, return_dict=True, **call_kw)
    names = {"self": "attentions", "encoder": "encoder_attentions"}
    names.update(decoder="decoder_attentions", cross="cross_attentions")
    return {
        kind: _stack_attentions(
            getattr(out, names[kind], None), bundle, kind, layers, heads
        ).astype(store, copy=False)
        for kind in shapes
    }


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
