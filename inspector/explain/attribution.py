"""Direct logit attribution, exact: which heads (and which source tokens through them) wrote a
token's logit into the residual stream, and the logit lens of every layer.

The final hidden state at a position is a sum of what each component wrote into the residual
stream; with the final norm's scale frozen at the full residual's value (TransformerLens'
``apply_ln_to_stack``: LayerNorm centres each component, RMSNorm does not, the weight folds into
the direction, the bias is its own term) the logit of ``token`` (minus that of ``against``) is
the sum of one number per component. Norms inside the blocks (post-sublayer norms, post-LN
residual norms) are frozen the same way. The terms add up to the model's own logit minus the
unembedding bias (reported on its own) within float error: ``attrs['remainder']`` says by how
much.

``per_token=True`` splits each head's term by source position, ``a[q, k] · (v_k W_O^h) · g``,
from values read and verified by :func:`.norms.head_values`; each head's rows add up to its
term.

The model runs once through :func:`inspector.capture.trace.run_kept` (:mod:`.residual` finds
where to read); nothing here registers hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..capture.memory import MemoryLimit
from ..capture.types import Capture, Tokens
from ..errors import InputError, UnsupportedModelError
from ..models.families import logit_transform
from ..models.loading import ModelBundle
from . import residual as _res
from .norms import head_values
from .readout import final_steps, unembedding
from .route_result import KINDS
from .target import _token_id

#: Query rows (besides the explained one) that check how values are read.
CHECK_ROWS = 4


@dataclass(frozen=True, eq=False)
class Attribution:
    """One traced prediction: the terms, the per-token split, the logit lens.

    Attributes:
        frame: ``(layer, head)``-indexed terms (``head = -1`` for non-head rows) with
            ``kind``, ``component`` and ``attribution`` columns; ``attrs`` hold ``token``,
            ``token_id``, ``against``, ``position``, ``logit`` (the model's, before any soft cap),
            ``unembedding_bias``, ``remainder``, ``probability``.
        per_token: ``(layer, head)``-indexed ``kind, source_pos, source_token, attribution``
            rows (``None`` unless asked for).
        lens: the logit lens (:func:`lens_frame`).
        decomposition: the terms and pulled-back directions behind ``frame``.
    """

    frame: pd.DataFrame
    per_token: pd.DataFrame | None
    lens: pd.DataFrame
    decomposition: _res.Decomposition | None = None


def _check_rows(pos: int, n: int) -> list[int]:
    others = np.unique(np.linspace(0, n - 1, CHECK_ROWS + 1).round().astype(int)).tolist()
    return [pos] + [r for r in others if r != pos]


def stack_tokens(capture: Capture, kind: str) -> Tokens:
    """The query tokens of the language model's side of ``capture``."""
    return capture.stacks["decoder" if capture.is_encoder_decoder else "self"].query


def token_index(bundle: ModelBundle, token: str | int | None, default: int, what: str) -> int:
    """A token id from a string of one token, an id, or ``None`` (``default``)."""
    if token is None:
        return default
    if isinstance(token, bool) or not isinstance(token, str | int | np.integer):
        raise InputError(f"{what} must be a token string or id, got {token!r}")
    tid = _token_id(bundle, int(token) if isinstance(token, np.integer) else token)
    vocab = int(bundle.model.get_output_embeddings().weight.shape[0])
    if not 0 <= tid < vocab:
        raise InputError(f"{what} id {tid} is outside the vocabulary of {vocab} tokens")
    return tid


def _name(bundle: ModelBundle, tid: int) -> str:
    tok = bundle.tokenizer
    raw = tok.convert_ids_to_tokens(int(tid))
    text = tok.convert_tokens_to_string([raw]) if isinstance(raw, str) else f"<id {tid}>"
    return text if isinstance(text, str) else str(raw)


def trace_logit(
    bundle: ModelBundle,
    capture: Capture,
    *,
    token: str | int | None = None,
    against: str | int | None = None,
    position: int = -1,
    per_token: bool = False,
    method: str = "auto",
    lens_top: int = 5,
    max_memory: MemoryLimit | None = None,
) -> Attribution:
    """Direct logit attribution of one prediction of ``capture``'s input (see the module).

    Args:
        token: the token explained (a string of one token or an id); default: the token the
            model predicts at ``position``.
        against: explain the logit difference ``token - against``.
        position: the position whose next-token prediction is explained (negative: from the
            end); an encoder-decoder's decoder position.
        per_token: also split every head's term by source position.
        method: how attention rows are read for ``per_token`` (``auto``, ``eager``,
            ``blockwise``).
        lens_top: tokens listed per layer in the logit lens.
        max_memory: the budget of the forward pass and what it keeps (default: what is free).
    """
    return trace_positions(
        bundle, capture, [position], [token], against=against, per_token=per_token,
        method=method, lens_top=lens_top, max_memory=max_memory,
    )[0]  # fmt: skip


def trace_positions(
    bundle: ModelBundle,
    capture: Capture,
    positions: Sequence[int],
    tokens: Sequence[str | int | None],
    *,
    against: str | int | None = None,
    per_token: bool = False,
    method: str = "auto",
    lens_top: int = 5,
    max_memory: MemoryLimit | None = None,
) -> list[Attribution]:
    """:func:`trace_logit` of several positions (each with its token, ``None``: the
    prediction) from one forward pass: a generation's steps."""
    wiring = _res.find_wiring(bundle, "logit attribution")
    n = len(stack_tokens(capture, wiring.kind))
    explained = [_res.check_position(p, n) for p in positions]
    rows = list(explained)
    if per_token:
        rows += [r for r in _check_rows(explained[-1], n) if r not in rows]
    rec = _res.record(
        bundle, wiring, capture, rows, values=per_token, method=method, max_memory=max_memory
    )

    def split(kind: str, li: int, gh: np.ndarray) -> np.ndarray:
        cross = kind == "cross_head"
        st = wiring.cross if cross else wiring.found
        att_kind = "cross" if cross else wiring.kind
        return head_split(rec, st, li, att_kind, gh, cross, bundle.name)

    out = []
    for i, token in enumerate(tokens):
        rec.current = i
        tid, aid = targets(bundle, rec, token, against)
        out.append(attribute(bundle, wiring, rec, capture, tid, aid,
                             split if per_token else None, lens_top=lens_top))  # fmt: skip
    return out


def targets(
    bundle: ModelBundle, rec: _res.Record, token: str | int | None, against: str | int | None
) -> tuple[int, int | None]:
    """The token ids explained: ``token`` (default: the prediction) and ``against``."""
    assert rec.logits is not None
    tid = token_index(bundle, token, int(np.argmax(rec.logits)), "token")
    aid = None if against is None else token_index(bundle, against, 0, "against")
    return tid, aid


def attribute(
    bundle: ModelBundle,
    wiring: _res.Wiring,
    rec: _res.Record,
    capture: Capture,
    tid: int,
    aid: int | None,
    split: Any = None,
    *,
    lens_top: int = 5,
) -> Attribution:
    """The :class:`Attribution` of ``tid`` (minus ``aid``) from a recorded pass; ``split(kind,
    layer, direction) -> (head, key)`` gives the per-token rows (``None``: no split)."""
    assert rec.logits is not None
    scale, cap = logit_transform(bundle.model.config)
    logits = rec.logits if cap is None else cap * np.arctanh(np.clip(rec.logits / cap, -1, 1))
    g, bias = unembedding(bundle, wiring, tid, aid)
    dec = _res.decompose(rec, wiring, g, bundle.name, final_steps(rec, wiring, bundle))
    logit = float(logits[tid] - (logits[aid] if aid is not None else 0.0))
    total = float(sum(t.value for t in dec.terms))
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    frame = _frame(dec.terms)
    frame.attrs.update(
        token=_name(bundle, tid), token_id=tid, position=rec.position,
        against=None if aid is None else _name(bundle, aid), against_id=aid,
        logit=logit, unembedding_bias=bias, remainder=logit - bias - total,
        probability=float(probs[tid]), logit_scale=scale,
    )  # fmt: skip
    per_token = per_token_frame(dec, capture, wiring, split) if split is not None else None
    lens = lens_frame(bundle, wiring, rec, dec, tid, top=lens_top)
    return Attribution(frame, per_token, lens, dec)


def _frame(terms: list[_res.Term]) -> pd.DataFrame:
    heads = [t for t in terms if t.head >= 0]
    heads.sort(key=lambda t: (t.kind != "head", t.layer, t.head))
    rest = [t for t in terms if t.head < 0]
    rows = heads + rest
    index = pd.MultiIndex.from_arrays(
        [[t.layer for t in rows], [t.head for t in rows]], names=["layer", "head"]
    )
    label = [
        f"L{t.layer} H{t.head}"
        if t.head >= 0
        else f"{KINDS.get(t.kind, t.kind)}" + (f" L{t.layer}" if t.layer >= 0 else "")
        for t in rows
    ]
    return pd.DataFrame(
        {
            "kind": [t.kind for t in rows],
            "component": label,
            "attribution": np.array([t.value for t in rows], dtype=np.float64),
        },
        index=index,
    )


#: The ``kind`` of a per-token row: a self-attention head's or a cross-attention head's.
HEAD_KINDS = ("head", "cross_head")


def per_token_frame(
    dec: _res.Decomposition, capture: Capture, wiring: _res.Wiring, split: Any
) -> pd.DataFrame:
    """Each head's term split by source position (rows add up to the head's term)."""
    frames = []
    for (kind, li), gh in sorted(dec.head_dirs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        part = np.asarray(split(kind, li, gh))  # (h, k)
        keys = capture.stacks["cross" if kind == "cross_head" else wiring.kind].key
        n_h, n_k = part.shape
        names, codes = np.unique(np.asarray(keys.readable, dtype=object), return_inverse=True)
        frames.append(
            pd.DataFrame(
                {
                    "layer": np.repeat(li, n_h * n_k),
                    "head": np.repeat(np.arange(n_h), n_k),
                    "kind": pd.Categorical([kind] * (n_h * n_k), categories=HEAD_KINDS),
                    "source_pos": np.tile(np.arange(n_k), n_h),
                    # a token string per row is 2.2M Python objects at 8k tokens on SmolLM2
                    "source_token": pd.Categorical.from_codes(
                        np.tile(codes, n_h), dtype=pd.CategoricalDtype(list(names))
                    ),
                    "attribution": part.reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True).set_index(["layer", "head"])


def head_split(
    rec: _res.Record, st: Any, li: int, att_kind: str, gh: np.ndarray, cross: bool, name: str
) -> np.ndarray:
    """``(head, key)``: ``a[h, q, k] · (v_k W_O^h) · gh`` at the traced row ``q``."""
    assert rec.attention is not None
    alpha = rec.attention.rows(att_kind, li, rec.rows)  # (h, r, k)
    store = rec.cross_values if cross else rec.values
    values, w_o = head_values(
        st, st.layers[li], li, alpha, store[(li, -1)], store, kind=att_kind, name=name
    )
    return split_terms(alpha[:, rec.current], values, w_o, gh)


def split_terms(alpha_row: Any, values: Any, w_o: Any, gh: np.ndarray) -> np.ndarray:
    """``(head, key)``: ``alpha_row[h, k] · values[h, k] · (W_O^h gh)`` (float64 tensors)."""
    import torch

    reads = torch.einsum("hdk,k->hd", w_o, torch.from_numpy(gh))  # (h, d)
    return (alpha_row * torch.einsum("hkd,hd->hk", values, reads)).numpy()


def lens_frame(
    bundle: ModelBundle,
    wiring: _res.Wiring,
    rec: _res.Record,
    dec: _res.Decomposition,
    tid: int,
    *,
    top: int = 5,
) -> pd.DataFrame:
    """The logit lens at the traced row: after the embeddings (layer -1) and each layer, the
    residual through the final norm (its own scale) and the unembedding: the token's ``rank``
    (0 = top), ``logit`` and ``prob``, the ``top`` tokens and the ``promoted`` ones (largest
    logit gain over the layer below)."""
    import torch

    scale, _cap = logit_transform(bundle.model.config)
    resid = [rec.get("in0")] + [rec.get(f"out{li}") for li in range(wiring.n_layers)]
    h = np.stack(resid)
    for norm in dec.final:
        h = norm.apply(h)
    h = h * dec.head_scale
    w = wiring.lm_head.weight.detach().float()
    logits = torch.from_numpy(h.astype(np.float32)) @ w.T
    if wiring.lm_head.bias is not None:
        logits += wiring.lm_head.bias.detach().float()
    logits = logits.double() * scale
    probs = torch.softmax(logits, dim=-1)
    rank = (logits > logits[:, tid : tid + 1]).sum(dim=-1)
    gain = torch.cat([torch.zeros_like(logits[:1]), logits[1:] - logits[:-1]])
    top_ids = logits.topk(top, dim=-1).indices.tolist()
    promoted = gain.topk(top, dim=-1).indices.tolist()
    return pd.DataFrame(
        {
            "layer": np.arange(-1, wiring.n_layers),
            "rank": rank.numpy().astype(np.int64),
            "logit": logits[:, tid].numpy(),
            "prob": probs[:, tid].numpy(),
            "top": [[_name(bundle, i) for i in ids] for ids in top_ids],
            "promoted": [[_name(bundle, i) for i in ids] for ids in promoted],
        }
    )


def token_scores(
    bundle: ModelBundle, capture: Capture, kind: str, position: int = -1
) -> np.ndarray:
    """Per-token attribution of the predicted token summed over every head: ``(keys,)`` of
    the ``kind`` stack (``self`` / ``decoder``: self-attention heads; ``cross``: cross
    attention over the encoder's tokens)."""
    if kind == "encoder":
        raise UnsupportedModelError(
            "logit attribution explains the decoder's prediction: its token scores cover the "
            "decoder's tokens (kind 'decoder') or the encoder's through cross attention ('cross')"
        )
    result = trace_logit(bundle, capture, position=position, per_token=True)
    assert result.per_token is not None
    want = "cross_head" if kind == "cross" else "head"
    part = result.per_token[result.per_token["kind"] == want]
    n = len(capture.stacks[kind].key)
    return np.bincount(part["source_pos"].to_numpy(), part["attribution"].to_numpy(), minlength=n)


__all__ = [
    "KINDS",
    "Attribution",
    "attribute",
    "head_split",
    "lens_frame",
    "per_token_frame",
    "split_terms",
    "targets",
    "token_scores",
    "trace_logit",
    "trace_positions",
]
