"""AttSets with its linear scoring layer fused in, on the fused CPU kernels.

The scores ``z = x W^T + b`` (optionally ``tanh``) are never materialised for all
elements: sets are processed in chunks of about ``CHUNK_ROWS`` elements, each chunk's
scores are computed into a small buffer, pooled, and recomputed in backward. Peak memory
is the input, its gradient, O(sets x channels) and two chunk buffers; each chunk's rows
are still in cache when the pooling kernel reads them after the matrix product.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from . import cpu

#: Elements per chunk: a few MB of rows at 64 channels, which stay in the last-level cache.
CHUNK_ROWS = 16384


def _chunks(ptr: Tensor, rows: int) -> Iterator[tuple[int, int, int, int]]:
    """``(first set, end set, first row, end row)`` of consecutive whole sets."""
    size = ptr.numel() - 1
    total = int(ptr[-1])
    marks = torch.arange(rows, total, rows) if total > rows else ptr.new_empty(0)
    cuts = torch.searchsorted(ptr, marks, right=True) - 1
    bounds = sorted(set([0, size] + cuts.clamp(0, size).tolist()))
    ptr_list = ptr.tolist()
    for s0, s1 in zip(bounds[:-1], bounds[1:], strict=True):
        yield s0, s1, ptr_list[s0], ptr_list[s1]


def _scores(x_c: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None,
            columns: int, buffer: Tensor) -> Tensor:
    z = buffer[: x_c.size(0)]
    if weight.size(0) == columns:
        if bias is None:
            torch.mm(x_c, weight.t(), out=z)
        else:
            torch.addmm(bias, x_c, weight.t(), out=z)
    else:  # one score per element, shared by every channel
        z.copy_(torch.nn.functional.linear(x_c, weight, bias).expand(-1, columns))
    if activation == "tanh":
        z.tanh_()
    return z


def _rows(x: Tensor, perm: Tensor | None, r0: int, r1: int) -> Tensor:
    return x[r0:r1] if perm is None else x.index_select(0, perm[r0:r1])


def forward(x: Tensor, weight: Tensor, bias: Tensor | None, activation: str | None,
            ptr: Tensor, perm: Tensor | None, size: int
            ) -> tuple[Tensor, Tensor, Tensor]:
    """Pooled output ``[S, K]`` and the per-set statistics ``(m, l)``."""
    columns = x.size(1)
    out, m, l = (x.new_empty(size, columns) for _ in range(3))
    buffer = x.new_empty(min(x.size(0), 2 * CHUNK_ROWS), columns)
    for s0, s1, r0, r1 in _chunks(ptr, CHUNK_ROWS):
        if buffer.size(0) < r1 - r0:  # one set larger than the buffer
            buffer = x.new_empty(r1 - r0, columns)
        x_c = _rows(x, perm, r0, r1)
        z = _scores(x_c, weight, bias, activation, columns, buffer)
        cpu.attsets_forward(x_c, z, ptr[s0:s1 + 1] - r0, None, s1 - s0,
                            out=out[s0:s1], m=m[s0:s1], l=l[s0:s1])
    return out, m, l


def backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
             activation: str | None, ptr: Tensor, perm: Tensor | None, out: Tensor,
             m: Tensor, l: Tensor, needs: tuple[bool, bool, bool]
             ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for ``(x, weight, bias)``."""
    columns = x.size(1)
    grad = grad.to(x.dtype).contiguous()
    need_x = needs[0]
    grad_x = torch.empty_like(x) if need_x else None
    grad_w = torch.zeros_like(weight) if needs[1] else None
    grad_b = torch.zeros_like(bias) if bias is not None and needs[2] else None
    shared = weight.size(0) != columns
    rows = min(x.size(0), 2 * CHUNK_ROWS)
    z_buf, gz_buf = x.new_empty(rows, columns), x.new_empty(rows, columns)
    gx_buf = x.new_empty(rows, columns) if need_x and perm is not None else None
    for s0, s1, r0, r1 in _chunks(ptr, CHUNK_ROWS):
        n = r1 - r0
        if z_buf.size(0) < n:
            z_buf, gz_buf = x.new_empty(n, columns), x.new_empty(n, columns)
            gx_buf = x.new_empty(n, columns) if gx_buf is not None else None
        x_c = _rows(x, perm, r0, r1)
        z = _scores(x_c, weight, bias, activation, columns, z_buf)
        gz = gz_buf[:n]
        gx = None
        if need_x:
            gx = grad_x[r0:r1] if perm is None else gx_buf[:n]
        cpu.attsets_backward(grad[s0:s1], x_c, z, ptr[s0:s1 + 1] - r0, None, s1 - s0,
                             out[s0:s1], m[s0:s1], l[s0:s1], need_x, True,
                             grad_x=gx, grad_scores=gz)
        if activation == "tanh":
            gz.mul_(1 - z * z)
        if shared:
            gz = gz.sum(1, keepdim=True)
        if need_x:
            gx.addmm_(gz, weight)
            if perm is not None:
                grad_x.index_copy_(0, perm[r0:r1], gx)
        if grad_w is not None:
            grad_w.addmm_(gz.t(), x_c)
        if grad_b is not None:
            grad_b.add_(gz.sum(0))
    return grad_x, grad_w, grad_b
