"""GNP forward and closed-form backward, composed from a backend's segment primitives.

This file is the reference for every GNP backend (the fused CPU kernels in csrc/gnp.cpp
follow it line by line). Notation for one part (``y = relu(x)`` for the positive part,
``relu(-x)`` for the negative one), one set of ``n`` elements and one channel:

    G = n^beta * M_p(y),     M_p(y) = (mean_i y_i^p)^(1/p),     p = tan(pi * a / 2)

with ``a`` in [-1, 1] (``p_unit``). ``a = 1`` is ``p = +inf`` (exactly max), ``a = -1`` is
``p = -inf`` (exactly min), ``a = 0`` is ``p = 0`` (the geometric mean); sum is ``p = 1,
beta = 1``, mean ``p = 1, beta = 0``, the L^p norm ``beta = 1/p``. The temperature ``t = 1/p``
is derived alongside ``p`` so that neither is formed by dividing by a tiny number.

Forward, with the reference ``r`` = the part's largest ``y`` (p > 0) or smallest (p <= 0),
``l_i = log(y_i / r)``, ``z_i = p * l_i`` (0 at ties with the reference, also for
infinite p) and ``A = sum_i exp(z_i)`` in [1, n]:

    log G = log r + D + beta * log n,     D = t * log(A / n)

For ``|p| < SMALL_P`` with every ``y_i`` positive and finite, ``D`` is its cumulant
expansion ``m1 + p * v / 2`` (``m1``, ``v``: mean and variance of ``l``), exact at ``p = 0``
and free of the cancellation in ``log(A / n) / p``.

Special parts: an empty set pools to 0; a zero part (``r == 0``: all ``y`` zero for
p > 0, some ``y`` zero for p <= 0) pools to 0; an infinite ``y`` makes the part infinite
when ``p >= 0`` (the limit), is ignored when ``p < 0`` unless all are infinite; ``p = 0``
with both a zero and an infinite ``y`` has no limit and gives NaN. NaN stays in its set.

Backward (``w_i = exp(z_i)``; only ``r``, ``A`` and ``G`` per set and channel are saved):

    dG/dy_i  = F * w_i / (y_i / r),     F = G / (r * A)
    dG/da    = pi/2 * G * E * (1 + t^2),  E = sum_i w_i z_i / A - log(A / n)
             (= pi/2 * G * (1 + p^2) * v / 2 in the expansion's range)
    dG/dbeta = G * log n

All three stay finite at ``p = +-inf`` and ``p = 0``. A part that is infinite or NaN
passes no gradient to the parameters; an infinite part passes none to ``x`` either. At
``x_i == 0`` the gradient is the mean of the one-sided derivatives; a one-sided
derivative that is infinite (0 < p < 1 at y_i = 0) counts as 0; in a zero part ``G``
grows like ``n^(beta - t) * y_i`` in a zero ``y_i`` for p > 0 (all zero) and for p < 0
when that zero is the only one, and passes nothing otherwise.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor

from .segments import Segments

#: Below this |p| (and with every y positive and finite) D is taken from its cumulant
#: expansion; float32 and float64 (the cancellation grows like eps / p^2 in dG/dp).
SMALL_P = {torch.float32: 1e-2, torch.float64: 1e-5}
HALF_PI = math.pi / 2
#: Below this in magnitude exp() neither overflows nor underflows.
_EXP_SAFE = {torch.float32: 80.0, torch.float64: 700.0}


class PartState(NamedTuple):
    r: Tensor  # reference magnitude [S, K]
    a_sum: Tensor  # A = sum_i exp(z_i) [S, K]
    out: Tensor  # G [S, K]


def exponent(a: Tensor) -> tuple[Tensor, Tensor]:
    """``(p, t)`` = ``(tan(pi a / 2), 1 / p)`` for ``a`` in [-1, 1], exact at the ends
    (``a = +-1``: ``p = +-inf``, ``t = 0``; ``a = 0``: ``p = 0``, ``t = inf``)."""
    m = a.abs()
    inner = m <= 0.5
    # tan(pi/2 (1 - m)) for m > 1/2: 1 - m is exact there, so p near +-inf keeps its digits.
    # tan(pi/4) is exactly 1 (p = 1, sum and mean), which the float tan misses by an ulp.
    tan = torch.where(m == 0.5, torch.ones_like(m),
                      torch.tan(HALF_PI * torch.where(inner, m, 1 - m)))
    sign = torch.where(a < 0, -torch.ones_like(a), torch.ones_like(a))
    p = sign * torch.where(inner, tan, 1 / tan)
    t = sign * torch.where(inner, 1 / tan, tan)
    return p, t


def _part(sign: int, x: Tensor) -> Tensor:
    # relu(x) or relu(-x) with every zero as +0.0 (a -0.0 would make log(-0.0) odd).
    return (x.clamp_min(0) if sign > 0 else x.clamp_max(0)).abs_()


def set_statistics(seg: Segments, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``log n`` as a ``[S, 1]`` column and the mask of empty sets."""
    count = seg.count.to(dtype).view(-1, 1)
    return count.log(), count == 0


def _extremes(sign: int, mx: Tensor, mn: Tensor) -> tuple[Tensor, Tensor]:
    # Largest and smallest y of a part from the largest and smallest x of the set.
    if sign > 0:
        return mx.clamp_min(0), mn.clamp_min(0)
    return (-mn).clamp_min(0), (-mx).clamp_min(0)


def _log_ratio(prims: ModuleType, y: Tensor, r: Tensor, seg: Segments) -> Tensor:
    # l = log(y / r); sets whose reference is 0, inf or NaN divide by 1 (their values are
    # overridden per set). Where y / r leaves the float range (a set spanning more than
    # about 1e38 in float32: 1e-30 and 1e30, or a subnormal next to 1e-3), log(y) - log(r)
    # instead of the overflowed inf or the underflowed 0.
    regular = (r > 0) & (r < math.inf)
    rr = prims.gather(torch.where(regular, r, torch.ones_like(r)), seg)
    ratio = y / rr
    l = ratio.log()
    # Always computed: checking first would cost a host sync per call on a GPU.
    out_of_range = (ratio == math.inf) & (y < math.inf) | (ratio == 0) & (y > 0)
    return torch.where(out_of_range, y.log() - rr.log(), l)


def _z(l: Tensor, p: Tensor) -> Tensor:
    # p * l with 0 at ties (l == 0), where p = +-inf would give NaN.
    return torch.where(l == 0, torch.zeros_like(l), p * l)


def _expansion(prims: ModuleType, l: Tensor, seg: Segments) -> tuple[Tensor, Tensor]:
    # Mean and variance of l per set (infinite where some l is).
    n = seg.count.to(l.dtype).view(-1, 1)
    m1 = prims.segment_sum(l, seg) / n
    m2 = prims.segment_sum(l * l, seg) / n
    return m1, (m2 - m1 * m1).clamp_min(0)


def _forward_part(prims: ModuleType, x: Tensor, seg: Segments, mx: Tensor, mn: Tensor,
                  log_n: Tensor, empty: Tensor, a: Tensor, beta: Tensor, sign: int
                  ) -> PartState:
    p, t = exponent(a)
    ymax, ymin = _extremes(sign, mx, mn)
    r = torch.where(p > 0, ymax, ymin)
    l = _log_ratio(prims, _part(sign, x), r, seg)
    a_sum = prims.segment_sum(_z(l, p).exp(), seg)
    d = t * (a_sum.log() - log_n)
    small_p = p.abs() < SMALL_P[x.dtype]
    if torch.compiler.is_compiling() or bool(small_p.any()):
        m1, v = _expansion(prims, l, seg)
        expand = small_p & (ymin > 0) & (ymax < math.inf)
        d = torch.where(expand, m1 + p * v / 2, d)
    rr = torch.where((r > 0) & (r < math.inf), r, torch.ones_like(r))
    # r * exp(...) rather than exp(log r + ...): exactly r for max and min (D = 0, beta = 0);
    # the log form only where exp(...) alone would overflow or underflow.
    scale = d + beta * log_n
    safe = _EXP_SAFE[x.dtype]
    out = torch.where((scale < safe) & (scale > -safe), rr * scale.exp(),
                      (rr.log() + scale).exp())
    # Special parts, in order of precedence (NaN in r is left to propagate).
    out = torch.where(r == 0, torch.zeros_like(out), out)
    infinite = (ymax == math.inf) & (p >= 0) | (ymin == math.inf)
    out = torch.where(infinite, torch.full_like(out, math.inf), out)
    no_limit = (p == 0) & (ymin == 0) & (ymax == math.inf)
    out = torch.where(no_limit, torch.full_like(out, math.nan), out)
    out = torch.where(empty, torch.zeros_like(out), out)
    return PartState(r, a_sum, out)


def gnp_forward(prims: ModuleType, x: Tensor, seg: Segments, a_pos: Tensor, b_pos: Tensor,
                a_neg: Tensor, b_neg: Tensor) -> tuple[Tensor, PartState, PartState]:
    """GNP of ``x`` ``[E, K]`` per set; parameters (``p_unit``, ``beta`` per part) are
    ``[1, K]`` or ``[1, 1]``."""
    mx = prims.segment_max(x, seg)
    mn = prims.segment_min(x, seg)
    log_n, empty = set_statistics(seg, x.dtype)
    pos = _forward_part(prims, x, seg, mx, mn, log_n, empty, a_pos, b_pos, +1)
    neg = _forward_part(prims, x, seg, mx, mn, log_n, empty, a_neg, b_neg, -1)
    return pos.out - neg.out, pos, neg


def _backward_part(prims: ModuleType, grad: Tensor, x: Tensor, seg: Segments, log_n: Tensor,
                   empty: Tensor, a: Tensor, beta: Tensor, state: PartState, sign: int,
                   grad_x: Tensor | None, need_a: bool, need_beta: bool
                   ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    r, a_sum, g_out = state
    p, t = exponent(a)
    # Parameters learn from parts with a finite, positive value only.
    live = (g_out > 0) & (g_out < math.inf)
    grad_a = grad_b = None
    if need_beta:
        grad_b = (grad * torch.where(live, g_out * log_n, torch.zeros_like(g_out))).sum(0)
    if grad_x is None and not need_a:
        return grad_x, grad_a, grad_b

    y = _part(sign, x)
    l = _log_ratio(prims, y, r, seg)
    w = _z(l, p).exp()
    if need_a:
        wz = torch.where(w > 0, w * _z(l, p), torch.zeros_like(w))
        e = prims.segment_sum(wz, seg) / a_sum - (a_sum.log() - log_n)
        da = HALF_PI * g_out * e * (1 + t * t)
        small_p = p.abs() < SMALL_P[x.dtype]
        if torch.compiler.is_compiling() or bool(small_p.any()):
            m1, v = _expansion(prims, l, seg)
            # Every element of the set in this part, none zero or infinite.
            inside = prims.segment_sum((l > -math.inf).to(x.dtype) * (l < math.inf), seg)
            count = seg.count.to(x.dtype).view(-1, 1)
            expand = small_p & (inside == count) & torch.isfinite(m1)
            da = torch.where(expand, HALF_PI * g_out * (1 + p * p) * v / 2, da)
        grad_a = (grad * torch.where(live, da, torch.zeros_like(da))).sum(0)

    if grad_x is not None:
        regular = (r > 0) & torch.isfinite(g_out)
        factor = torch.where(regular, g_out / torch.where(regular, r * a_sum,
                                                          torch.ones_like(r)),
                             torch.zeros_like(r))
        # A NaN part shows in the gradients of its whole set.
        factor = torch.where(g_out.isnan(), g_out, factor)
        ratio = l.exp()
        # dG/dy = F * w / ratio; at y = 0 of a regular part the one-sided derivative is
        # F for p == 1 and 0 or infinite (counted as 0) otherwise.
        phi = torch.where(ratio > 0, w / ratio, (p == 1).to(x.dtype).expand_as(w))
        phi = torch.where(phi == math.inf, torch.zeros_like(phi), phi)
        scaled = prims.gather(grad * factor, seg)
        phi = torch.where(scaled == 0, torch.zeros_like(phi), phi * scaled)
        # Zero parts: n^(beta - t) for each zero y (p > 0), for the single zero (p < 0),
        # nothing for p = 0.
        zero = (r == 0) & ~empty
        at_zero = torch.zeros_like(r)
        if torch.compiler.is_compiling() or bool(zero.any()):
            zeros = prims.segment_sum((y == 0).to(x.dtype), seg)
            passes = zero & ((p > 0) | ((p < 0) & (zeros == 1)))
            scale = torch.where(passes, (beta - torch.where(passes, t, torch.zeros_like(t)))
                                * log_n, torch.full_like(r, -math.inf)).exp()
            # Infinite as p -> 0-: an infinite one-sided derivative counts as 0.
            at_zero = grad * torch.where(scale == math.inf, torch.zeros_like(scale), scale)
        # At y == 0: the part's one-sided derivative (regular part: p == 1 only).
        one_sided = torch.where(zero, at_zero, grad * factor * (p == 1).to(x.dtype))
        xs = x if sign > 0 else -x
        inside = (xs > 0).to(x.dtype)
        # Elements equal to 0 sit on both parts' kink: each part contributes half.
        kink = torch.where(x == 0, 0.5 * prims.gather(one_sided, seg), torch.zeros_like(x))
        grad_x.add_(phi * inside + kink)
    return grad_x, grad_a, grad_b


def gnp_backward(prims: ModuleType, grad: Tensor, x: Tensor, seg: Segments, a_pos: Tensor,
                 b_pos: Tensor, a_neg: Tensor, b_neg: Tensor, pos: PartState, neg: PartState,
                 needs: tuple[bool, bool, bool, bool, bool]
                 ) -> tuple[Tensor | None, ...]:
    """Gradients for (x, a_pos, b_pos, a_neg, b_neg); parameter gradients are ``[K]``."""
    log_n, empty = set_statistics(seg, x.dtype)
    grad_x = torch.zeros_like(x) if needs[0] else None
    grad_x, ga_pos, gb_pos = _backward_part(prims, grad, x, seg, log_n, empty, a_pos, b_pos,
                                            pos, +1, grad_x, needs[1], needs[2])
    grad_x, ga_neg, gb_neg = _backward_part(prims, grad, x, seg, log_n, empty, a_neg, b_neg,
                                            neg, -1, grad_x, needs[3], needs[4])
    # out = G+ - G-: the negative part's parameters enter with a minus sign (its y = -x
    # makes the sign of x's gradient come out positive).
    ga_neg = None if ga_neg is None else -ga_neg
    gb_neg = None if gb_neg is None else -gb_neg
    return grad_x, ga_pos, gb_pos, ga_neg, gb_neg
