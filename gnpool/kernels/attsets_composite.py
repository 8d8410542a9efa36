"""AttSets forward and backward composed from a backend's segment primitives.

For one set and channel, with scores z_i and features x_i:

    m = max_i z_i,   l = sum_i exp(z_i - m),   w_i = exp(z_i - m) / l,   out = sum_i w_i x_i

Backward with upstream gradient g: dx_i = g w_i and dz_i = g w_i (x_i - out). The weights
are recomputed from the saved per-set ``m`` and ``l``, so nothing of size
elements x channels is kept besides ``x`` and ``z``.

A score of -inf gives its element weight exactly 0. A set whose scores in a channel are all
-inf (fully masked) is stored as ``m = 0, l = 0``: its weights are 0 instead of NaN, it
pools to 0 like an empty set and its gradients are 0. NaN scores give NaN.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import Tensor

from .segments import Segments


def _weights(prims: ModuleType, scores: Tensor, seg: Segments, m: Tensor, l: Tensor) -> Tensor:
    w = scores - prims.gather(m, seg)
    w.exp_()
    # l = 0 (empty or fully masked): weights 0, not 0 / 0.
    inv = torch.where(l == 0, torch.zeros_like(l), l.reciprocal())
    return w.mul_(prims.gather(inv, seg))


def attsets_forward(prims: ModuleType, x: Tensor, scores: Tensor, seg: Segments
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Pooled ``[S, K]`` output and the per-set statistics ``(m, l)``."""
    m = prims.segment_max(scores, seg)
    # All scores -inf: exp(z - 0) = 0 rather than exp(-inf + inf) = NaN.
    m.masked_fill_(m == -math.inf, 0.0)
    e = scores - prims.gather(m, seg)
    e.exp_()
    l = prims.segment_sum(e, seg)
    out = prims.segment_sum(e.mul_(x), seg)
    # A set with a finite largest score has l >= 1 (NaN scores give NaN l, which must show);
    # l = 0 is an empty or fully masked set, which pools to 0.
    out = torch.where(l == 0, torch.zeros_like(out), out / l)
    return out, m, l


def attsets_backward(prims: ModuleType, grad: Tensor, x: Tensor, scores: Tensor, seg: Segments,
                     out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_scores: bool
                     ) -> tuple[Tensor | None, Tensor | None]:
    w = _weights(prims, scores, seg, m, l)
    grad_e = prims.gather(grad, seg)
    grad_x = grad_e * w if need_x else None
    grad_scores = None
    if need_scores:
        grad_scores = w.mul_(grad_e.mul_(x).sub_(prims.gather(grad * out, seg)))
    return grad_x, grad_scores
