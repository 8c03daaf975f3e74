"""The family matrix: every architecture family, every method, as a pair and from a folder.

One tiny random model per family (``tests/factories.py``: ``FAMILY_SPECS``; 2 layers, 4 heads,
built from its config offline). For each, as an in-memory ``(model, tokenizer)`` pair:

* capture equals the eager ``output_attentions`` of the same weights loaded by transformers
  itself with ``attn_implementation="eager"`` (local attention - LED's windows, LongT5's blocks -
  expanded here, by loops written from the papers' definitions);
* generation equals one forward pass over the final sequence (encoders refuse to generate);
* norm-based attention is re-derived from the input ``z`` of the attention output projection
  (found by the tests' own module names, ``FAMILY_OUTPUTS``): the vectors ``f_h(x_j)`` must
  give every head's real output, ``Σ_j α_ij f_h(x_j) = z_i^h W_O^h``, and their norms equal
  ``‖v_j W_O^h‖`` with the values solved from ``z = α·v`` in float64 (keys whose solved value
  is proven within a tenth of the tolerance: random tiny models attend almost uniformly, so
  ``α`` is ill-conditioned, and a causal map's last keys are seen by few rows);
* ablation and gradient importance equal a re-derivation with the tests' own hooks on those
  projections, head by head; "what mattered" runs and agrees with them;
* the model is left exactly as loaded (hooks, modes, flags, attention implementation, weights).

From the saved folder: capture and generation again, and norms and importance equal the pair's.
The README's support table is written from these families (``tests/support_table.py``).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import torch

import inspector
from inspector.errors import UnsupportedModelError
from inspector.explain import attention_norms

from factories import (
    FAMILY_OUTPUTS,
    FAMILY_SOURCE,
    FAMILY_SPECS,
    FAMILY_TARGET,
    FAMILY_TEXT,
    build_family,
)

TYPES = list(FAMILY_SPECS)
TARGET_TOKEN = 7


def target(out: Any) -> Any:
    """The importance target of every family: one logit of the last position."""
    return out.logits[:, -1, TARGET_TOKEN].float()


class _Family:
    """One family's pair, folder and transformers' own eager reference, built once."""

    def __init__(self, model_type: str, folder: Any) -> None:
        import transformers as tf

        model, tok = build_family(model_type)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        cls = getattr(tf, FAMILY_SPECS[model_type][1])
        self.reference = cls.from_pretrained(folder, attn_implementation="eager").eval()
        #: float64, for solving values from z = α·v (random tiny models attend almost uniformly,
        #: so α is ill-conditioned and float32 weights would lose the values)
        self.reference64 = cls.from_pretrained(
            folder, attn_implementation="eager", experts_implementation="eager"
        )
        self.reference64.eval().double()
        self.pair = inspector.load((model, tok))
        self.folder = folder
        self.model_type = model_type
        self.results: dict[str, Any] = {}


@pytest.fixture(scope="module")
def families(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Families built on first use. One torch thread: on a busy 2-core machine a second thread
    makes each tiny matrix product ~30x slower (threads wait on each other)."""
    built: dict[str, _Family] = {}

    def get(model_type: str) -> _Family:
        if model_type not in built:
            built[model_type] = _Family(model_type, tmp_path_factory.mktemp(model_type))
        return built[model_type]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield get
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ references


def _state(model: torch.nn.Module) -> tuple[Any, ...]:
    return (
        tuple(
            (n, tuple(m._forward_hooks), tuple(m._forward_pre_hooks))
            for n, m in model.named_modules()
        ),
        tuple(m.training for m in model.modules()),
        tuple(p.requires_grad for p in model.parameters()),
        all(p.grad is None for p in model.parameters()),
        model.config._attn_implementation,
        float(sum(p.double().sum() for p in model.parameters())),
    )


def _window(a: np.ndarray, n: int) -> np.ndarray:
    """Longformer's local weights ``(head, query, 2w+1)``: entry ``j`` is key ``i + j - w``."""
    h, _, width = a.shape
    w = width // 2
    full = np.zeros((h, n, n), dtype=a.dtype)
    for i in range(n):
        for j in range(width):
            if 0 <= i + j - w < n:
                full[:, i, i + j - w] = a[:, i, j]
    return full


def _blocks(a: np.ndarray, n: int) -> np.ndarray:
    """LongT5's local weights ``(block, head, block_len, 3·block_len)``: block ``b``'s key ``j``
    is position ``(b - 1)·block_len + j``."""
    nb, h, bl, _ = a.shape
    full = np.zeros((h, n, n), dtype=a.dtype)
    for b in range(nb):
        for i in range(bl):
            for j in range(3 * bl):
                q, k = b * bl + i, (b - 1) * bl + j
                if q < n and 0 <= k < n:
                    full[:, q, k] = a[b, :, i, j]
    return full


def _as_matrix(a: torch.Tensor, n_keys: int) -> np.ndarray:
    """One layer's returned attention (batch 1) as ``(head, query, key)``."""
    x = a[0].numpy()
    if x.ndim == 4:
        return _blocks(x, n_keys)
    if x.shape[-1] != n_keys:
        return _window(x, n_keys)
    return x


def _inputs(ins: Any, decoder_ids: Any = None) -> dict[str, torch.Tensor]:
    if ins.is_encoder_decoder:
        ids = torch.tensor(ins.encoder.token_ids)[None]
        dec = torch.tensor(ins.decoder.token_ids if decoder_ids is None else decoder_ids)[None]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": dec}
    ids = torch.tensor(ins.token_ids)[None]
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _reference(model: torch.nn.Module, ins: Any) -> dict[str, np.ndarray]:
    """transformers' own eager attentions for the inspection's tokens, ``(layer, head, q, k)``."""
    with torch.no_grad():
        out = model(**_inputs(ins), output_attentions=True)
    if not ins.is_encoder_decoder:
        n = len(ins.tokens)
        return {"self": np.stack([_as_matrix(a, n) for a in out.attentions])}
    n_enc, n_dec = len(ins.encoder.tokens), len(ins.decoder.tokens)
    return {
        "encoder": np.stack([_as_matrix(a, n_enc) for a in out.encoder_attentions]),
        "decoder": np.stack([_as_matrix(a, n_dec) for a in out.decoder_attentions]),
        "cross": np.stack([_as_matrix(a, n_enc) for a in out.cross_attentions]),
    }


def _assert_capture(reference: torch.nn.Module, ins: Any, atol: float = 1e-5) -> None:
    refs = _reference(reference, ins)
    assert set(refs) == set(ins.capture.stacks)
    for kind, stack in ins.capture.stacks.items():
        np.testing.assert_allclose(stack.weights, refs[kind], atol=atol, err_msg=kind)


def _outputs(model: torch.nn.Module, model_type: str, kind: str) -> list[torch.nn.Module]:
    pattern = re.compile(FAMILY_OUTPUTS[model_type][kind])
    found = [m for n, m in model.named_modules() if pattern.search(n)]
    assert found, f"{model_type}: no module matches {pattern.pattern}"
    return found


def _w_o(module: torch.nn.Module) -> torch.Tensor:
    """The output projection's weight as ``(in, out)``."""
    w = module.weight.detach()
    return w if type(module).__name__ == "Conv1D" else w.T


class _Calls:
    """Test-side hooks on the output projections, by call order (ALBERT shares one module)."""

    def __init__(self, modules: list[torch.nn.Module], fn: Any) -> None:
        self.count = 0
        self.handles = [m.register_forward_pre_hook(self._hook(fn)) for m in set(modules)]

    def _hook(self, fn: Any) -> Any:
        def hook(_module: Any, args: tuple[Any, ...]) -> Any:
            layer = self.count
            self.count += 1
            new = fn(layer, args[0])
            return None if new is None else (new, *args[1:])

        return hook

    def __enter__(self) -> _Calls:
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()


#: The value solve's condition-number bound: a system with ``σ_max / σ_min`` above it is not
#: used (its pseudo-inverse, computed in float64, would no longer be accurate to ~1e-8).
MAX_CONDITION = 1e8
#: Share of the norm comparison's tolerance the reference's own proven error may take.
REFERENCE_SHARE = 0.1
#: The norm comparison's tolerances (inspector reads values in float32).
NORM_RTOL, NORM_ATOL = 2e-3, 1e-5
EPS64 = 2.0**-53


def _solved_norms(alpha: torch.Tensor, z: torch.Tensor, w_o: torch.Tensor) -> tuple[Any, Any]:
    """``(‖v̂_j W_O‖, bound_j)`` per key: values ``v̂`` solved from ``z = α·v`` in float64, and
    a proven bound on ``|‖v_j W_O‖ - ‖v̂_j W_O‖|`` (``inf`` where ``z`` does not determine
    ``v_j``).

    Why the bound holds. Take the largest ``m`` for which the rows ``R`` that put exactly zero
    weight on keys ``m..`` (all rows for a full map, rows ``< m`` for a causal one) give a system
    ``a = α[R, :m]`` of full column rank with condition number at most :data:`MAX_CONDITION`.
    Then ``z_R = a·v_{:m} + δz`` holds exactly, ``δz`` being the rounding of the model's own
    float64 product (at most ``n ε Σ_j |α_ij| |v_j|``), and ``pinv(a)·a = I``, so for the
    least-squares ``v̂`` with residual ``r = z_R - a·v̂``: ``v - v̂ = pinv(a)·(r - δz)``, hence
    ``‖v_j - v̂_j‖ <= ‖pinv(a)_j‖ (‖r‖ + ‖δz‖)`` and the norms differ by at most that times
    ``‖W_O‖``. The factor 2 covers the rounding of computing ``r``, ``pinv`` and the product
    (relative ``κ ε <= 1e-8``). Keys ``>= m`` (a causal map's last keys, seen by few rows),
    and every key of a map with fewer queries than keys, are not determined: ``inf``.
    Selecting keys by a small pseudo-inverse row alone was optimistic: a key no row sees has
    a zero row and no determined value at all.
    """
    n_k = alpha.shape[1]
    norms = np.zeros(n_k)
    bound = np.full(n_k, np.inf)
    for m in range(n_k, 0, -1):
        rows = (alpha[:, m:] == 0).all(dim=1)
        if int(rows.sum()) < m:
            continue
        a = alpha[rows, :m]
        sv = torch.linalg.svdvals(a)
        if not float(sv[-1]) > 0 or float(sv[0] / sv[-1]) > MAX_CONDITION:
            continue
        zr = z[rows]
        v = torch.linalg.lstsq(a, zr).solution
        dz = n_k * EPS64 * (a.abs() @ v.abs())
        err = torch.linalg.norm(zr - a @ v) + torch.linalg.norm(dz)
        w_norm = torch.linalg.matrix_norm(w_o, ord=2)
        norms[:m] = (v @ w_o).norm(dim=-1).numpy()
        bound[:m] = (2 * torch.linalg.pinv(a).norm(dim=1) * err * w_norm).numpy()
        break
    return norms, bound


def _head_outputs(model: Any, model_type: str, ins: Any, kind: str) -> list[np.ndarray]:
    """Per layer: what each head adds to the residual stream, ``z_i^h W_O^h`` ``(head, query,
    hidden)``, read with the tests' own hook on the output projection."""
    stack = ins.capture.stacks[kind]
    n_l, n_h, n_q, _ = stack.weights.shape
    modules = _outputs(model, model_type, kind)
    z: list[torch.Tensor] = []
    with _Calls(modules, lambda layer, x: z.append(x.detach()[0].double())), torch.no_grad():
        model(**_inputs(ins))
    layer_modules = modules if len(modules) == n_l else modules * n_l
    out = []
    for li in range(n_l):
        w_o = _w_o(layer_modules[li]).double()
        d = w_o.shape[0] // n_h
        heads = [z[li][:n_q, h * d : (h + 1) * d] @ w_o[h * d : (h + 1) * d] for h in range(n_h)]
        out.append(torch.stack(heads).numpy())
    return out


def _norms_reference(
    model: Any, model_type: str, ins: Any, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """``‖f_h(x_j)‖`` ``(layer, head, key)`` in float64: the values solved from ``z = α·v``, with
    ``α`` and ``z`` of ``model``'s own forward pass; and where that is proven within a tenth of
    the comparison's tolerance of the exact values (:func:`_solved_norms`)."""
    modules = _outputs(model, model_type, kind)
    z: list[torch.Tensor] = []
    with _Calls(modules, lambda layer, x: z.append(x.detach()[0])), torch.no_grad():
        out = model(**_inputs(ins), output_attentions=True)
    names = {"self": "attentions", "encoder": "encoder_attentions"}
    names.update(decoder="decoder_attentions", cross="cross_attentions")
    n_keys = len(ins.capture.stacks[kind].key)
    alphas = [torch.from_numpy(_as_matrix(a, n_keys)) for a in getattr(out, names[kind])]
    n_l, (n_h, n_q, _) = len(alphas), alphas[0].shape
    layer_modules = modules if len(modules) == n_l else modules * n_l
    norms, determined = [], []
    for li in range(n_l):
        w_o = _w_o(layer_modules[li])
        d = w_o.shape[0] // n_h
        heads, masks = [], []
        for h in range(n_h):
            span = slice(h * d, (h + 1) * d)
            norm, bound = _solved_norms(alphas[li][h], z[li][:n_q, span], w_o[span])
            heads.append(norm)
            masks.append(bound <= REFERENCE_SHARE * (NORM_ATOL + NORM_RTOL * norm))
        norms.append(np.stack(heads))
        determined.append(np.stack(masks))
    return np.stack(norms), np.stack(determined)


def _importance_reference(model: Any, model_type: str, ins: Any, kind: str) -> tuple[Any, Any]:
    """Ablation deltas and gate gradients ``(layer, head)``, with the tests' own hooks."""
    stack = ins.capture.stacks[kind]
    n_l, n_h = stack.weights.shape[:2]
    modules = _outputs(model, model_type, kind)
    inputs = _inputs(ins)
    with torch.no_grad():
        clean = float(target(model(**inputs))[0])
    deltas = np.zeros((n_l, n_h))
    for li in range(n_l):
        for h in range(n_h):

            def ablate(layer: int, x: torch.Tensor, li: int = li, h: int = h) -> Any:
                if layer % n_l != li:
                    return None
                d = x.shape[-1] // n_h
                x = x.clone()
                x[..., h * d : (h + 1) * d] = 0
                return x

            with _Calls(modules, ablate), torch.no_grad():
                deltas[li, h] = float(target(model(**inputs))[0]) - clean
    gates = torch.ones(n_l, n_h, dtype=torch.float32, requires_grad=True)

    def gate(layer: int, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1] // n_h
        g = gates[layer % n_l].repeat_interleave(d).to(x.dtype)
        return x * g

    with _Calls(modules, gate), torch.enable_grad():
        value = target(model(**inputs))[0]
        (grad,) = torch.autograd.grad(value, gates)
    return deltas, grad.numpy()


def _part(ins: Any, kind: str) -> Any:
    return ins if kind == "self" else getattr(ins, kind)


def _inspect(m: Any) -> Any:
    if m.bundle.architecture == "encoder-decoder":
        return m.inspect(FAMILY_SOURCE, target=FAMILY_TARGET)
    return m.inspect(FAMILY_TEXT)


def _generate(m: Any) -> Any:
    if m.bundle.architecture == "encoder":
        with pytest.raises(UnsupportedModelError, match="encoder"):
            m.generate(FAMILY_TEXT, max_new_tokens=2)
        return None
    prompt = FAMILY_SOURCE if m.bundle.architecture == "encoder-decoder" else "The cat"
    return m.generate(prompt, max_new_tokens=3)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("model_type", TYPES)
def test_family_as_pair(model_type: str, families: Any) -> None:
    fam = families(model_type)
    m = fam.pair
    model = m.model
    before = _state(model)
    assert m.bundle.attn_implementation == "eager"
    ins = _inspect(m)
    _assert_capture(fam.reference, ins)
    gen = _generate(m)
    if gen is not None:
        _assert_capture(fam.reference, gen)
        assert gen.metadata["n_generated"] >= 1

    for kind in ins.capture.stacks:
        part = _part(ins, kind)
        weights = ins.capture.stacks[kind].weights
        norms = attention_norms(
            m.bundle, ins.capture.stacks[kind], capture=ins.capture, keep_vectors=True
        )
        # the vectors f_h(x_j) carry the heads' real outputs: Σ_j α_ij f_h(x_j) = z_i^h W_O^h
        np.testing.assert_allclose(
            np.linalg.norm(norms.vectors, axis=-1), norms.value_norms, rtol=1e-5
        )
        for li, z in enumerate(_head_outputs(model, model_type, ins, kind)):
            moved = np.einsum("hqk,hke->hqe", weights[li].astype(np.float64), norms.vectors[li])
            scale = np.abs(z).max()
            np.testing.assert_allclose(moved, z, atol=2e-4 * scale, err_msg=f"{kind} {li}")
        # and equal the values solved from z = α·v in float64, where that solve is determined
        ref, determined = _norms_reference(fam.reference64, model_type, ins, kind)
        assert determined.mean() >= 0.4, determined.mean()  # the check compares most keys
        np.testing.assert_allclose(
            norms.value_norms[determined],
            ref[determined],
            rtol=NORM_RTOL,
            atol=NORM_ATOL,
            err_msg=kind,
        )
        assert len(part.explain.norms()) == weights.size
        deltas, grads = _importance_reference(model, model_type, ins, kind)
        ablation = part.explain.ablation(target=target, batch_size=5)
        np.testing.assert_allclose(
            ablation["delta"].to_numpy().reshape(deltas.shape), deltas, atol=2e-5, err_msg=kind
        )
        gradient = part.explain.gradient(target=target)
        np.testing.assert_allclose(
            gradient["delta"].to_numpy().reshape(grads.shape), -grads, atol=2e-5, err_msg=kind
        )
        fam.results[kind] = (norms, ablation, gradient)
        if kind != "cross":
            expl = part.explain(target=target, top=2)
            np.testing.assert_allclose(expl.importance["delta"], ablation["delta"], atol=1e-6)
            assert expl.rollout.shape == weights.shape[2:]
    assert _state(model) == before


@pytest.mark.parametrize("model_type", TYPES)
def test_family_from_folder(model_type: str, families: Any) -> None:
    fam = families(model_type)
    m = inspector.load(str(fam.folder))
    before = _state(m.model)
    assert (m.bundle.architecture, m.bundle.n_kv_heads) == (
        fam.pair.bundle.architecture,
        fam.pair.bundle.n_kv_heads,
    )
    ins = _inspect(m)
    _assert_capture(fam.reference, ins)
    gen = _generate(m)
    if gen is not None:
        _assert_capture(fam.reference, gen)
    kind = next(iter(ins.capture.stacks))
    part = _part(ins, kind)
    np.testing.assert_allclose(
        part.explain.norms()["norm"], _part(_inspect(fam.pair), kind).explain.norms()["norm"],
        rtol=1e-5, atol=1e-7,
    )  # fmt: skip
    gradient = part.explain.gradient(target=target)
    reference = _part(_inspect(fam.pair), kind).explain.gradient(target=target)
    np.testing.assert_allclose(gradient["delta"], reference["delta"], atol=1e-6)
    assert _state(m.model) == before


def test_readme_support_table_is_current() -> None:
    """The README's support table is the one tests/support_table.py writes from these families."""
    from pathlib import Path

    from support_table import render

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert render() in readme, "run: python tests/support_table.py --write"


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "gpt_neox", "falcon", "t5", "led"])
def test_structure_alone_finds_what_the_table_names(model_type: str, families: Any) -> None:
    """With an empty family table the projections are found by structure (output projection,
    value source and its layout checked by α·V), and give the same norms and importance."""
    from inspector.models import families as table

    fam = families(model_type)
    ins = _inspect(fam.pair)
    kind = next(iter(ins.capture.stacks))
    part = _part(ins, kind)
    expected_norms = part.explain.norms()["norm"].to_numpy()
    expected = part.explain.gradient(target=target)["delta"].to_numpy()
    with table.FAMILIES.scoped():  # the whole table is back after the block
        for name in list(table.FAMILIES):
            table.FAMILIES.unregister(name)
        bare = inspector.load((fam.pair.model, fam.pair.tokenizer))
        bare_part = _part(_inspect(bare), kind)
        norms = bare_part.explain.norms()["norm"]
        gradient = bare_part.explain.gradient(target=target)["delta"]
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-5)
    np.testing.assert_allclose(gradient, expected, atol=1e-6)
    found = bare.bundle.extra["structures"][kind]
    assert found.family == "structure" and not found.shared_prefix


def test_bare_decoders_and_falcon_facts() -> None:
    """Architecture from the model: a bare decoder (no LM head, no generate) is a decoder by its
    causal attention; Falcon's multi-query attention has one key/value head."""
    import transformers as tf

    from factories import _LLAMALIKE, VOCAB_SIZE

    bare = tf.Qwen2MoeModel(
        tf.Qwen2MoeConfig(vocab_size=VOCAB_SIZE + 100, num_experts=2, **_LLAMALIKE)
    )
    assert not bare.can_generate()
    from inspector.models.families import classify

    assert classify(bare) == "decoder"
    model, tok = build_family("falcon")
    m = inspector.load((model, tok))
    assert (m.bundle.n_kv_heads, m.bundle.attn_implementation) == (1, "eager")
    assert m.inspect(FAMILY_TEXT).metadata["kv_heads"] == [0, 0, 0, 0]


def test_modules_built_for_sdpa_cannot_be_switched() -> None:
    """A class that ignores set_attn_implementation is switched through its config only when
    no module was built for another implementation; otherwise loading says so."""
    from inspector.errors import ModelLoadError

    model, tok = build_family("falcon")
    attention = model.transformer.h[0].self_attention
    attention.__class__ = type("FalconSdpaAttention", (type(attention),), {})
    with pytest.raises(ModelLoadError, match="cannot switch attention to 'eager'"):
        inspector.load((model, tok))
