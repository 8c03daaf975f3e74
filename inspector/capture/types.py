"""The validated data a capture hands to everything right of it: tokens and verified weights.

Pure data: nothing here runs or loads a model, so analysis, frames and rendering can use these
types with nothing but numpy (``torch.softmax(torch.randn(2, 3, 5, 5), -1).numpy()`` makes a valid
stack).

Glossary, used for array axes, docstrings and frame columns alike:
``layer`` (attention layer), ``head`` (query head), ``query`` (the attending position, a row),
``key`` (the attended-to position, a column). ``weights`` has shape ``(layer, head, query, key)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias

import numpy as np

from ..errors import CaptureError, InputError

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
        generated: True for tokens the model generated (see :mod:`inspector.capture.generate`),
            False for prompt tokens; all False (the default) for an ordinary capture.
        type_ids: the tokenizer's own ``token_type_ids`` (segment ids), all 0 by default.
        readable: each token as a person reads it (``Ġcapital`` → ``␣capital``, ``Ċ`` → ``⏎``,
            bytes decoded); made by the tokenizer when it captures, else from the markers
            (:func:`readable_token`). Frames and tooltips keep the raw ``tokens``.
    """

    tokens: tuple[str, ...]
    ids: np.ndarray
    special: np.ndarray
    word_ids: np.ndarray
    sequence_ids: np.ndarray
    offsets: np.ndarray
    texts: tuple[str, ...] = ()
    generated: np.ndarray | None = None
    type_ids: np.ndarray | None = None
    readable: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if n == 0:
            raise CaptureError("a token sequence is empty")
        if self.readable is None:
            object.__setattr__(self, "readable", tuple(readable_token(t) for t in self.tokens))
        elif len(self.readable) != n:
            raise CaptureError(f"Tokens.readable has {len(self.readable)} entries, expected {n}")
        flags = np.zeros(n, dtype=bool) if self.generated is None else self.generated
        object.__setattr__(self, "generated", np.asarray(flags, dtype=bool))
        types = np.zeros(n, dtype=np.int64) if self.type_ids is None else self.type_ids
        object.__setattr__(self, "type_ids", np.asarray(types, dtype=np.int64))
        for name in ("ids", "special", "word_ids", "sequence_ids", "generated", "type_ids"):
            if np.shape(getattr(self, name)) != (n,):
                raise CaptureError(
                    f"Tokens.{name} has shape {np.shape(getattr(self, name))}, expected ({n},)"
                )
        if np.shape(self.offsets) != (n, 2):
            raise CaptureError(
                f"Tokens.offsets has shape {np.shape(self.offsets)}, expected ({n}, 2)"
            )
        for name in (
            "ids",
            "special",
            "word_ids",
            "sequence_ids",
            "offsets",
            "generated",
            "type_ids",
        ):
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
                words.append("".join(strip_marker(self.tokens[i]) for i in idx))
        return words


#: Whitespace shown visibly in readable tokens.
_VISIBLE = {" ": "␣", "\n": "⏎", "\r": "↵", "\t": "⇥"}
#: Byte-level BPE (GPT-2) stand-ins for whitespace bytes, and SentencePiece's word mark.
_MARKS = {"Ġ": " ", "Ċ": "\n", "ĉ": "\t", "č": "\r", "▁": " "}


def visible_whitespace(text: str) -> str:
    """``text`` with spaces, newlines and tabs shown (``␣``, ``⏎``, ``⇥``) and other control
    characters escaped, so that every character of a token can be seen."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out) or "∅"


def readable_token(token: str) -> str:
    """A raw token as a person reads it, from its markers alone (no tokenizer at hand).

    Example:
        >>> readable_token("Ġcapital"), readable_token("Ċ"), readable_token("▁the")
        ('␣capital', '⏎', '␣the')
    """
    return visible_whitespace("".join(_MARKS.get(ch, ch) for ch in token))


def is_local_path(text: str) -> bool:
    """Whether a model name is a path of this machine (absolute, ``./``, ``../`` or ``~``)."""
    return PurePath(text).is_absolute() or text.startswith(("./", "../", "~"))


def model_display_name(name: str) -> str:
    """A model's name for titles and labels: a local folder's or file's name, never its path.

    Example:
        >>> model_display_name("/home/me/models/tiny-bert"), model_display_name("org/name")
        ('tiny-bert', 'org/name')
    """
    return (PurePath(name).name or name) if is_local_path(name) else name


def strip_marker(token: str) -> str:
    """``token`` without WordPiece (``##``), byte-level (``Ġ``) or SentencePiece (``▁``) marks."""
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
    ``"decoder"`` and ``"cross"``. A vision transformer's capture keeps ``image``: the
    ``(height, width, 3)`` uint8 image the model saw (after its processor resized and cropped it);
    its patch tokens are ``metadata["image_grid"]`` rows x columns after
    ``metadata["image_prefix"]`` prefix tokens.
    """

    stacks: Mapping[str, AttentionStack]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.stacks:
            raise CaptureError("a capture needs at least one attention stack")
        if self.image is not None:
            image = np.asarray(self.image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise CaptureError(
                    f"Capture.image must be a (height, width, 3) uint8 array, not "
                    f"{image.dtype} {image.shape}"
                )
            object.__setattr__(self, "image", _ro(image.copy()))
        for key, stack in self.stacks.items():
            if key != stack.kind:
                raise CaptureError(f"stack stored as {key!r} is of kind {stack.kind!r}")
        object.__setattr__(self, "stacks", MappingProxyType(dict(self.stacks)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def is_encoder_decoder(self) -> bool:
        return "self" not in self.stacks


#: Layer or head indexes as the public functions take them: one, several, or ``None`` for all.
Indexes: TypeAlias = "Sequence[int] | int | None"


def index_list(indexes: Sequence[int] | int, what: str) -> list[int]:
    """One index or several as a list of ints, as given (unsorted, duplicates kept).

    Raises:
        InputError: an index is not an integer, or there is none.
    """
    items = [indexes] if isinstance(indexes, int | np.integer) else list(indexes)
    for i in items:
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise InputError(f"{what} indexes must be integers, got {i!r}")
    if not items:
        raise InputError(f"no {what}s selected; give at least one {what} index")
    return [int(i) for i in items]


def select_indexes(indexes: Indexes, count: int, what: str) -> tuple[int, ...]:
    """Validate layer or head indexes (negative counts from the end) and sort them."""
    if indexes is None:
        return tuple(range(count))
    out: set[int] = set()
    for i in index_list(indexes, what):
        j = i + count if i < 0 else i
        if not 0 <= j < count:
            raise InputError(
                f"{what} {i} is out of range: the model has {count} {what}s (0..{count - 1})"
            )
        out.add(j)
    return tuple(sorted(out))


def captured_positions(wanted: Indexes, present: tuple[int, ...], what: str) -> list[int]:
    """Positions in ``present`` (a stack's model layer or head indexes) of the ``wanted`` ones.

    ``None`` keeps all; an index that was not captured is an :class:`InputError` naming those
    that were.
    """
    if wanted is None:
        return list(range(len(present)))
    out: set[int] = set()
    for i in index_list(wanted, what):
        if i not in present:
            raise InputError(f"{what} {i} was not captured; captured {what}s: {list(present)}")
        out.add(present.index(i))
    return sorted(out)


def storage_dtype(dtype: object) -> str:
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


# ------------------------------------------------------------------------- bounded scans


@dataclass(frozen=True, eq=False)
class ScanPart:
    """One attention kind a scan measures: its query and key tokens and whether it is causal."""

    kind: str
    query: Tokens
    key: Tokens
    causal: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, keys)``."""
        return len(self.query), len(self.key)


@dataclass(frozen=True, eq=False)
class ScanLayout:
    """What a scan runs on: its parts (kinds), kept layers and heads, and capture metadata."""

    parts: tuple[ScanPart, ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.parts:
            raise CaptureError("a scan needs at least one attention kind")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def part(self, kind: str) -> ScanPart:
        for p in self.parts:
            if p.kind == kind:
                return p
        raise InputError(
            f"no {kind!r} attention in this scan; it has {[p.kind for p in self.parts]}"
        )


class BlockConsumer(Protocol):
    """What a bounded scan hands its attention to, one block of query rows at a time.

    The runner calls :meth:`bytes_needed` (for the memory pre-flight) and :meth:`start` before
    the forward pass, then :meth:`block` for every ``(head, rows, key)`` float32 block of every
    kept layer, in row order per layer. With ``wants_full_layers`` set, the eager path also
    passes each whole layer's ``(head, query, key)`` weights to :meth:`layer` first (for
    statistics that have no row-by-row form); the blockwise path never does.
    """

    wants_full_layers: bool

    def bytes_needed(self, layout: ScanLayout, block_rows: int) -> int: ...

    def start(self, layout: ScanLayout) -> None: ...

    def block(self, kind: str, layer_position: int, row_start: int, block: np.ndarray) -> None: ...

    def layer(self, kind: str, layer_position: int, weights: np.ndarray) -> None: ...
