"""Run a loaded model on a batch of inputs and hand back one verified capture per input.

This sits at the capture layer: with :mod:`inspector.capture` it is the only code that runs a
model. Inputs are tokenized one by one exactly as :func:`inspector.capture.capture` does, padded
on the right into one batch and run with an ``attention_mask``; each input's unpadded
``(layer, head, query, key)`` block is then cut out, so padded rows and columns never reach a
statistic. Right padding is correct for decoders too: a causal query never sees the padding
after it, and positions of the real tokens stay ``0 .. n-1``.

It never computes statistics; :mod:`inspector.atlas` and :mod:`inspector.probe` do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .capture import (
    ROW_SUM_TOLERANCE,
    AttentionStack,
    Capture,
    Tokens,
    _decoder_tokens,
    _encode,
    _tokens_from_encoding,
    bundle_metadata,
    bundle_sites,
    check_layer_attentions,
    out_of_memory_hint,
)
from .errors import InputError
from .loading import ModelBundle


@dataclass(frozen=True, eq=False)
class Encoded:
    """One tokenized input, ready to be padded into a batch.

    Attributes:
        tokens: the verified token sequence (as :func:`~inspector.capture.capture` builds it).
        token_type_ids: segment ids where the tokenizer returns them, else ``None``.
        text: the source text (the gold words joined by spaces for pre-split input).
        truncated: True when the input was cut at ``max_length``.
    """

    tokens: Tokens
    token_type_ids: np.ndarray | None
    text: str
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.tokens)


def _limit(bundle: ModelBundle, max_length: int | None) -> int | None:
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise InputError(f"max_length must be a positive integer, got {max_length!r}")
    if max_length is not None and bundle.max_positions is not None:
        return min(max_length, bundle.max_positions)
    return max_length or bundle.max_positions


def encode_text(
    bundle: ModelBundle, text: str, *, max_length: int | None = None, truncation: bool = True
) -> Encoded:
    """Tokenize one text as :func:`~inspector.capture.capture` does (same tokens, same words).

    Args:
        bundle: a loaded model.
        text: the input; must not be empty.
        max_length: a lower token limit than the model's own.
        truncation: keep the first ``max_length`` tokens of longer inputs instead of raising.
    """
    if not isinstance(text, str):
        raise InputError(f"each text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise InputError("a text is empty; give some text to inspect")
    limit = _limit(bundle, max_length)
    enc = _encode(bundle, text, None, truncation=truncation and limit is not None, max_length=limit)
    tokens = _tokens_from_encoding(bundle, enc, (text,))
    types = enc.get("token_type_ids")
    return Encoded(
        tokens,
        None if types is None else np.asarray(types, dtype=np.int64),
        text,
        bool(truncation and limit is not None and len(tokens) >= limit),
    )


def encode_words(
    bundle: ModelBundle, words: Sequence[str], *, max_length: int | None = None
) -> Encoded:
    """Tokenize pre-split words (``is_split_into_words=True``); word ids follow ``words``.

    Needs a fast tokenizer (for ``word_ids()``). A word the tokenizer drops entirely gets no
    token; check ``encoded.tokens.n_words`` against ``len(words)``.
    """
    tok = bundle.tokenizer
    if not getattr(tok, "is_fast", False):
        raise InputError(
            f"{bundle.name}: aligning gold words needs a fast tokenizer (with word_ids()); "
            f"load the model with its tokenizer.json"
        )
    words = [str(w) for w in words]
    if not words:
        raise InputError("no words to encode")
    limit = _limit(bundle, max_length)
    kw: dict[str, Any] = {
        "is_split_into_words": True,
        "return_special_tokens_mask": True,
        "return_offsets_mapping": True,
    }
    if getattr(tok, "add_prefix_space", None) is False and bundle.model_type in ("gpt2", "roberta"):
        kw["add_prefix_space"] = True
    enc = tok(words, **kw)
    n = len(enc["input_ids"])
    if limit is not None and n > limit:
        raise InputError(f"the sentence is {n} tokens but the model accepts at most {limit}")
    text = " ".join(words)
    tokens = _tokens_from_encoding(bundle, enc, (text,))
    types = enc.get("token_type_ids")
    return Encoded(tokens, None if types is None else np.asarray(types, dtype=np.int64), text)


def _pad_id(bundle: ModelBundle) -> int:
    tok = bundle.tokenizer
    for value in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, 0):
        if value is not None:
            return int(value)
    return 0  # pragma: no cover


def _batched(attentions: Any, bundle: ModelBundle, kind: str) -> np.ndarray:
    """``(batch, layer, head, query, key)`` float32 from the model's per-layer tuple."""
    import torch

    check_layer_attentions(attentions, bundle, kind)
    return torch.stack(list(attentions), dim=1).float().cpu().numpy()


def _forward_weights(
    bundle: ModelBundle, inputs: Mapping[str, Any], kinds: Sequence[str], call_kw: Mapping[str, Any]
) -> dict[str, list[Any]]:
    """One batched pass; each kind's per-layer ``(batch, head, query, key)`` weights.

    Forward hooks on the model's attention modules collect the weights and are removed after
    the pass, so the model is left as it was (``output_attentions=True`` would make transformers
    install recorder hooks of its own that stay on the model). Models with no hookable attention
    modules fall back to ``output_attentions=True``.
    """
    import torch

    sites = bundle_sites(bundle)
    if not (sites and all(len(sites.get(k, ())) == bundle.n_layers for k in kinds)):
        with bundle.lock, torch.inference_mode():
            out = bundle.model(**inputs, output_attentions=True, return_dict=True, **call_kw)
        names = {"self": "attentions", "encoder": "encoder_attentions"}
        names.update(decoder="decoder_attentions", cross="cross_attentions")
        return {k: list(getattr(out, names[k], None) or []) for k in kinds}
    found: dict[str, list[Any]] = {k: [None] * bundle.n_layers for k in kinds}

    def keep(kind: str, layer: int, index: int) -> Any:
        def hook(_module: Any, _args: Any, output: Any) -> None:
            if isinstance(output, tuple | list) and len(output) > index:
                found[kind][layer] = output[index]

        return hook

    handles = []
    with bundle.lock:
        try:
            for kind in kinds:
                for layer, site in enumerate(sites[kind]):
                    handles.append(site.module.register_forward_hook(keep(kind, layer, site.index)))
            with torch.inference_mode():
                bundle.model(**inputs, return_dict=True, **call_kw)
        finally:
            for handle in handles:
                handle.remove()
    return found


@out_of_memory_hint
def forward_batch(
    bundle: ModelBundle, encoded: Sequence[Encoded], *, verify: bool = True
) -> list[Capture]:
    """Run one right-padded batch and return one capture per input, padding cut away.

    Args:
        bundle: a loaded model.
        encoded: inputs from :func:`encode_text` / :func:`encode_words`.
        verify: check each block (finite, rows sum to 1, causal) like a single capture does.

    Returns:
        Captures equal (within float tolerance) to running each input alone: ``"self"`` stacks
        for self-attention models, ``"encoder"``/``"decoder"``/``"cross"`` for encoder-decoders
        (the decoder runs its start token only, as :func:`~inspector.capture.capture` does
        without a target).
    """
    import torch

    if not encoded:
        return []
    model = bundle.model
    device = next(model.parameters()).device
    lengths = [len(e) for e in encoded]
    width = max(lengths)
    ids = np.full((len(encoded), width), _pad_id(bundle), dtype=np.int64)
    mask = np.zeros((len(encoded), width), dtype=np.int64)
    types = np.zeros((len(encoded), width), dtype=np.int64)
    for i, e in enumerate(encoded):
        ids[i, : lengths[i]] = e.tokens.ids
        mask[i, : lengths[i]] = 1
        if e.token_type_ids is not None:
            types[i, : lengths[i]] = e.token_type_ids
    inputs: dict[str, Any] = {
        "input_ids": torch.from_numpy(ids).to(device),
        "attention_mask": torch.from_numpy(mask).to(device),
    }
    if encoded[0].token_type_ids is not None and _accepts(model, "token_type_ids"):
        inputs["token_type_ids"] = torch.from_numpy(types).to(device)
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3) if verify else float("inf")
    meta = bundle_metadata(bundle)
    layers = tuple(range(bundle.n_layers))
    heads = tuple(range(bundle.n_heads))

    def stack(w: np.ndarray, q: Tokens, k: Tokens, kind: str, causal: bool) -> AttentionStack:
        return AttentionStack(np.ascontiguousarray(w), q, k, kind, causal, layers, heads, tolerance)

    out_captures: list[Capture] = []
    if bundle.architecture == "encoder-decoder":
        dec = _decoder_tokens(bundle, None)
        inputs["decoder_input_ids"] = torch.tensor(
            np.tile(dec.ids, (len(encoded), 1)), device=device
        )
        found = _forward_weights(bundle, inputs, ("encoder", "decoder", "cross"), {})
        enc_w = _batched(found["encoder"], bundle, "encoder")
        dec_w = _batched(found["decoder"], bundle, "decoder")
        cross_w = _batched(found["cross"], bundle, "cross")
        for i, e in enumerate(encoded):
            n = lengths[i]
            stacks = {
                "encoder": stack(enc_w[i, :, :, :n, :n], e.tokens, e.tokens, "encoder", False),
                "decoder": stack(dec_w[i], dec, dec, "decoder", True),
                "cross": stack(cross_w[i, :, :, :, :n], dec, e.tokens, "cross", False),
            }
            out_captures.append(Capture(stacks, _meta(meta, e)))
        return out_captures

    call_kw: dict[str, Any] = {}
    if bundle.architecture == "decoder" and _accepts(model, "logits_to_keep"):
        call_kw["logits_to_keep"] = 1
    weights = _batched(_forward_weights(bundle, inputs, ("self",), call_kw)["self"], bundle, "self")
    causal = bundle.architecture == "decoder"
    for i, e in enumerate(encoded):
        n = lengths[i]
        s = stack(weights[i, :, :, :n, :n], e.tokens, e.tokens, "self", causal)
        out_captures.append(Capture({"self": s}, _meta(meta, e)))
    return out_captures


def _meta(base: dict[str, Any], e: Encoded) -> dict[str, Any]:
    meta = dict(base)
    meta.update(
        text=e.text, text_pair=None, target=None, truncated=e.truncated, storage_dtype="float32"
    )
    return meta


def capture_batch(
    bundle: ModelBundle,
    texts: Sequence[str],
    *,
    max_length: int | None = None,
    truncation: bool = True,
) -> list[Capture]:
    """Tokenize ``texts``, run them as one padded batch, return one capture per text.

    Example:
        >>> caps = capture_batch(bundle, ["The cat sat.", "A much longer sentence here."])
        ... # doctest: +SKIP
        >>> [c.stacks["self"].weights.shape for c in caps]  # doctest: +SKIP
        [(6, 12, 6, 6), (6, 12, 8, 8)]
    """
    encoded = [encode_text(bundle, t, max_length=max_length, truncation=truncation) for t in texts]
    return forward_batch(bundle, encoded)


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


__all__ = ["Encoded", "capture_batch", "encode_text", "encode_words", "forward_batch"]
