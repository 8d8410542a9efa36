"""AttSets forward and backward as Triton kernels over CSR segments.

One program pools one set over a block of ``BLOCK_K`` channels: it walks the set's rows
once, ``BLOCK_E`` rows at a time, with an online softmax (the running maximum ``m``, sum of
exponentials ``l`` and weighted sum are rescaled whenever the maximum grows, as in
FlashAttention), so the forward reads ``x`` and the scores once and writes only
``[sets, channels]``. The backward recomputes each weight from the saved per-set ``m`` and
``l`` and writes each element's gradients once:

    w_i = exp(z_i - m) / l,   dx_i = g w_i,   dz_i = w_i (g x_i - g out)

Every value is written by exactly one program (no atomics), so results repeat bit for bit.
An unsorted index is turned into CSR once (a stable sort, ``segments.sort_csr``) and the kernels
read the rows through the permutation, so ``x`` is never copied into set order.

Loads are converted to the accumulation dtype (float32 for fp16/bf16/float32 input,
float64 for float64) and gradients are written back in their input's dtype. A set whose
scores are all ``-inf`` in a channel (a fully masked set) pools to 0 there with zero
gradients, like an empty set; ``-inf`` scores in a set with finite ones get weight 0.

Imported on first use only: importing Triton is slow, and ``TRITON_INTERPRET=1`` (Triton's
interpreter, which runs the same kernels on CPU tensors) must be set before this module is
imported to take effect.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .triton_segments import accumulation_dtype, blocks, tile_rows

#: Scoring activations the kernels apply to the scores on load (0: none, 1: tanh).
ACTIVATIONS = {None: 0, "tanh": 1}
#: Whether the kernels below run under Triton's interpreter (decided when they are defined).
INTERPRETED = bool(triton.knobs.runtime.interpret)


@triton.jit
def _tanh(a):
    # tanh(|a|) = (1 - t) / (1 + t) with t = exp(-2|a|) <= 1: no overflow, and an absolute
    # error of a few ulp, which is what a softmax's shift-invariant input needs.
    t = tl.exp(-2.0 * tl.abs(a))
    r = (1.0 - t) / (1.0 + t)
    return tl.where(a < 0, -r, r)


@triton.jit
def _forward_kernel(x_ptr, z_ptr, ptr_ptr, perm_ptr, out_ptr, m_ptr, l_ptr,
                    K, stride_x, stride_zr, stride_zc,
                    HAS_PERM: tl.constexpr, ACT: tl.constexpr,
                    BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    cmask = cols < K
    acc_t = out_ptr.dtype.element_ty
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    m = tl.full([BLOCK_K], float("-inf"), acc_t)
    l = tl.zeros([BLOCK_K], acc_t)
    acc = tl.zeros([BLOCK_K], acc_t)
    for r0 in range(start, end, BLOCK_E):
        rows, _, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        z = tl.load(z_ptr + rows[:, None] * stride_zr + cols[None, :] * stride_zc, mask=mask,
                    other=0.0).to(acc_t)
        if ACT == 1:
            z = _tanh(z)
        z = tl.where(mask, z, float("-inf"))
        x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                    other=0.0).to(acc_t)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        # While every score seen is -inf, shift by 0 instead: exp(-inf - -inf) would be NaN.
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        scale = tl.exp(m - shift)
        e = tl.exp(z - shift[None, :])
        l = l * scale + tl.sum(e, axis=0)
        acc = acc * scale + tl.sum(e * x, axis=0)
        m = m_new
    # l == 0: an empty set or only -inf scores, which pools to 0 (NaN in l must show).
    empty = l == 0.0
    out = tl.where(empty, 0.0, acc / tl.where(empty, 1.0, l))
    shift = tl.where(m == float("-inf"), 0.0, m)
    base = s.to(tl.int64) * K + cols
    tl.store(out_ptr + base, out, mask=cmask)
    tl.store(m_ptr + base, shift, mask=cmask)
    tl.store(l_ptr + base, l, mask=cmask)


@triton.jit
def _backward_kernel(x_ptr, z_ptr, ptr_ptr, perm_ptr, g_ptr, out_ptr, m_ptr, l_ptr,
                     gx_ptr, gz_ptr, K, E, stride_x, stride_zr, stride_zc,
                     HAS_PERM: tl.constexpr, ACT: tl.constexpr, NEED_X: tl.constexpr,
                     NEED_Z: tl.constexpr, SHARED: tl.constexpr,
                     BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    kb = tl.program_id(1)
    cols = kb * BLOCK_K + tl.arange(0, BLOCK_K)
    cmask = cols < K
    acc_t = out_ptr.dtype.element_ty
    base = s.to(tl.int64) * K + cols
    g = tl.load(g_ptr + base, mask=cmask, other=0.0).to(acc_t)
    out = tl.load(out_ptr + base, mask=cmask, other=0.0)
    m = tl.load(m_ptr + base, mask=cmask, other=0.0)
    l = tl.load(l_ptr + base, mask=cmask, other=1.0)
    # Weights of an all -inf set are 0 (its l is 0), not 0/0.
    inv_l = tl.where(l == 0.0, 0.0, 1.0 / tl.where(l == 0.0, 1.0, l))
    g_out = g * out
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    for r0 in range(start, end, BLOCK_E):
        rows, rmask, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        z = tl.load(z_ptr + rows[:, None] * stride_zr + cols[None, :] * stride_zc, mask=mask,
                    other=0.0).to(acc_t)
        if ACT == 1:
            z = _tanh(z)
        w = tl.exp(tl.where(mask, z, float("-inf")) - m[None, :]) * inv_l[None, :]
        if NEED_X:
            tl.store(gx_ptr + rows[:, None] * stride_x + cols[None, :],
                     (g[None, :] * w).to(gx_ptr.dtype.element_ty), mask=mask)
        if NEED_Z:
            x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                        other=0.0).to(acc_t)
            gz = w * (g[None, :] * x - g_out[None, :])
            if ACT == 1:
                gz = gz * (1.0 - z * z)
            gz = tl.where(mask, gz, 0.0)
            if SHARED:
                # One score per element shared by every channel: this block's share of its
                # gradient, summed over the blocks afterwards (no atomics).
                tl.store(gz_ptr + kb.to(tl.int64) * E + rows,
                         tl.sum(gz, axis=1).to(gz_ptr.dtype.element_ty), mask=rmask)
            else:
                tl.store(gz_ptr + rows[:, None] * stride_zr + cols[None, :],
                         gz.to(gz_ptr.dtype.element_ty), mask=mask)


def attsets_forward(x: Tensor, scores: Tensor, ptr: Tensor, perm: Tensor | None, size: int,
                    activation: str | None = None, block_k: int | None = None,
                    block_e: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets of ``x`` ``[E, K]`` with ``scores`` ``[E, K]`` (or ``[E, 1]``: one score per
    element for every channel): the ``[S, K]`` output and per-set statistics ``(m, l)`` in
    the accumulation dtype. ``activation`` is applied to the scores on load."""
    x = x.contiguous()
    columns = x.size(1)
    acc = accumulation_dtype(x, scores)
    scores = scores if scores.stride(-1) in (0, 1) and scores.size(1) == columns else \
        scores.contiguous()
    out, m, l = (torch.zeros(size, columns, dtype=acc, device=x.device) for _ in range(3))
    if size == 0 or columns == 0 or x.size(0) == 0:
        return out, m, l
    bk, be = blocks(columns, block_k, block_e, tile=2048, max_k=128)
    zc = 0 if scores.size(1) == 1 else scores.stride(1)
    _forward_kernel[(size, triton.cdiv(columns, bk))](
        x, scores, ptr, x if perm is None else perm, out, m, l,
        columns, x.stride(0), scores.stride(0), zc,
        HAS_PERM=perm is not None, ACT=ACTIVATIONS[activation], BLOCK_E=be, BLOCK_K=bk)
    return out, m, l


def attsets_backward(grad: Tensor, x: Tensor, scores: Tensor, ptr: Tensor, perm: Tensor | None,
                     out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_scores: bool,
                     activation: str | None = None, block_k: int | None = None,
                     block_e: int | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Gradients for ``x`` and ``scores`` (each in its own dtype, or ``None`` when not
    needed). With ``activation`` the score gradient is taken before it (the pre-activation
    scores are what ``scores`` holds). ``[E, 1]`` scores get an ``[E, 1]`` gradient."""
    x = x.contiguous()
    columns, elements = x.size(1), x.size(0)
    shared = scores.size(1) == 1 and columns != 1
    scores = scores.contiguous()
    grad_x = torch.zeros_like(x) if need_x else None
    grad_scores = torch.zeros_like(scores) if need_scores else None
    size = out.size(0)
    if not (need_x or need_scores) or size == 0 or columns == 0 or elements == 0:
        return grad_x, grad_scores
    bk, be = blocks(columns, block_k, block_e, tile=2048, max_k=128)
    channel_blocks = triton.cdiv(columns, bk)
    partial = None
    if need_scores and shared:
        partial = torch.zeros(channel_blocks, elements, dtype=out.dtype, device=x.device)
    dummy = x
    _backward_kernel[(size, channel_blocks)](
        x, scores, ptr, dummy if perm is None else perm, grad.to(out.dtype).contiguous(),
        out.contiguous(), m.contiguous(), l.contiguous(),
        dummy if grad_x is None else grad_x,
        (dummy if grad_scores is None else grad_scores) if partial is None else partial,
        columns, elements, x.stride(0), scores.stride(0), 0 if shared else scores.stride(1),
        HAS_PERM=perm is not None, ACT=ACTIVATIONS[activation], NEED_X=need_x,
        NEED_Z=need_scores, SHARED=shared, BLOCK_E=be, BLOCK_K=bk)
    if partial is not None:
        grad_scores = partial.sum(0).view(elements, 1).to(scores.dtype)
    return grad_x, grad_scores


# The scoring layer act(x W^T + b) is one matrix product before the pooling kernel (and
# again, recomputed, in backward), not fused into it: a program of the CSR kernel holds the
# rows of one set (about 20), too few to fill a tensor-core tile, and the weight gradient
# dW = dZ^T X is a reduction over all elements that a per-set kernel could only make with
# atomics or with O(sets x F^2) partial sums, where cuBLAS does it in one deterministic GEMM.
# The activation and its derivative are fused into the kernels' loads and stores.

def _scores(x: Tensor, weight: Tensor, bias: Tensor | None, acc: torch.dtype) -> Tensor:
    return torch.nn.functional.linear(x.to(acc), weight.to(acc),
                                      None if bias is None else bias.to(acc))


def attsets_linear_forward(x: Tensor, weight: Tensor, bias: Tensor | None,
                           activation: str | None, ptr: Tensor, perm: Tensor | None,
                           size: int) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets with scores ``act(x W^T + b)``; ``weight`` is ``[K, K]`` or ``[1, K]``. The
    pre-activation scores exist only during the call."""
    acc = accumulation_dtype(x, weight)
    return attsets_forward(x, _scores(x, weight, bias, acc), ptr, perm, size, activation)


def attsets_linear_backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
                            activation: str | None, ptr: Tensor, perm: Tensor | None,
                            out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_params: bool
                            ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for ``(x, weight, bias)``: the scores are recomputed by one product, the
    kernel gives the direct ``x`` gradient and the pre-activation score gradient ``dZ``,
    and ``dZ W``, ``dZ^T X`` and ``sum(dZ)`` are three more products."""
    acc = out.dtype
    scores = _scores(x, weight, bias, acc)
    need_z = need_x or need_params
    grad_x, grad_z = attsets_backward(grad, x.to(acc) if need_x else x, scores, ptr, perm,
                                      out, m, l, need_x, need_z, activation)
    grad_w = grad_b = None
    if need_x:
        grad_x = grad_x.addmm_(grad_z, weight.to(acc)).to(x.dtype)
    if need_params:
        grad_w = (grad_z.t() @ x.to(acc)).to(weight.dtype)
        grad_b = None if bias is None else grad_z.sum(0).to(bias.dtype)
    return grad_x, grad_w, grad_b
