"""Invertible scalar functions ``f`` for GenAgg's generalised f-mean.

Two kinds:

- fixed functions with a closed-form inverse, the ``f`` column of Table 1 of Kortvelesy,
  Morad and Prorok (NeurIPS 2023): :class:`Identity` (mean, sum), :class:`Power`
  (``|x|^p``: RMS, Euclidean norm, standard deviation, harmonic mean, max/min magnitude
  as ``p -> +-inf``), :class:`Log` (``log|x|``: geometric mean, product) and :class:`Exp`
  (``exp(p x)``: log-sum-exp, max/min as ``p -> +-inf``);
- a learned strictly increasing function (:func:`monotone`) with its inverse computed
  numerically (:func:`monotone_inverse`), used by :class:`~gnpool.baselines.GenAggAggregation`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


class Bijection:
    """A fixed function with its inverse: ``f(x)`` and ``f.inverse(y)``, element-wise."""

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def inverse(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Identity(Bijection):
    """``f(x) = x``."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def inverse(self, y: Tensor) -> Tensor:
        return y


class Power(Bijection):
    """``f(x) = |x|^p`` with ``f^{-1}(y) = y^(1/p)``: invertible on ``x >= 0``
    (``x > 0`` for ``p < 0``); on signed inputs the inverse returns the magnitude."""

    def __init__(self, p: float) -> None:
        if not (math.isfinite(p) and p != 0):
            raise ValueError(f"p must be finite and non-zero, got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return x.abs().pow(self.p)

    def inverse(self, y: Tensor) -> Tensor:
        return y.pow(1.0 / self.p)


class Log(Bijection):
    """``f(x) = log|x|`` with ``f^{-1}(y) = exp(y)``: invertible on ``x > 0``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.abs().log()

    def inverse(self, y: Tensor) -> Tensor:
        return y.exp()


class Exp(Bijection):
    """``f(x) = exp(p x)`` with ``f^{-1}(y) = log(y) / p``."""

    def __init__(self, p: float = 1.0) -> None:
        if not (math.isfinite(p) and p != 0):
            raise ValueError(f"p must be finite and non-zero, got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(self.p * x)

    def inverse(self, y: Tensor) -> Tensor:
        return y.log() / self.p


# ---- the learned function ------------------------------------------------------------
#
#   f(x) = c x + sum_k w_k tanh(a_k x + b_k),   c > 0, w_k >= 0, a_k >= 0
#
# per channel (the last dimension of x). f' >= c > 0, so f is a bijection of the real
# line; |f(x) - c x| <= W = sum_k w_k brackets the inverse: f^{-1}(y) lies in
# [(y - W) / c, (y + W) / c]. The constrained values come from free parameters through
# softplus (and a floor on c), done by the caller.


def monotone(x: Tensor, slope: Tensor, weight: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """``f(x) = slope * x + sum_k weight_k * tanh(scale_k * x + shift_k)``.

    ``slope`` is ``[C]`` (or ``[1]``), ``weight``, ``scale``, ``shift`` are ``[C, K]``;
    ``x`` is ``[..., C]``. The ``K`` terms are accumulated one at a time, so the memory
    is that of ``x``, not ``K`` times it.
    """
    out = slope * x
    for k in range(weight.size(-1)):
        out = out + weight[:, k] * torch.tanh(scale[:, k] * x + shift[:, k])
    return out


def monotone_derivative(x: Tensor, slope: Tensor, weight: Tensor, scale: Tensor,
                        shift: Tensor) -> Tensor:
    """``f'(x) = slope + sum_k weight_k * scale_k * (1 - tanh^2(scale_k * x + shift_k))``."""
    out = slope.expand_as(x)
    for k in range(weight.size(-1)):
        th = torch.tanh(scale[:, k] * x + shift[:, k])
        out = out + weight[:, k] * scale[:, k] * (1 - th * th)
    return out


def monotone_inverse(y: Tensor, slope: Tensor, weight: Tensor, scale: Tensor, shift: Tensor,
                     iterations: int | None = None) -> Tensor:
    """``f^{-1}(y)`` for :func:`monotone`'s ``f``, differentiable in ``y`` and the parameters.

    The root is found without gradient by bisection on the exact bracket
    ``[(y - W) / c, (y + W) / c]`` (``iterations`` halvings: 64 in float64, 32 otherwise),
    then one Newton step ``x = x0 - (f(x0) - y) / f'(x0)``, which roughly squares the
    remaining relative error, is taken with
    ``f(x0)`` and ``y`` in the graph and ``f'(x0)`` held constant. Its value refines the
    root; its gradient is the implicit-function one: ``dx/dy = 1 / f'(x)`` and
    ``dx/dtheta = -(df/dtheta)(x) / f'(x)``.
    """
    if iterations is None:
        iterations = 64 if y.dtype == torch.float64 else 32
    with torch.no_grad():
        c, w, a, b = (t.detach() for t in (slope, weight, scale, shift))
        target = y.detach()
        bound = w.sum(-1)
        lo, hi = (target - bound) / c, (target + bound) / c
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            above = monotone(mid, c, w, a, b) > target
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        root = 0.5 * (lo + hi)
        deriv = monotone_derivative(root, c, w, a, b)
    return root - (monotone(root, slope, weight, scale, shift) - y) / deriv
