"""The one tokenization path: texts (or pre-split words) to verified tokens and model inputs.

Every way inspector runs a model (inspect, batches, generation, head importance, norms, the
neuron view) tokenizes with :func:`encode` and builds its tensors with :func:`model_inputs`, so
they agree on special tokens, word ids, truncation (off unless asked for: a too-long input is an
:class:`~inspector.errors.InputTooLongError`) and on one ``token_type_ids`` rule: the tokenizer's
own segment ids, passed only to models whose tokenizer returns them and whose ``forward`` takes
them.

Images take the same path: :func:`encode_image` (a vision model's image processor, in the sibling
module :mod:`.image`) gives their tokens (``[CLS]``, ``patch r,c``) and :func:`encoded_inputs`
their model inputs.

Tokenizers and processors only; nothing here runs the model.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import CaptureError, InputError, InputTooLongError
from ..models.families import forward_accepts, needs_prefix_space
from ..models.loading import ModelBundle
from .image import EncodedImage, encode_image
from .options import positive_int
from .types import Tokens, readable_token, visible_whitespace

_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(value: Any, name: str = "text") -> str | None:
    """Why ``value`` is not a text to run (the message :func:`check_text` raises), or ``None``."""
    if not isinstance(value, str):
        return f"{name} must be a string, not {type(value).__name__}"
    if not value.strip():
        return f"{name} is empty; give some text to inspect"
    bad = _SURROGATE.search(value)
    if bad is not None:
        return (
            f"{name} holds a lone surrogate (U+{ord(bad.group()):04X} at character "
            f"{bad.start() + 1}), which is not Unicode text: on the command line, a byte that "
            f"is not UTF-8; pass the text as valid UTF-8"
        )
    if all(unicodedata.category(c).startswith(("C", "Z")) for c in value):
        return f"{name} has only control characters and spaces; give some visible text to inspect"
    return None


def check_text(value: Any, name: str = "text") -> str:
    """A non-empty string with at least one visible character, or an :class:`InputError`."""
    problem = text_problem(value, name)
    if problem is not None:
        raise InputError(problem)
    return str(value)


def special_ids(bundle: ModelBundle) -> frozenset[int]:
    """The ids of the tokenizer's special tokens other than the unknown token.

    ``[UNK]`` stands for a word the vocabulary lacks (an emoji, say): it is a word of the text,
    not structure, so it keeps its word id and counts as text. Where the unknown token is also
    another special token (GPT-2's ``<|endoftext|>``), it stays special.
    """
    cached = bundle.extra.get("special_ids")
    if cached is not None:
        return frozenset(cached)
    tok = bundle.tokenizer
    ids = {int(i) for i in tok.all_special_ids}
    unk, unk_id = getattr(tok, "unk_token", None), getattr(tok, "unk_token_id", None)
    if unk is not None and unk_id is not None:
        others: set[str] = set()
        for role, value in (getattr(tok, "special_tokens_map", None) or {}).items():
            if role != "unk_token":
                others.update(str(v) for v in (value if isinstance(value, list) else [value]))
        if str(unk) not in others:
            ids.discard(int(unk_id))
    bundle.extra["special_ids"] = frozenset(ids)
    return frozenset(ids)


def _unknown_id(bundle: ModelBundle) -> int | None:
    """The unknown token's id when it is not also another special token, else ``None``."""
    unk_id = getattr(bundle.tokenizer, "unk_token_id", None)
    return None if unk_id is None or int(unk_id) in special_ids(bundle) else int(unk_id)


@dataclass(frozen=True, eq=False)
class Encoded:
    """One tokenized input.

    Attributes:
        tokens: the verified token sequence.
        text: the source text (pre-split words joined by spaces).
        truncated: True when the input was cut at the token limit.
    """

    tokens: Tokens
    text: str
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.tokens)


def token_limit(bundle: ModelBundle, max_length: int | None) -> int | None:
    """The effective token limit: ``max_length`` capped by the model's own (``None``: none)."""
    if max_length is not None:
        positive_int(max_length, "max_length")
    if max_length is not None and bundle.max_positions is not None:
        return min(max_length, bundle.max_positions)
    return max_length or bundle.max_positions


def encode(
    bundle: ModelBundle,
    text: str | Sequence[str],
    pair: str | None = None,
    *,
    truncation: bool = False,
    max_length: int | None = None,
    add_special_tokens: bool = True,
    require_words: bool = True,
) -> Encoded:
    """Tokenize ``text`` (and ``pair``) exactly as every capture does.

    Args:
        bundle: a loaded model.
        text: the input, or a list of pre-split words (``is_split_into_words``; word ids then
            follow the list, which needs a fast tokenizer).
        pair: an optional second text (sentence pairs).
        truncation: keep the first tokens up to the limit instead of raising.
        max_length: a lower limit than the model's own.
        add_special_tokens: False for text that writes its own (chat templates).
        require_words: refuse a text (or pair) that tokenizes to special tokens only (the
            tokenizer dropped every character: combining marks, variation selectors); the
            corpus engines pass False and skip such inputs themselves.

    Raises:
        InputTooLongError: the input is longer than the limit and ``truncation`` is off.
        InputError: with ``require_words``, a text with no token but special ones.
    """
    tok = bundle.tokenizer
    limit = token_limit(bundle, max_length)
    kw: dict[str, Any] = {"return_special_tokens_mask": True}
    if not add_special_tokens:
        kw["add_special_tokens"] = False
    fast = bool(getattr(tok, "is_fast", False))
    if fast:
        kw["return_offsets_mapping"] = True
    if isinstance(text, str):
        text = check_text(text, "text")
        source = text
    else:
        text = _check_words(bundle, text)
        source = " ".join(text)
        kw["is_split_into_words"] = True
        if getattr(tok, "add_prefix_space", None) is False and needs_prefix_space(
            bundle.model_type
        ):
            kw["add_prefix_space"] = True
    if pair is not None:
        pair = check_text(pair, "text_pair")
    if truncation:
        if limit is None:
            raise InputError("truncation=True needs max_length=: this model has no position limit")
        kw.update(truncation=True, max_length=limit)
    enc = tok(text, pair, **kw) if pair is not None else tok(text, **kw)
    n = len(enc["input_ids"])
    if limit is not None and n > limit:
        raise InputTooLongError(
            f"the input is {n} tokens but the model accepts at most {limit}; shorten it or pass "
            f"truncation=True (CLI: --truncate) to keep the first {limit} tokens"
        )
    if n == 0:
        raise InputError("the tokenizer produced no tokens for this text")
    texts = (source,) if pair is None else (source, pair)
    tokens = tokens_from_encoding(bundle, enc, texts, split_words="is_split_into_words" in kw)
    if require_words:
        _require_words(tokens, pair is not None)
    return Encoded(tokens, source, bool(truncation and limit is not None and n >= limit))


def _require_words(tokens: Tokens, has_pair: bool) -> None:
    parts = [("text", 0), ("text_pair", 1)] if has_pair else [("text", 0)]
    seqs = np.asarray(tokens.sequence_ids)
    for name, seq in parts:
        kept = ~np.asarray(tokens.special) & ((seqs == seq) if has_pair else True)
        if not kept.any():
            shown = sorted({t for t, sp in zip(tokens.tokens, tokens.special, strict=True) if sp})
            typed = [t for t in shown if t in tokens.texts[min(seq, len(tokens.texts) - 1)]]
            why = "the tokenizer drops all of its characters (combining marks, variation selectors"
            why = f"{why}, control characters)" if not typed else (
                f"it spells out special tokens only ({', '.join(typed)}), which are structure, "
                f"not text (the corpus atlas skips such inputs too)"
            )  # fmt: skip
            raise InputError(
                f"{name} has no token but special ones ({', '.join(shown) or 'none'}): {why}; "
                f"give some visible text"
            )


def encode_ids(bundle: ModelBundle, ids: Sequence[int]) -> Encoded:
    """Tokens of exactly these token ids, with the special tokens the tokenizer adds around any
    text (read off its encoding of one placeholder word): for inputs built from ids, such as a
    random token sequence repeated (induction heads), which text might not tokenize back to.

    Raises:
        InputTooLongError: more tokens than the model accepts.
    """
    tok = bundle.tokenizer
    ids = [int(i) for i in ids]
    if not ids:
        raise InputError("no token ids given")
    vocab_size = len(tok)
    if any(i < 0 or i >= vocab_size for i in ids):
        raise InputError(f"token ids must be in 0..{vocab_size - 1} for this tokenizer")
    probe = tok("a", return_special_tokens_mask=True)
    mask = list(probe["special_tokens_mask"])
    first = mask.index(0) if 0 in mask else len(mask)
    last = len(mask) - mask[::-1].index(0) if 0 in mask else len(mask)
    prefix, suffix = list(probe["input_ids"][:first]), list(probe["input_ids"][last:])
    full = prefix + ids + suffix
    limit = token_limit(bundle, None)
    if limit is not None and len(full) > limit:
        raise InputTooLongError(
            f"{len(full)} tokens but the model accepts at most {limit}; give fewer ids"
        )
    n = len(full)
    special = np.zeros(n, dtype=bool)
    special[: len(prefix)] = True
    special[len(prefix) + len(ids) :] = True
    special |= np.isin(np.asarray(full), np.asarray(sorted(special_ids(bundle)), dtype=np.int64))
    strings = tuple(_token_strings(tok, full))
    text = tok.decode(ids)
    tokens = Tokens(
        tokens=strings,
        ids=np.asarray(full, dtype=np.int64),
        special=special,
        word_ids=np.where(special, -1, np.cumsum(~special) - 1).astype(np.int32),
        sequence_ids=np.where(special, -1, 0).astype(np.int8),
        offsets=np.full((n, 2), -1, dtype=np.int32),
        texts=(text,),
        readable=readable_tokens(tok, strings, special.tolist()),
    )
    return Encoded(tokens, text)


def _check_words(bundle: ModelBundle, words: Sequence[str]) -> list[str]:
    if not getattr(bundle.tokenizer, "is_fast", False):
        raise InputError(
            f"{bundle.name}: aligning pre-split words needs a fast tokenizer (with word_ids()); "
            f"load the model with its tokenizer.json"
        )
    if isinstance(words, bytes) or not isinstance(words, Sequence):
        raise InputError(f"text must be a string or a list of words, not {type(words).__name__}")
    out = [str(w) for w in words]
    if not out:
        raise InputError("no words to encode")
    for i, word in enumerate(out):
        bad = _SURROGATE.search(word)
        if bad is not None:
            raise InputError(
                f"word {i + 1} ({word!r}) holds a lone surrogate, which is not Unicode text; "
                f"give valid UTF-8 words"
            )
    return out


def tokens_from_encoding(
    bundle: ModelBundle, enc: Any, texts: tuple[str, ...], *, split_words: bool = False
) -> Tokens:
    """:class:`Tokens` from a tokenizer's output (word ids, specials, offsets, segment ids);
    ``split_words``: the input was a list of words (offsets then count within each word)."""
    tok = bundle.tokenizer
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    n = ids.shape[0]
    special = np.asarray(enc.get("special_tokens_mask", [0] * n), dtype=bool)
    # A tokenizer's special_tokens_mask only covers added [CLS]/[SEP]; also flag e.g. <s> typed in.
    special |= np.isin(ids, np.asarray(sorted(special_ids(bundle)), dtype=np.int64))
    unknown = _unknown_id(bundle)
    if getattr(tok, "is_fast", False) and hasattr(enc, "word_ids"):
        raw_words = enc.word_ids()
        raw_seqs = enc.sequence_ids()
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int32).reshape(n, 2)
    else:
        raw_words, raw_seqs = _heuristic_words(tok.convert_ids_to_tokens(ids.tolist()), special)
        offsets = np.full((n, 2), -1, dtype=np.int32)
    if unknown is not None:  # [UNK] is a word of the text, unless the text spells it out
        typed = _typed_literally(str(tok.unk_token), ids == unknown, offsets, raw_seqs, texts)
        special = (special & (ids != unknown)) | (typed & (not split_words))
    seqs = np.array([-1 if s is None else s for s in raw_seqs], dtype=np.int8)
    words = np.full(n, -1, dtype=np.int32)
    seen: dict[tuple[int, int], int] = {}
    for i, (s, w) in enumerate(zip(raw_seqs, raw_words, strict=True)):
        if w is None or special[i]:
            continue
        words[i] = seen.setdefault((s or 0, w), len(seen))
    seqs[special] = -1
    offsets[special] = -1
    types = enc.get("token_type_ids")
    strings = tuple(_token_strings(tok, ids.tolist()))
    return Tokens(
        tokens=strings,
        ids=ids,
        special=special,
        word_ids=words,
        sequence_ids=seqs,
        offsets=offsets,
        texts=texts,
        type_ids=None if types is None else np.asarray(types, dtype=np.int64),
        readable=readable_tokens(tok, strings, special.tolist()),
    )


def _typed_literally(token: str, at: Any, offsets: Any, seqs: Any, texts: Any) -> np.ndarray:
    """Which positions ``at`` cover ``token`` spelled out in the text (SmolLM2's unknown token
    ``<|endoftext|>`` typed in): special like any typed special token, not a word the
    vocabulary lacks. Needs character offsets (fast tokenizers, text not pre-split)."""
    out = np.zeros(len(at), dtype=bool)
    for i in np.flatnonzero(at).tolist():
        seq, (start, end) = seqs[i], offsets[i]
        if seq is not None and 0 <= start < end and seq < len(texts):
            out[i] = texts[seq][start:end] == token
    return out


def readable_tokens(tok: Any, tokens: Sequence[str], special: Sequence[bool]) -> tuple[str, ...]:
    """Each token as the tokenizer itself decodes it alone, whitespace made visible.

    Byte-level pieces are decoded (``Ã©`` → ``é``; a piece of a multi-byte character shows
    ``�``); a word-initial mark keeps its space (``␣``); WordPiece continuations (``##ing``) and
    special tokens stay as they are.
    """
    decode = getattr(tok, "convert_tokens_to_string", None)
    out = []
    for raw, is_special in zip(tokens, special, strict=True):
        if is_special or decode is None or raw.startswith("##"):
            out.append(raw if is_special else readable_token(raw))
            continue
        try:
            text = decode([raw])
        except Exception:  # a tokenizer that cannot decode a lone piece: read the markers
            out.append(readable_token(raw))
            continue
        if raw[:1] in ("Ġ", "▁") and not text.startswith(" "):
            text = " " + text
        out.append(visible_whitespace(text))
    return tuple(out)


def _token_strings(tok: Any, ids: Sequence[int]) -> list[str]:
    # An id outside the tokenizer's vocabulary (a model with a padded embedding) has no string.
    return [
        t if isinstance(t, str) else f"<id {i}>"
        for i, t in zip(ids, tok.convert_ids_to_tokens(list(ids)), strict=True)
    ]


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
    return check_text(text, "the chat template's output")


def decoder_start_id(bundle: ModelBundle) -> int:
    """The token an encoder-decoder model's decoder starts from."""
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
    return int(start)


def decoder_tokens(bundle: ModelBundle, target: str | None) -> Tokens:
    """The decoder input of an encoder-decoder model: its start token, then ``target``'s."""
    tok = bundle.tokenizer
    start = decoder_start_id(bundle)
    if target is None:
        return special_tokens(bundle, [start])
    enc = tok(
        text_target=check_text(target, "target"),
        return_special_tokens_mask=True,
        **({"return_offsets_mapping": True} if getattr(tok, "is_fast", False) else {}),
    )
    inner = tokens_from_encoding(bundle, enc, (target,))
    return join_tokens(special_tokens(bundle, [start]), inner, (target,), generated=False)


def special_tokens(bundle: ModelBundle, ids: Sequence[int]) -> Tokens:
    """Tokens for ``ids`` that are all special (a decoder start token, say)."""
    n = len(ids)
    strings = tuple(_token_strings(bundle.tokenizer, ids))
    return Tokens(
        tokens=strings,
        ids=np.asarray(ids, dtype=np.int64),
        special=np.ones(n, dtype=bool),
        word_ids=np.full(n, -1, dtype=np.int32),
        sequence_ids=np.full(n, -1, dtype=np.int8),
        offsets=np.full((n, 2), -1, dtype=np.int32),
        readable=strings,
    )


def generated_tokens(bundle: ModelBundle, ids: Sequence[int], first_word: int) -> Tokens:
    """Tokens the model generated: words numbered from ``first_word`` by their leading marks."""
    tok = bundle.tokenizer
    strings = _token_strings(tok, ids)
    specials = special_ids(bundle)
    special = np.array([i in specials for i in ids], dtype=bool)
    words = np.full(len(ids), -1, dtype=np.int32)
    w = first_word - 1
    previous_special = True
    for i, t in enumerate(strings):
        if special[i]:
            previous_special = True
            continue
        if previous_special or t.startswith(("Ġ", "▁", " ", "Ċ")) or not t[:1].isalnum():
            w += 1
        words[i] = w
        previous_special = False
    return Tokens(
        tokens=tuple(strings),
        ids=np.asarray(ids, dtype=np.int64),
        special=special,
        word_ids=words,
        sequence_ids=np.where(special, -1, 0).astype(np.int8),
        offsets=np.full((len(ids), 2), -1, dtype=np.int32),
        generated=np.ones(len(ids), dtype=bool),
        readable=readable_tokens(tok, strings, special.tolist()),
    )


def join_tokens(
    first: Tokens, second: Tokens, texts: tuple[str, ...], *, generated: bool = True
) -> Tokens:
    """``first`` followed by ``second`` (flagged as generated when ``generated``)."""
    flags = np.asarray(second.generated) if generated else np.zeros(len(second), dtype=bool)
    return Tokens(
        tokens=first.tokens + second.tokens,
        ids=np.concatenate([first.ids, second.ids]),
        special=np.concatenate([first.special, second.special]),
        word_ids=np.concatenate([first.word_ids, second.word_ids]),
        sequence_ids=np.concatenate([first.sequence_ids, second.sequence_ids]),
        offsets=np.concatenate([first.offsets, second.offsets]),
        texts=texts,
        generated=np.concatenate([np.asarray(first.generated), flags]),
        type_ids=np.concatenate([np.asarray(first.type_ids), np.asarray(second.type_ids)]),
        readable=(first.readable or ()) + (second.readable or ()),
    )


# ---------------------------------------------------------------------------------- model inputs


def pad_id(bundle: ModelBundle) -> int:
    """The id used to pad a batch (the pad token, else end-of-sequence, else unknown, else 0)."""
    tok = bundle.tokenizer
    for value in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, 0):
        if value is not None:
            return int(value)
    return 0  # pragma: no cover


def takes_token_types(bundle: ModelBundle) -> bool:
    """The ``token_type_ids`` rule: the tokenizer returns them and ``forward`` takes them."""
    names = getattr(bundle.tokenizer, "model_input_names", None) or ()
    return "token_type_ids" in names and forward_accepts(bundle.model, "token_type_ids")


def model_inputs(bundle: ModelBundle, sequences: Sequence[Tokens]) -> dict[str, Any]:
    """Right-padded ``input_ids`` / ``attention_mask`` (/ ``token_type_ids``) on the model's device.

    Right padding is correct for decoders too: a causal query never sees the padding after it,
    and the positions of the real tokens stay ``0 .. n-1``.
    """
    import torch

    if not sequences:
        raise InputError("no inputs to run")
    lengths = [len(t) for t in sequences]
    width = max(lengths)
    ids = np.full((len(sequences), width), pad_id(bundle), dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    types = np.zeros((len(sequences), width), dtype=np.int64)
    for i, t in enumerate(sequences):
        ids[i, : lengths[i]] = t.ids
        mask[i, : lengths[i]] = 1
        types[i, : lengths[i]] = np.asarray(t.type_ids)
    device = next(bundle.model.parameters()).device
    inputs: dict[str, Any] = {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
    }
    if takes_token_types(bundle):
        inputs["token_type_ids"] = torch.from_numpy(types).to(device)
    return inputs


def encoded_inputs(bundle: ModelBundle, encoded: Encoded | EncodedImage) -> dict[str, Any]:
    """The model inputs (batch of 1) of one encoded text or image."""
    if isinstance(encoded, EncodedImage):
        return {"pixel_values": encoded.pixel_values}
    return model_inputs(bundle, [encoded.tokens])


def probe_inputs(bundle: ModelBundle) -> dict[str, Any]:
    """A short input (batch of 1) for one forward pass that looks at a model's structure."""
    if bundle.modality == "image":
        return encoded_inputs(bundle, encode_image(bundle, np.full((8, 8, 3), 128, np.uint8)))
    inputs = model_inputs(bundle, [encode(bundle, "The cat sat on the mat.").tokens])
    if bundle.architecture == "encoder-decoder":
        inputs["decoder_input_ids"] = model_inputs(bundle, [decoder_tokens(bundle, "The cat.")])[
            "input_ids"
        ]
    return inputs


__all__ = [
    "Encoded",
    "EncodedImage",
    "chat_text",
    "check_text",
    "decoder_tokens",
    "encode",
    "encode_ids",
    "encode_image",
    "encoded_inputs",
    "generated_tokens",
    "join_tokens",
    "model_inputs",
    "pad_id",
    "probe_inputs",
    "special_ids",
    "special_tokens",
    "takes_token_types",
    "text_problem",
    "token_limit",
    "tokens_from_encoding",
]
