"""AttSets forward and backward composed from a backend's segment primitives.

For one set and channel, with scores z_i and features x_i:

    m = max_i z_i,   l = sum_i exp(z_i - m),   w_i = exp(z_i - m) / l,   out = sum_i w_i x_i

Backward with upstream gradient g: dx_i = g w_i and dz_i = g w_i (x_i - out). The weights
are recomputed from the saved per-set ``m`` and ``l``, so nothing of size
elements x channels is kept besides ``x`` and ``z``.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .segments import Segments


def _weights(prims: ModuleType, scores: Tensor, seg: Segments, m: Tensor, l: Tensor) -> Tensor:
    w = scores - prims.gather(m, seg)
    w.exp_()
    return w.div_(prims.gather(l, seg))


def attsets_forward(prims: ModuleType, x: Tensor, scores: Tensor, seg: Segments
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Pooled ``[S, K]`` output and the per-set statistics ``(m, l)``."""
    m = prims.segment_max(scores, seg)
    e = scores - prims.gather(m, seg)
    e.exp_()
    l = prims.segment_sum(e, seg)
    out = prims.segment_sum(e.mul_(x), seg)
    # Every non-empty set has l >= 1 (or NaN, which must show); empty sets pool to 0.
    empty = (seg.count == 0).view(-1, 1)
    out = torch.where(empty, torch.zeros_like(out), out / torch.where(empty, 1.0, l))
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
