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
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CaptureError, InputError, UnsupportedModelError
from ..models.loading import ModelBundle
from . import memory as _memory
from .hooks import AttentionRecorder, Hook, hooked
from .inputs import made_metadata
from .memory import MemoryLimit
from .options import ALL, Selection, positive_int
from .run import (
    bundle_sites,
    capture_estimate,
    out_of_memory_advice,
    stack_indexes,
    stack_kinds,
)
from .tokenize import (
    chat_text,
    check_text,
    encode,
    generated_tokens,
    join_tokens,
    model_inputs,
    special_tokens,
)
from .types import ROW_SUM_TOLERANCE, AttentionStack, Capture, storage_dtype

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
    _check_sampling(out)
    return out


def _number(out: Mapping[str, Any], key: str) -> float | None:
    value = out.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{key} must be a number, not {type(value).__name__} ({value!r})")
    return float(value)


def _check_sampling(out: dict[str, Any]) -> None:
    """Refuse sampling options transformers would reject or turn into noise; 0 is greedy."""
    temperature = _number(out, "temperature")
    if temperature is not None:
        if not math.isfinite(temperature) or temperature < 0:
            raise InputError(
                f"temperature={out['temperature']!r} is not a finite number >= 0; use 0 for "
                f"greedy decoding, or e.g. 0.7 to sample (1.0 samples as trained)"
            )
        if temperature == 0:  # the limit of sampling as temperature -> 0 is greedy decoding
            del out["temperature"]
            out["do_sample"] = False
    top_p = _number(out, "top_p")
    if top_p is not None and not (0 < top_p <= 1):
        raise InputError(f"top_p={out['top_p']!r} must be in (0, 1], e.g. 0.9")
    top_k = out.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0):
        raise InputError(f"top_k={top_k!r} must be a non-negative integer, e.g. 50")
    penalty = _number(out, "repetition_penalty")
    if penalty is not None and not (math.isfinite(penalty) and penalty > 0):
        raise InputError(
            f"repetition_penalty={out['repetition_penalty']!r} must be a finite number > 0 "
            f"(1.0: no penalty)"
        )


def uses_chat(bundle: ModelBundle, chat: bool | None) -> bool:
    """Whether a prompt goes through the chat template (``chat=None``: when the model has one)."""
    has_template = bundle.architecture == "decoder" and bool(
        getattr(bundle.tokenizer, "chat_template", None)
    )
    if chat is True and not has_template:
        what = "is not a decoder" if bundle.architecture != "decoder" else "has no chat template"
        raise InputError(
            f"chat=True: {bundle.name} {what}; generate from the raw prompt (chat=False, CLI: "
            f"--no-chat)"
        )
    return has_template if chat is None else chat


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


@out_of_memory_advice(_memory.ADVICE["generate"])
def generate(
    bundle: ModelBundle,
    prompt: str | None = None,
    *,
    messages: Sequence[Mapping[str, str]] | None = None,
    chat: bool | None = None,
    max_new_tokens: int = 20,
    select: Selection = ALL,
    dtype: str | None = None,
    max_memory: MemoryLimit | None = None,
    **generation_kwargs: Any,
) -> Capture:
    """Generate from ``prompt`` with a cache and keep the attention of every step.

    Args:
        bundle: a loaded decoder (GPT-2, LLaMA, ...) or encoder-decoder (T5, BART) model.
        prompt: the input text (the encoder input for encoder-decoder models).
        messages: instead of ``prompt``, a chat rendered with the tokenizer's chat template and
            its assistant turn header (``add_generation_prompt=True``).
        chat: send ``prompt`` as one user message through the tokenizer's chat template (as
            ``messages=[{"role": "user", "content": prompt}]``). ``None`` (default): when the
            model is a decoder whose tokenizer has a chat template (instruct models answer a
            raw prompt with an end-of-turn token); ``False``: the raw prompt; ``True``: always
            (an error when there is no template).
        max_new_tokens: how many tokens to generate at most (fewer when the model ends).
        select: keep only these layers and heads (the rest is never copied out of the model).
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
    positive_int(max_new_tokens, "max_new_tokens")
    gen_kw = _check_generation_kwargs(generation_kwargs)
    if chat is not None and not isinstance(chat, bool):
        raise InputError(f"chat must be True, False or None (automatic), not {chat!r}")
    if messages is not None:
        if prompt is not None:
            raise InputError("give either a prompt or messages=, not both")
        if chat is False:
            raise InputError("messages= always uses the chat template; drop chat=False")
        if bundle.architecture != "decoder":
            raise InputError("messages= (chat templates) is for decoder models; pass a prompt")
        text = chat_text(bundle, messages, add_generation_prompt=True)
    elif prompt is None:
        raise InputError("give a prompt to generate from, or a chat as messages=[...]")
    elif uses_chat(bundle, chat):
        messages = [{"role": "user", "content": check_text(prompt, "prompt")}]
        text = chat_text(bundle, messages, add_generation_prompt=True)
    else:
        text = check_text(prompt, "prompt")
    kinds = stack_kinds(bundle)
    layer_idx, head_idx = stack_indexes(bundle, kinds, select)
    store = storage_dtype(dtype)

    # a prompt of special tokens only ("<|endoftext|>") is how unconditional generation starts
    prompt_tokens = encode(
        bundle, text, add_special_tokens=messages is None, require_words=False
    ).tokens
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
    sites = bundle_sites(bundle)
    if not sites:
        raise UnsupportedModelError(
            f"{bundle.name}: found no attention module for every layer (its class declares no "
            f"_can_record_outputs and no module returns the model's attention weights), so "
            f"generation cannot be recorded step by step; inspect() the final text instead"
        )
    for kind in kinds:
        found, wanted = len(sites.get(kind, ())), bundle.stack_shape(kind)[0]
        if found != wanted:
            raise UnsupportedModelError(
                f"{bundle.name}: found {found} {kind} attention modules but its config says "
                f"{wanted} layers, so generation cannot be recorded layer by layer; check "
                f"config.json, or inspect() the final text instead"
            )
    if any(s.needs_output_attentions for k in kinds for s in sites[k]):
        gen_kw["output_attentions"] = True  # modules found by structure return weights only then
    with _memory.preflight(
        bundle.lock,
        lambda: capture_estimate(
            bundle,
            n_prompt,
            select=select,
            dtype=store,
            new_tokens=max_new_tokens,
            max_memory=max_memory,
        ),
        _memory.ADVICE["generate"],
    ):
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
            hooks.append(
                Hook(model.get_encoder(), lambda m, args, output: encoder_out.append(output))
            )
        with hooked(bundle, hooks), torch.inference_mode():
            try:
                out = model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    max_new_tokens=max_new_tokens,
                    return_dict_in_generate=True,
                    **gen_kw,
                )
            except ValueError as exc:  # transformers' check of the generation options
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "invalid"
                raise InputError(
                    f"{bundle.name}: generate() refused the options {_json_safe(generation_kwargs)}"
                    f" ({first}); fix or leave out the option it names"
                ) from exc
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
                    **({"output_attentions": True} if "output_attentions" in gen_kw else {}),
                )
            else:
                model(
                    input_ids=last,
                    attention_mask=torch.ones_like(sequence)[None],
                    cache=cache,
                    return_dict=True,
                    **({"output_attentions": True} if "output_attentions" in gen_kw else {}),
                )

    ids = sequence.tolist()
    new_ids = ids[1:] if encoder_decoder else ids[n_prompt:]
    n_new = len(new_ids)
    tolerance = ROW_SUM_TOLERANCE.get(bundle.dtype, 1e-3)
    eos = gen_kw.get("eos_token_id", getattr(model.generation_config, "eos_token_id", None))
    eos_ids = set(eos if isinstance(eos, list | tuple) else [eos]) - {None}
    facts = {
        "generated": True,
        "prompt_length": n_prompt if not encoder_decoder else 1,
        "n_generated": n_new,
        "max_new_tokens": max_new_tokens,
        "generated_text": tok.decode(new_ids, skip_special_tokens=True),
        "stopped": "eos" if new_ids and new_ids[-1] in eos_ids else "length",
        "generation_kwargs": _json_safe(generation_kwargs),
    }
    meta = made_metadata(bundle, text, store, facts)
    meta["chat"] = messages is not None
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
                layer_idx[kind],
                head_idx[kind],
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
        recorder.weights("self", n, n),
        tokens,
        tokens,
        "self",
        True,
        layer_idx["self"],
        head_idx["self"],
        tolerance,
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


__all__ = ["generate", "uses_chat"]
