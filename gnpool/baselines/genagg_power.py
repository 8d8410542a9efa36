"""GenAgg's parametric power-mean form, ``N^alpha (mean x^p)^(1/p)`` with
``p = tan(pi/4 * p')``, as a PyG aggregation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.nn.aggr import Aggregation

from ._sets import (
    check_channels,
    per_set,
    restore,
    segment_any,
    segment_extreme,
    segment_sum,
    set_rows,
)

Init = float | Sequence[float] | Tensor

# Stands in for 1/p = 0 (exact max/min) where p itself is needed: it keeps every
# intermediate finite and changes the result by far less than rounding.
_TINY = 1e-30
# Below this |p| the output comes from the cumulant expansion of log M_p around p = 0
# (the direct form divides by p, and its gradient loses all precision as p -> 0).
_SMALL_P = 1e-3


def fold(p_prime: Tensor) -> Tensor:
    """``p'`` folded into [-2, 2] by a triangle wave of period 8 (the identity on
    [-2, 2]): every real ``p'`` is valid and its gradient is never 0, where a clamp at
    ``+-2`` would freeze a parameter that crossed it. At the turning points ``+-2``
    (exact max and min) the gradient is that of the identity side."""
    r = torch.remainder(p_prime + 2, 8)
    return torch.where(r <= 4, r - 2, 6 - r)


class Exponent(NamedTuple):
    """``p = tan(pi/4 * fold(p'))`` in the forms the computation needs."""
    p: Tensor           # p (exact where |p| <= 1; used for the expansion near 0)
    rate: Tensor        # p where |p| >= _SMALL_P, else 1 (unused there)
    temperature: Tensor  # 1/rate; exactly 0 at p' = +-2
    near_zero: Tensor   # |p| < _SMALL_P


def exponent(p_prime: Tensor) -> Exponent:
    """``p`` and ``1/p`` each computed where it is at most 1 in magnitude (``tan`` of an
    angle in [-pi/4, pi/4]) and inverted elsewhere, so that ``p' = +-2`` gives ``1/p = 0``
    exactly (max/min) and every branch not taken stays finite in forward and backward."""
    u = fold(p_prime) / 2                          # in [-1, 1]
    small = u.abs() <= 0.5
    sign = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    p = torch.tan(torch.where(small, u, torch.zeros_like(u)) * (math.pi / 2))
    t = sign * torch.tan(torch.where(small, torch.full_like(u, 0.5), 1 - u.abs()) * math.pi / 2)
    near_zero = small & (p.abs() < _SMALL_P)
    p_safe = torch.where(small & ~near_zero, p, torch.ones_like(p))
    t_safe = torch.where(t == 0, sign * _TINY, t)
    return Exponent(p, torch.where(small, p_safe, 1 / t_safe), torch.where(small, 1 / p_safe, t),
                    near_zero)


class GenAggPowerAggregation(Aggregation):
    r"""A size-scaled power mean with an exponent that reaches ``+-inf`` at finite
    parameter values: an earlier released, parametric form of GenAgg (Kortvelesy, Morad
    and Prorok, "Generalised f-Mean Aggregation for Graph Neural Networks", NeurIPS 2023).

    .. math::
        \mathrm{out}(X) = n^{\alpha} \Big(\frac{1}{n} \sum_{x \in X} x^p\Big)^{1/p}, \qquad
        p = \tan\big(\tfrac{\pi}{4}\, p'\big), \ n = |X|, \ X \ge 0

    ``p' = 1`` is the mean (``alpha = 0``) or the sum (``alpha = 1``), ``p' -> 0`` the
    geometric mean, ``p' = +-2`` exactly max and min, ``p = 2`` the RMS (the Euclidean norm
    with ``alpha = 1/2``), ``p = -1`` the harmonic mean. ``p'`` is used through
    :func:`fold`, so it may take any real value; ``alpha`` is unconstrained.

    Computed in a scaled log form, per set and channel, with ``s`` the largest (``p > 0``)
    or smallest (``p < 0``) ``log x``:
    ``log out = alpha log n + s + (1/p) log1p(mean(expm1(p (log x - s))))``. Every term
    of the mean lies in [-1, 0], so nothing overflows for any ``p``, and ``1/p = 0``
    gives ``s`` exactly. For ``|p| < 1e-3`` the cumulant expansion
    ``log M_p = k1 + k2 p / 2 + k3 p^2 / 6`` of ``log x`` takes over (the geometric mean
    exactly at ``p = 0``, and a gradient in ``p`` that the division by ``p`` would lose).
    A zero element contributes ``x^p = 0`` for ``p > 0`` and makes the output 0 for
    ``p < 0`` and ``|p| < 1e-3`` (the limits); an all-zero or empty set pools to 0. The
    gradient with respect to an input that is exactly 0 is taken as 0 (ReLU outputs, the
    benchmark's inputs, pass no gradient there anyway).

    Args:
        channels: 1 shares ``p'`` and ``alpha`` across channels; ``F`` gives each of the
            ``F`` channels (``x.size(-1)``) its own.
        p: initial exponent(s), any value in [-inf, inf] (stored as ``p' = 4/pi atan(p)``).
        alpha: initial size exponent(s).
        learn: train ``p'`` and ``alpha`` (``False`` keeps them as buffers).

    Shapes: ``x`` is ``[..., E, ..., F]``, non-negative, with the elements along ``dim``
    (not the last dimension); the output has ``dim_size`` sets along ``dim``. fp16/bf16
    inputs are computed in float32.

    Raises:
        ValueError: a non-positive ``channels``; an initial value with neither 1 nor
            ``channels`` entries, a NaN ``p`` or a non-finite ``alpha``; a negative
            element of ``x``; ``x`` whose last dimension is not ``channels`` (when
            ``channels > 1``); a bad ``dim``/``index``/``ptr``/``dim_size``.
        TypeError: ``x`` is not a floating-point tensor.
    """

    #: The parameters an optimiser should treat as pooling parameters.
    pooling_parameter_names = ("p_prime", "alpha")

    def __init__(self, channels: int = 1, p: Init = 1.0, alpha: Init = 0.0,
                 learn: bool = True) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels must be a positive int, got {channels!r}")
        self.channels, self.learn = channels, learn
        self._init = {"p": p, "alpha": alpha}
        for name in self.pooling_parameter_names:
            value = torch.zeros(channels)
            if learn:
                self.register_parameter(name, torch.nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.reset_parameters()

    def _values(self, name: str) -> Tensor:
        value = torch.as_tensor(self._init[name], dtype=torch.float64).reshape(-1)
        if value.numel() not in (1, self.channels):
            raise ValueError(f"{name} must have 1 or channels={self.channels} values, "
                             f"got {value.numel()}")
        bad = torch.isnan(value) if name == "p" else ~torch.isfinite(value)
        if bool(bad.any()):
            expected = "not NaN" if name == "p" else "finite"
            raise ValueError(f"{name} must be {expected}, got {value.tolist()}")
        return value.expand(self.channels)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.p_prime.copy_(torch.atan(self._values("p")) * (4 / math.pi))
            self.alpha.copy_(self._values("alpha"))

    @property
    def p(self) -> Tensor:
        """The current exponent ``tan(pi/4 * fold(p'))`` (float64), ``+-inf`` at
        ``p' = +-2``."""
        e = exponent(self.p_prime.detach().double())
        inf = torch.copysign(torch.full_like(e.p, math.inf), e.rate)
        return torch.where(e.near_zero, e.p, torch.where(e.temperature == 0, inf, e.rate))

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        if self.channels > 1:
            check_channels(x, self.channels, "channels")
        rows, seg, d = set_rows(x, index, ptr, dim_size, dim, type(self).__name__)
        if not torch.compiler.is_compiling() and bool((rows < 0).any()):
            raise ValueError(f"x must be non-negative (a power mean), got a minimum of "
                             f"{float(rows.min())}")
        dtype = rows.dtype
        e = exponent(self.p_prime.to(dtype))
        count = per_set(seg.count, rows)
        size = count.clamp_min(1)
        nonzero = rows > 0
        has_zero = segment_any(~nonzero, seg)
        # log x where x > 0, and 0 (unused) elsewhere: no -inf ever enters the graph.
        logs = torch.log(torch.where(nonzero, rows, torch.ones_like(rows)))
        big = torch.finfo(dtype).max
        high = segment_extreme(torch.where(nonzero, logs, torch.full_like(logs, -big)), seg,
                               "amax")
        low = segment_extreme(torch.where(nonzero, logs, torch.full_like(logs, big)), seg,
                              "amin")
        positive = e.rate > 0
        # Sets whose output is exactly 0: empty, all zeros (p > 0), any zero (p < 0 and,
        # in the limit, p -> 0).
        dead = torch.where(positive & ~e.near_zero, ~segment_any(nonzero, seg), has_zero)
        dead = dead | (count == 0)
        shift = torch.where(dead, torch.zeros_like(high), torch.where(positive, high, low))
        delta = torch.where(nonzero, logs - shift[seg.index], torch.zeros_like(logs))
        terms = torch.where(nonzero, torch.expm1(e.rate * delta), -torch.ones_like(delta))
        mean = segment_sum(terms, seg) / size
        mean = torch.where(dead, torch.zeros_like(mean), mean)
        log_mean = shift + e.temperature * torch.log1p(mean)
        if torch.compiler.is_compiling() or bool(e.near_zero.any()):
            log_mean = torch.where(e.near_zero, _expansion(delta, seg, size, shift, e.p),
                                   log_mean)
        log_out = self.alpha.to(dtype) * size.log() + log_mean
        out = torch.where(dead, torch.zeros_like(log_out), torch.exp(log_out))
        return restore(out, d, x.dtype)

    def __repr__(self) -> str:
        p, alpha = self.p.float(), self.alpha.detach().float()
        if p.numel() == 1:
            desc = f"p={p.item():.3f}, alpha={alpha.item():.3f}"
        else:
            desc = (f"p=median {p.median().item():.3f}, "
                    f"alpha=mean {alpha.mean().item():.3f}")
        return f"{self.__class__.__name__}(channels={self.channels}, {desc})"


def _expansion(delta: Tensor, seg, size: Tensor, shift: Tensor, p: Tensor) -> Tensor:
    """``log M_p`` near ``p = 0`` from the cumulants of ``log x``:
    ``k1 + k2 p / 2 + k3 p^2 / 6`` (error of order ``k4 p^3 / 24``). ``delta`` is
    ``log x - shift`` (0 for zeros, whose sets are dead here anyway)."""
    k1 = segment_sum(delta, seg) / size
    centred = delta - k1[seg.index]
    k2 = segment_sum(centred * centred, seg) / size
    k3 = segment_sum(centred * centred * centred, seg) / size
    return shift + k1 + p * k2 / 2 + p * p * k3 / 6
