"""bertviz's neuron view (query and key vectors behind each attention weight), offline.

bertviz's own Python path loads its bundled ``transformers_neuron_view`` models by hub name, which
downloads. Instead the query/key vectors are read here from the already-loaded Hugging Face model
with forward hooks (BERT-family ``attention.self.query`` / ``.key``, GPT-2 ``attn.c_attn``) on the
capture's own token ids, checked against the captured weights, embedded as float16 and fed to
bertviz's unchanged ``neuron_view.js``.

This is the one function in :mod:`inspector.render` that runs a model: the vectors are not part
of a capture. Supported: BERT, RoBERTa (and XLM-R / CamemBERT, same modules) and GPT-2 families.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..capture import Capture
from ..errors import CaptureError, InputError, UnsupportedModelError
from ..loading import ModelBundle
from .encode import encode_float16
from .views import PageData, RenderedHTML, _single_view, _title, view_parts

#: model_type -> module layout the hooks understand.
NEURON_FAMILIES = {
    "bert": "bert",
    "roberta": "bert",
    "xlm-roberta": "bert",
    "camembert": "bert",
    "gpt2": "gpt2",
}

#: Largest |softmax(q k / sqrt(d)) - captured weight| accepted as "the same attention".
RECOMPUTE_TOLERANCE = 2e-3


def _modules(bundle: ModelBundle) -> tuple[str, list[Any]]:
    family = NEURON_FAMILIES.get(str(bundle.model_type))
    if family is None:
        raise UnsupportedModelError(
            f"{bundle.name}: the neuron view supports BERT, RoBERTa and GPT-2 families "
            f"(model_type {sorted(NEURON_FAMILIES)}), not {bundle.model_type!r}; use "
            f"head_view() or model_view() instead"
        )
    base = bundle.model.base_model
    if family == "bert":
        return family, [layer.attention.self for layer in base.encoder.layer]
    return family, [block.attn for block in base.h]


def query_key_vectors(bundle: ModelBundle, capture: Capture) -> tuple[np.ndarray, np.ndarray]:
    """Query and key vectors of the capture's layers and heads.

    Returns:
        ``(queries, keys)``, float32 arrays of shape ``(layer, head, position, head_dim)``.
    """
    import torch

    if "self" not in capture.stacks:
        raise UnsupportedModelError("the neuron view needs a self-attention model")
    stack = capture.stacks["self"]
    family, modules = _modules(bundle)
    n_heads = bundle.n_heads
    found: dict[int, tuple[Any, Any]] = {}
    handles: list[Any] = []

    def split(t: Any) -> Any:  # (1, seq, heads*dim) -> (heads, seq, dim)
        return t[0].reshape(t.shape[1], n_heads, -1).transpose(0, 1).float().cpu()

    def register(i: int, module: Any) -> None:
        if family == "bert":
            q_out: dict[str, Any] = {}

            def hook_q(_m: Any, _a: Any, out: Any, store: dict[str, Any] = q_out) -> None:
                store["q"] = split(out)

            def hook_k(
                _m: Any, _a: Any, out: Any, i: int = i, store: dict[str, Any] = q_out
            ) -> None:
                found[i] = (store["q"], split(out))

            handles.append(module.query.register_forward_hook(hook_q))
            handles.append(module.key.register_forward_hook(hook_k))
        else:

            def hook_qkv(_m: Any, _a: Any, out: Any, i: int = i) -> None:
                q, k, _v = out.split(out.shape[-1] // 3, dim=-1)
                found[i] = (split(q), split(k))

            handles.append(module.c_attn.register_forward_hook(hook_qkv))

    toks = stack.query
    device = next(bundle.model.parameters()).device
    ids = torch.tensor(toks.ids.tolist(), device=device)[None]
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if family == "bert" and bundle.model_type == "bert":
        b = toks.sentence_b_start
        types = np.zeros(len(toks), dtype=np.int64)
        if b is not None:
            types[b:] = 1
        inputs["token_type_ids"] = torch.tensor(types.tolist(), device=device)[None]
    # Hooks live only inside the model's lock and are removed even if the pass raises.
    with bundle.lock:
        try:
            for i, module in enumerate(modules):
                register(i, module)
            with torch.inference_mode():
                bundle.model(**inputs)
        finally:
            for h in handles:
                h.remove()
    queries = np.stack([found[i][0].numpy() for i in stack.layers])[:, list(stack.heads)]
    keys = np.stack([found[i][1].numpy() for i in stack.layers])[:, list(stack.heads)]
    _check(queries, keys, stack.weights, causal=stack.causal)
    return queries.astype(np.float32), keys.astype(np.float32)


def _check(queries: np.ndarray, keys: np.ndarray, weights: np.ndarray, *, causal: bool) -> None:
    scores = queries @ keys.swapaxes(-1, -2) / np.sqrt(queries.shape[-1])
    if causal:
        n = scores.shape[-1]
        scores = np.where(np.triu(np.ones((n, n), dtype=bool), 1), -np.inf, scores)
    scores = scores - scores.max(-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(-1, keepdims=True)
    err = float(np.abs(probs - weights).max())
    if err > RECOMPUTE_TOLERANCE:
        raise CaptureError(
            f"the query/key vectors do not reproduce the captured attention (max difference "
            f"{err:.3g}); the neuron view cannot show this model faithfully"
        )


def neuron_view(
    bundle: ModelBundle,
    capture: Capture,
    *,
    layer: int | None = None,
    head: int | None = None,
    sentence_b_start: int | bool | None = True,
    display_mode: str = "light",
    prettify_tokens: bool = True,
    precision: str = "uint8",
) -> RenderedHTML:
    """bertviz's neuron view of a capture, computed offline from the loaded model.

    Args:
        bundle: the model the capture came from (its vectors are recomputed on the same ids).
        capture: a self-attention capture of a BERT, RoBERTa or GPT-2 family model.
        layer, head: model layer / head selected at first.
        sentence_b_start, prettify_tokens, precision: as in :func:`~.views.head_view`.
        display_mode: ``"light"`` or ``"dark"``.

    Raises:
        UnsupportedModelError: for other architectures (T5, BART, LLaMA, ...).
    """
    if display_mode not in ("light", "dark"):
        raise InputError(f"display_mode must be 'light' or 'dark', got {display_mode!r}")
    if not isinstance(bundle, ModelBundle):
        raise InputError("neuron_view needs the loaded model (ModelBundle) of the capture")
    _modules(bundle)  # unsupported architectures fail before any work
    queries, keys = query_key_vectors(bundle, capture)
    stack = capture.stacks["self"]
    page = PageData(capture, precision)
    page.stack("self")
    parts = view_parts(
        capture, ["self"], sentence_b_start=sentence_b_start, prettify_tokens=prettify_tokens
    )
    spec: dict[str, Any] = {
        "id": page.next_id("neuron"),
        "kind": "neuron",
        "label": "neuron view",
        "layer_positions": list(range(len(stack.layers))),
        "head_positions": None,
        "lazy": False,
        "parts": [p.spec() for p in parts],
        "params": {
            "default_filter": "all",
            "bidirectional": not stack.causal,
            "display_mode": display_mode,
            "layer": _position(stack.layers, layer, "layer"),
            "head": _position(stack.heads, head, "head"),
        },
    }
    page.views.append(spec)
    page.vectors[spec["id"]] = {"queries": encode_float16(queries), "keys": encode_float16(keys)}
    return _single_view(page, spec, _title(capture, "neuron view"))


def _position(indexes: Sequence[int], value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if value not in indexes:
        raise InputError(f"{what} {value} was not captured; captured {what}s: {list(indexes)}")
    return list(indexes).index(value)
