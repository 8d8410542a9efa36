"""GNP forward and closed-form backward, composed from a backend's segment primitives.

Notation for one part (``y = relu(x)`` for the positive part, ``relu(-x)`` for the
negative one), one set of ``n`` elements and one channel:

    G = (n^-q * sum_i y_i^p)^(1/p)

Computed as ``log G = log r + (log s - q log n) / p`` with ``r`` the set's largest
``y`` (p > 0) or smallest ``y`` (p < 0) and ``s = sum_i (y_i / r)^p`` in ``[1, n]``,
so no power of a raw input is ever formed. A "zero set" (r == 0: all y are zero
for p > 0, some y is zero for p < 0) pools to exactly 0.

Backward, with t_i = y_i / r:

    dG/dy_i = A * t_i^(p-1),      A = n^(-q/p) * s^((1-p)/p)
    dG/dp   = G/p * (sum_i t_i^p log t_i / s - (log s - q log n)/p)
    dG/dq   = -G log n / p

so only ``r``, ``log s`` and ``G`` (per set and channel) are saved. At x_i == 0 the
gradient is the mean of the two one-sided derivatives (what central differences
see); a one-sided derivative that is infinite (0 < p < 1 at y_i = 0) counts as 0.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple

import torch
from torch import Tensor

from .segments import Segments


class PartState(NamedTuple):
    r: Tensor  # reference magnitude [S, K]
    log_s: Tensor  # log of the scaled power sum [S, K]
    out: Tensor  # G [S, K]


def _reference(mx: Tensor, mn: Tensor, p: Tensor, sign: int) -> Tensor:
    # Largest (p > 0) or smallest (p < 0) element of relu(sign * x), per set.
    if sign > 0:
        return torch.where(p > 0, mx, mn).clamp_min(0)
    return torch.where(p > 0, -mn, -mx).clamp_min(0)


def _part(sign: int, x: Tensor) -> Tensor:
    # relu(x) or relu(-x) with every zero as +0.0: a -0.0 would turn 0^p into -inf for
    # odd negative p.
    return (x.clamp_min(0) if sign > 0 else x.clamp_max(0)).abs_()


def _forward_part(prims: ModuleType, x: Tensor, seg: Segments, mx: Tensor, mn: Tensor,
                  log_n: Tensor, empty: Tensor, p: Tensor, q: Tensor, sign: int) -> PartState:
    r = _reference(mx, mn, p, sign)
    t = _part(sign, x)
    t.div_(prims.gather(torch.where(r > 0, r, torch.ones_like(r)), seg))
    t.pow_(p)
    s = prims.segment_sum(t, seg)
    del t
    log_s = s.log()
    log_g = r.log() + (log_s - q * log_n) / p
    # A zero set pools to exactly 0, unless a NaN in it reached s.
    zero = ((r == 0) & ~s.isnan()) | empty
    out = torch.where(zero, torch.zeros_like(log_g), log_g.exp())
    return PartState(r, log_s, out)


def set_statistics(seg: Segments, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``log n`` as a ``[S, 1]`` column and the mask of empty sets."""
    count = seg.count.to(dtype).view(-1, 1)
    return count.log(), count == 0


def gnp_forward(prims: ModuleType, x: Tensor, seg: Segments, p_pos: Tensor, q_pos: Tensor,
                p_neg: Tensor, q_neg: Tensor) -> tuple[Tensor, PartState, PartState]:
    """GNP of ``x`` ``[E, K]`` per set; parameters are ``[1, K]`` or ``[1, 1]``."""
    mx = prims.segment_max(x, seg)
    mn = prims.segment_min(x, seg)
    log_n, empty = set_statistics(seg, x.dtype)
    pos = _forward_part(prims, x, seg, mx, mn, log_n, empty, p_pos, q_pos, +1)
    neg = _forward_part(prims, x, seg, mx, mn, log_n, empty, p_neg, q_neg, -1)
    return pos.out - neg.out, pos, neg


def _backward_part(prims: ModuleType, grad: Tensor, x: Tensor, seg: Segments, log_n: Tensor,
                   empty: Tensor, p: Tensor, q: Tensor, state: PartState, sign: int,
                   grad_x: Tensor | None, need_p: bool, need_q: bool
                   ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    r, log_s, g_out = state
    zero = r == 0
    grad_p = grad_q = None
    if need_q:
        grad_q = torch.where(empty, torch.zeros_like(g_out), -g_out * log_n / p)
        grad_q = (grad * grad_q).sum(0)
    if grad_x is None and not need_p:
        return grad_x, grad_p, grad_q

    # t = y / r. A zero set is marked by r = -1 and gets t = 1 at its zeros and t = 0
    # elsewhere, so that phi below is 1 exactly at the zeros. t is capped at the largest
    # float so that t^p * log t is 0, not NaN, where y / r overflows (p < 0).
    re = prims.gather(torch.where(zero, -torch.ones_like(r), r), seg)
    y = _part(sign, x)
    t = torch.where(re < 0, (y == 0).to(y.dtype), y.div_(re))
    t.clamp_max_(torch.finfo(t.dtype).max)
    del re, y
    phi = t.pow(p - 1)
    # The one-sided derivative at y = 0 is infinite for 0 < p < 1: it counts as 0.
    phi.nan_to_num_(nan=float("nan"), posinf=0.0)

    if need_p:
        stat = prims.segment_sum(torch.xlogy(phi * t, t), seg)
        d = (log_s - q * log_n) / p
        gp = g_out / p * (stat * (-log_s).exp() - d)
        grad_p = (grad * torch.where(g_out > 0, gp, torch.zeros_like(gp))).sum(0)
    del t

    if grad_x is not None:
        # A = n^(-q/p) s^((1-p)/p). In a zero set G = n^(-q/p) y_i to first order in each
        # zero y_i when every other element stays put: for p > 0 (all zeros) always, for
        # p < 0 only when y_i is the set's single zero; otherwise a zero set passes none.
        log_a = (-q * log_n + torch.where(zero, torch.zeros_like(log_s), (1 - p) * log_s)) / p
        blocked = empty
        if torch.compiler.is_compiling() or bool((p < 0).any()):
            zeros = prims.segment_sum((_part(sign, x) == 0).to(x.dtype), seg)
            blocked = blocked | (zero & (p < 0) & (zeros != 1))
        a = torch.where(blocked, torch.zeros_like(log_a), log_a.exp())
        phi.mul_(prims.gather(grad * a, seg))
        # Elements equal to 0 sit on both parts' kink: each part contributes half.
        xs = x if sign > 0 else -x
        weight = (xs > 0).to(x.dtype) + 0.5 * (x == 0).to(x.dtype)
        grad_x.addcmul_(phi, weight)
    return grad_x, grad_p, grad_q


def gnp_backward(prims: ModuleType, grad: Tensor, x: Tensor, seg: Segments, p_pos: Tensor,
                 q_pos: Tensor, p_neg: Tensor, q_neg: Tensor, pos: PartState, neg: PartState,
                 needs: tuple[bool, bool, bool, bool, bool]
                 ) -> tuple[Tensor | None, ...]:
    """Gradients for (x, p_pos, q_pos, p_neg, q_neg); parameter gradients are ``[K]``."""
    log_n, empty = set_statistics(seg, x.dtype)
    grad_x = torch.zeros_like(x) if needs[0] else None
    grad_x, gp_pos, gq_pos = _backward_part(prims, grad, x, seg, log_n, empty, p_pos, q_pos,
                                            pos, +1, grad_x, needs[1], needs[2])
    grad_x, gp_neg, gq_neg = _backward_part(prims, grad, x, seg, log_n, empty, p_neg, q_neg,
                                            neg, -1, grad_x, needs[3], needs[4])
    # out = G+ - G-: the negative part's parameters enter with a minus sign.
    gp_neg = None if gp_neg is None else -gp_neg
    gq_neg = None if gq_neg is None else -gq_neg
    return grad_x, gp_pos, gq_pos, gp_neg, gq_neg
