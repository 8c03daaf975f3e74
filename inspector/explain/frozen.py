"""Normalisation layers as linear maps with a frozen scale, found (and checked) on the model.

A LayerNorm ``N(x) = (x - mean(x)) / s(x) * w + b`` (RMSNorm: no centring, no bias) is not
linear in ``x``, but with its scale ``s`` *frozen* at the value the full residual had, it maps
a sum of components to the sum of their images plus ``b``: that is how TransformerLens'
``apply_ln_to_stack`` attributes a residual stream to its parts (centre each component for a
LayerNorm, divide by the frozen scale; the weight is folded into the direction, the bias is a
separate term). :func:`fit_norm` reads one norm module's parameters and settles its form
(centring or not, ``w`` or Gemma's ``1 + w``, bias or not) by reproducing the output the model
computed from its input; the scale is the model's own ``sqrt(mean(x_c²) + eps)`` (or, when the
module names no epsilon, the one that reproduces its output).

A masked LM's head transform (BERT: ``dense -> GELU -> LayerNorm`` before the unembedding)
is linearised the same way: the dense map is linear already (:class:`FrozenLinear`, its bias a
term), and the activation ``act(u) = u · s(u)`` has its gate ``s = act(u) / u`` frozen at the
full input's value (:class:`FrozenGate`; GELU's gate is ``Φ(u)``): each dimension of a sum of
components is scaled by the whole's gate, so the components still add up to what the model
computed, exactly as a frozen norm scale does.

Pure numpy on vectors read by :mod:`.residual`; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import UnsupportedModelError

#: Largest ``|N(x) - output|`` accepted, relative to the largest ``|output|``.
NORM_TOLERANCE = 1e-4

_EPS_NAMES = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps", "norm_eps")


@dataclass(frozen=True)
class FrozenNorm:
    """One normalisation with its scale frozen at one input.

    Attributes:
        centre: subtract the mean first (LayerNorm); ``False`` for RMSNorm.
        weight: the effective ``(hidden,)`` weight (``1 + w`` for Gemma's norms).
        bias: ``(hidden,)``, or ``None``.
        scale: the frozen scale ``s``.
        eps: the module's epsilon (``None`` when it names none).
        name: the module's name, for messages.
    """

    centre: bool
    weight: np.ndarray
    bias: np.ndarray | None
    scale: float
    eps: float | None = None
    name: str = "norm"
    #: the ``kind`` of its bias term when it sits between the last block and the unembedding
    bias_kind: ClassVar[str] = "final_norm_bias"

    def centred(self, x: np.ndarray) -> np.ndarray:
        return x - x.mean(axis=-1, keepdims=True) if self.centre else x

    def linear(self, x: np.ndarray) -> np.ndarray:
        """The frozen map without the bias: ``centre(x) / s * w`` (rows of ``x``)."""
        return self.centred(np.asarray(x, dtype=np.float64)) / self.scale * self.weight

    def pullback(self, g: np.ndarray) -> np.ndarray:
        """The direction ``g'`` with ``linear(x) · g = x · g'`` for every ``x`` (centring is
        symmetric, so ``g' = centre(w * g) / s``)."""
        return self.centred(self.weight * np.asarray(g, dtype=np.float64)) / self.scale

    def bias_term(self, g: np.ndarray) -> float:
        """``b · g`` (0 without a bias)."""
        return 0.0 if self.bias is None else float(self.bias @ g)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The norm itself, each row with its own scale (not frozen): what the model computes."""
        x = np.asarray(x, dtype=np.float64)
        xc = self.centred(x)
        eps = self.eps if self.eps is not None else 0.0
        s = np.sqrt((xc * xc).mean(axis=-1, keepdims=True) + eps)
        out = xc / s * self.weight
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class FrozenLinear:
    """A linear map ``x Wᵀ + b`` between the last block and the unembedding (a masked LM's
    head transform): its bias is a term of its own."""

    weight: np.ndarray  # (out, in)
    bias: np.ndarray | None
    name: str = "dense"
    bias_kind: ClassVar[str] = "head_transform_bias"

    def pullback(self, g: np.ndarray) -> np.ndarray:
        """``g'`` with ``(x Wᵀ) · g = x · g'``."""
        return np.asarray(g, dtype=np.float64) @ self.weight

    def bias_term(self, g: np.ndarray) -> float:
        return 0.0 if self.bias is None else float(self.bias @ g)

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, dtype=np.float64) @ self.weight.T
        return out if self.bias is None else out + self.bias


@dataclass(frozen=True)
class FrozenGate:
    """An elementwise activation with its gate ``act(u) / u`` frozen at one input ``u``.

    Attributes:
        gate: ``(width,)``: ``act(u) / u`` (0 where ``u`` is 0).
        bias: ``act(u) - gate · u`` (``act(0)`` where ``u`` is 0; ``None`` when all 0).
        act: the activation itself (float64 tensors), for the logit lens.
    """

    gate: np.ndarray
    bias: np.ndarray | None
    act: Callable[[Any], Any]
    name: str = "activation"
    bias_kind: ClassVar[str] = "head_activation_offset"

    def pullback(self, g: np.ndarray) -> np.ndarray:
        return self.gate * np.asarray(g, dtype=np.float64)

    def bias_term(self, g: np.ndarray) -> float:
        return 0.0 if self.bias is None else float(self.bias @ g)

    def apply(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.act(torch.from_numpy(np.asarray(x, dtype=np.float64)))
        return np.asarray(out.numpy(), dtype=np.float64)


def fit_gate(
    candidates: list[tuple[str, Callable[[Any], Any]]], u: np.ndarray, v: np.ndarray, name: str
) -> FrozenGate:
    """The :class:`FrozenGate` of the first candidate activation with ``act(u) = v`` (what the
    model computed).

    Raises:
        UnsupportedModelError: none of them reproduces ``v``.
    """
    import torch

    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    tol = NORM_TOLERANCE * max(float(np.abs(v).max()), 1e-6)
    for act_name, act in candidates:
        with torch.no_grad():
            got = act(torch.from_numpy(u)).numpy()
        if got.shape == v.shape and float(np.abs(got - v).max()) <= tol:
            nonzero = np.abs(u) > 0
            gate = np.where(nonzero, v / np.where(nonzero, u, 1.0), 0.0)
            rest = v - gate * u  # act(0) where u is 0; else float rounding
            bias = rest if float(np.abs(rest).max()) > 1e-12 * max(tol, 1e-6) else None
            return FrozenGate(gate, bias, act, f"{name} ({act_name})")
    tried = ", ".join(n for n, _ in candidates)
    raise UnsupportedModelError(
        f"{name}: the map between the head's dense layer and its norm is none of the "
        f"activations {tried}; the direct logit attribution cannot freeze its gate"
    )


def frozen_linear(module: Any, name: str) -> FrozenLinear:
    """The :class:`FrozenLinear` of a ``torch.nn.Linear``."""
    w = module.weight.detach().double().cpu().numpy()
    b = None if module.bias is None else module.bias.detach().double().cpu().numpy()
    return FrozenLinear(w, b, name)


def _param(module: Any, name: str) -> np.ndarray | None:
    import torch

    p = getattr(module, name, None)
    if isinstance(p, torch.Tensor) and p.ndim == 1:
        return p.detach().double().cpu().numpy()
    return None


def _eps(module: Any) -> float | None:
    for name in _EPS_NAMES:
        value = getattr(module, name, None)
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(value)
    return None


def fit_norm(module: Any, x: np.ndarray, out: np.ndarray, name: str = "norm") -> FrozenNorm:
    """The :class:`FrozenNorm` of ``module`` at input ``x`` (``(hidden,)``) that reproduces
    the ``out`` the model computed.

    Raises:
        UnsupportedModelError: no LayerNorm/RMSNorm form of the module's parameters does.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    w = _param(module, "weight")
    b = _param(module, "bias")
    eps = _eps(module)
    is_layer_norm = "layernorm" in type(module).__name__.lower().replace("_", "")
    weights = [w, 1.0 + w] if w is not None else [np.ones_like(x)]
    centres = [True, False] if is_layer_norm else [False, True]
    tol = NORM_TOLERANCE * max(float(np.abs(out).max()), 1e-6)
    best = (np.inf, "")
    for centre in centres:
        xc = x - x.mean() if centre else x
        for weight in weights:
            a = xc * weight
            t = out - (b if b is not None else 0.0)
            denom = float(a @ t)
            if denom == 0.0:
                continue
            scales = [float(a @ a) / denom]
            if eps is not None:
                scales.insert(0, float(np.sqrt((xc * xc).mean() + eps)))
            for s in scales:
                err = float(np.abs(a / s - t).max())
                best = min(best, (err, f"centre={centre}"))
                if err <= tol:
                    return FrozenNorm(centre, weight, b, s, eps if s == scales[0] else None, name)
    raise UnsupportedModelError(
        f"{name} ({type(module).__name__}) is neither a LayerNorm nor an RMSNorm of its own "
        f"parameters (closest form off by {best[0]:.2g}, tolerance {tol:.2g}); the direct logit "
        f"attribution cannot freeze its scale"
    )


__all__ = [
    "NORM_TOLERANCE",
    "FrozenGate",
    "FrozenLinear",
    "FrozenNorm",
    "fit_gate",
    "fit_norm",
    "frozen_linear",
]
