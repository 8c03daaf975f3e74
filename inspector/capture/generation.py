"""Generate text and keep the attention of every step, assembled into one causal matrix.

This module runs the model (``model.generate`` with a key/value cache) with the forward hooks
of :class:`inspector.capture.hooks.AttentionRecorder` on the attention modules. Step 0 writes the
prompt's query rows; each later step writes one new row that attends to all earlier keys. A
last cached step feeds the final token, so the result covers every position: it is the
``(layer, head, query, key)`` matrix one forward pass over the final sequence would give
(tested to float tolerance). Encoder-decoder models give encoder, decoder
``(layer, head, dq, dq)`` and cross ``(layer, head, dq, enc)`` stacks the same way.

It returns a :class:`~inspector.capture.types.Capture`; reading it step by step is
:func:`inspector.analysis.steps.generation_steps`. It never renders or builds frames.

Glossary: ``prompt_length`` positions come from the input, the rest were generated; in the
tokens, ``Tokens.generated`` flags the generated ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CaptureError, InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from . import memory as _memory
from .hooks import AttentionRecorder, Hook, bundle_sites, hooked
from .run import bundle_metadata, capture_estimate, out_of_memory_advice
from .tokenize import (
    chat_text,
    check_text,
    encode,
    generated_tokens,
    join_tokens,
    model_inputs,
    special_tokens,
)
from .types import ROW_SUM_TOLERANCE, AttentionStack, Capture, select_indexes, storage_dtype

#: generate() options that would break the one-sequence, append-only cache the assembly needs.
_REFUSED = {
    "input_ids": "pass the prompt as text (or messages=)",
    "inputs": "pass the prompt as text (or messages=)",
    "attention_mask": "inspector builds it from the prompt",
    "output_attentions": "attention is recorded with hooks; leave it out",
    "return_dict_in_generate": "inspector sets it",
    "assistant_model": "assisted decoding re-runs several tokens per step",
    "prompt_lookup_num_tokens": "prompt-lookup decoding re-runs several tokens per step",
    "penalty_alpha": "contrastive search re-runs candidate tokens",
}


def _check_generation_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    for key, why in _REFUSED.items():
        if key in kwargs:
            raise InputError(f"generate(..., {key}=...) is not supported here: {why}")
    for key in ("num_beams", "num_return_sequences", "num_beam_groups"):
        value = kwargs.get(key)
        if value is not None and value != 1:
            raise InputError(
                f"{key}={value!r} is not supported: attention is assembled for one sequence; "
                f"use greedy decoding (the default) or do_sample=True"
            )
    out = dict(kwargs)
    out.setdefault("do_sample", False)
    return out


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


@out_of_memory_advice(_memory.ADVICE["generate"])
def generate(
    bundle: ModelBundle,
    prompt: str | None = None,
    *,
    messages: Sequence[Mapping[str, str]] | None = None,
    max_new_tokens: int = 20,
    layers: Sequence[int] | int | None = None,
    heads: Sequence[int] | int | None = None,
    dtype: Any = None,
    max_memory: Any = None,
    **generation_kwargs: Any,
) -> Capture:
    """Generate from ``prompt`` with a cache and keep the attention of every step.

    Args:
        bundle: a loaded decoder (GPT-2, LLaMA, ...) or encoder-decoder (T5, BART) model.
        prompt: the input text (the encoder input for encoder-decoder models).
        messages: instead of ``prompt``, a chat rendered with the tokenizer's chat template and
            its assistant turn header (``add_generation_prompt=True``).
        max_new_tokens: how many tokens to generate at most (fewer when the model ends).
        layers, heads: keep only these indexes (the rest is never copied out of the model).
        dtype: storage of the weights, ``"float32"`` (default) or ``"float16"``.
        max_memory: the memory budget (default: what is available); generation is refused
            before it starts when prompt + ``max_new_tokens`` would not fit.
        **generation_kwargs: passed to ``model.generate``: greedy by default; e.g.
            ``do_sample=True, temperature=0.7, top_p=0.9``. Beam search is refused.

    Returns:
        A :class:`Capture`. Decoders: one causal ``"self"`` stack over prompt + generated
        tokens. Encoder-decoder models: ``"encoder"``, ``"decoder"`` (decoder start token +
        generated tokens) and ``"cross"``. ``metadata`` records ``prompt_length``,
        ``n_generated``, ``generated_text`` and the generation options; the query tokens flag
        generated positions (``Tokens.generated``).

    Example:
        >>> cap = generate(bundle, "The cat", max_new_tokens=4)  # doctest: +SKIP
        >>> cap.stacks["self"].weights.shape  # doctest: +SKIP
        (30, 9, 7, 7)
    """
    import torch

    if bundle.architecture == "encoder":
        raise UnsupportedModelError(
            f"{bundle.name} is an encoder ({bundle.model_type}); it does not generate. Use "
            f"inspect() for it, or load a decoder (gpt2, smollm2) or an encoder-decoder (t5, bart)"
        )
    if (
        not isinstance(max_new_tokens, int)
        or isinstance(max_new_tokens, bool)
        or max_new_tokens < 1
    ):
        raise InputError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    gen_kw = _check_generation_kwargs(generation_kwargs)
    if messages is not None:
        if prompt is not None:
            raise InputError("give either a prompt or messages=, not both")
        if bundle.architecture != "decoder":
            raise InputError("messages= (chat templates) is for decoder models; pass a prompt")
        text = chat_text(bundle, messages, add_generation_prompt=True)
    elif prompt is None:
        raise InputError("give a prompt to generate from, or a chat as messages=[...]")
    else:
        text = check_text(prompt, "prompt")
    layer_idx = select_indexes(layers, bundle.n_layers, "layer")
    head_idx = select_indexes(heads, bundle.n_heads, "head")
    store = storage_dtype(dtype)

    prompt_tokens = encode(bundle, text, add_special_tokens=messages is None).tokens
    n_prompt = len(prompt_tokens)
    model = bundle.model
    encoder_decoder = bundle.architecture == "encoder-decoder"
    if (
        not encoder_decoder
        and bundle.max_positions is not None
        and n_prompt + max_new_tokens > bundle.max_positions
    ):
        raise InputError(
            f"the prompt is {n_prompt} tokens; with max_new_tokens={max_new_tokens} it would "
            f"pass the model's limit of {bundle.max_positions}: lower max_new_tokens"
        )
    kinds = ("encoder", "decoder", "cross") if encoder_decoder else ("self",)
    sites = bundle_sites(bundle)
    if not sites or any(len(sites.get(k, ())) != bundle.n_layers for k in kinds):
        raise UnsupportedModelError(
            f"{bundle.name}: found no hookable attention modules (its class declares no "
            f"_can_record_outputs), so generation cannot be recorded step by step; inspect() "
            f"the final text instead"
        )
    capture_estimate(
        bundle,
        n_prompt,
        layers=layer_idx,
        heads=head_idx,
        dtype=store,
        new_tokens=max_new_tokens,
        max_memory=max_memory,
    ).check(_memory.ADVICE["generate"])
    inputs = model_inputs(bundle, [prompt_tokens])
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    if encoder_decoder:
        n_dec = 1 + max_new_tokens
        shapes = {"encoder": (n_prompt, n_prompt), "decoder": (n_dec, n_dec)}
        shapes["cross"] = (n_dec, n_prompt)
    else:
        total = n_prompt + max_new_tokens
        shapes = {"self": (total, total)}
    tok = bundle.tokenizer
    if "pad_token_id" not in gen_kw:
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        gen_config = getattr(model, "generation_config", None)
        if getattr(gen_config, "pad_token_id", None) is None and pad is not None:
            gen_kw["pad_token_id"] = pad

    recorder = AttentionRecorder(
        sites, layer_idx, head_idx, shapes, dtype=store, model_name=bundle.name
    )
    encoder_out: list[Any] = []
    hooks = recorder.hooks()
    if encoder_decoder:
        hooks.append(Hook(model.get_encoder(), lambda m, args, output: encoder_out.append(output)))
    with hooked(bundle, hooks), torch.inference_mode():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            **gen_kw,
        )
        sequence = out.sequences[0]
        cache = getattr(out, "cache", None)
        if cache is None:
            raise CaptureError(
                f"{bundle.name}: generate() returned no key/value cache (use_cache=False?); "
                f"the last token's attention row needs it"
            )
        # generate() never feeds the last token back; one cached step gives its row.
        last = sequence[-1:][None]
        if encoder_decoder:
            model(
                encoder_outputs=encoder_out[0],
                attention_mask=attention_mask,
                decoder_input_ids=last,
                cache=cache,
                return_dict=True,
            )
        else:
            model(
                input_ids=last,
                attention_mask=torch.ones_like(sequence)[None],
                cache=cache,
                return_dict=True,
            )

    ids = sequence.tolist()
    new_ids = ids[1:] if encoder_decoder else ids[n_prompt:]
    n_new = len(new_ids)
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
    meta = bundle_metadata(bundle)
    eos = gen_kw.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    eos_ids = set(eos if isinstance(eos, list | tuple) else [eos]) - {None}
    meta.update(
        text=text,
        text_pair=None,
        target=None,
        truncated=False,
        storage_dtype=store,
        generated=True,
        prompt_length=n_prompt if not encoder_decoder else 1,
        n_generated=n_new,
        max_new_tokens=max_new_tokens,
        generated_text=tok.decode(new_ids, skip_special_tokens=True),
        stopped="eos" if new_ids and new_ids[-1] in eos_ids else "length",
        generation_kwargs=_json_safe(generation_kwargs),
    )
    if messages is not None:
        meta["messages"] = [dict(m) for m in messages]

    if encoder_decoder:
        new = generated_tokens(bundle, new_ids, 0)
        dec = join_tokens(special_tokens(bundle, ids[:1]), new, (meta["generated_text"],))
        n_dec = len(dec)
        _check_rows(recorder, ("decoder", "cross"), n_dec, bundle.name)
        spec = {
            "encoder": (prompt_tokens, prompt_tokens, False, n_prompt, n_prompt),
            "decoder": (dec, dec, True, n_dec, n_dec),
            "cross": (dec, prompt_tokens, False, n_dec, n_prompt),
        }
        stacks = {
            kind: AttentionStack(
                recorder.weights(kind, rows, cols),
                q,
                k,
                kind,
                causal,
                layer_idx,
                head_idx,
                tolerance,
            )
            for kind, (q, k, causal, rows, cols) in spec.items()
        }
        return Capture(stacks, meta)

    new = generated_tokens(bundle, new_ids, prompt_tokens.n_words)
    tokens = join_tokens(prompt_tokens, new, (text, meta["generated_text"]))
    _check_rows(recorder, ("self",), len(tokens), bundle.name)
    n = len(tokens)
    stack = AttentionStack(
        recorder.weights("self", n, n), tokens, tokens, "self", True, layer_idx, head_idx, tolerance
    )
    return Capture({"self": stack}, meta)


def _check_rows(recorder: AttentionRecorder, kinds: Sequence[str], n: int, name: str) -> None:
    for kind in kinds:
        rows = recorder.rows(kind)
        if rows != n:
            raise CaptureError(
                f"{name}: recorded {rows} {kind} attention rows for {n} tokens; generation ran "
                f"a step inspector did not see (an unsupported decoding strategy?)"
            )


__all__ = ["generate"]
