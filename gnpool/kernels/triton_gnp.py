"""GNP forward and closed-form backward as Triton kernels over CSR segments.

The math is :mod:`.gnp_composite`'s (its docstring is the specification) arranged as in the
fused CPU kernels (``csrc/gnp.cpp``). One program pools one set over a block of ``BLOCK_K``
channels:

- forward: one pass over the set's rows for the largest and smallest ``x`` (the reference
  ``r`` of each part: its largest ``y`` for ``p > 0``, smallest for ``p <= 0``), one pass for
  ``A = sum_i exp(p l_i)`` with ``l_i = log(y_i / r)`` (0 at ties with ``r``) and the sums
  of ``l`` and ``l^2`` (the cumulant expansion for ``|p| < SMALL_P``); it writes the output
  and the per-set state ``(r, A, G)`` of both parts, ``[6, sets, channels]``;
- backward: one pass that recomputes each element's weight from the saved state, writes its
  gradient once and sums what the exponent's gradient needs (preceded, only in a set with
  a zero part and ``p < 0``, by a pass counting zeros: such a part passes gradient to its
  zero only when the zero is unique). The parameters' gradients are written per set and
  summed over the sets afterwards (no atomics).

Every value is written by exactly one program, so results repeat bit for bit. An unsorted
index is sorted once (``segments.sort_csr``) and the kernels read the rows through the
permutation. fp16/bf16 inputs are read directly and computed in float32; float64 stays
float64. ``l`` is ``log(y / r)`` with a correctly rounded division (the CPU kernels multiply
by a prescaled reciprocal instead; a division needs no prescale for subnormal ``r``).

The per-channel exponents ``p = tan(pi a / 2)``, ``t = 1 / p`` and the constants that
involve pi are computed on the host in the accumulation dtype (Triton would round float
literals to float32).

Imported on first use only (``triton_backend.kernels("gnp")``): ``TRITON_INTERPRET=1`` must
be set before the first Triton kernel module is imported to take effect.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .gnp_composite import _EXP_SAFE, HALF_PI, SMALL_P, exponent
from .triton_segments import accumulation_dtype, blocks, tile_rows

#: Whether the kernels below run under Triton's interpreter (decided when they are defined).
INTERPRETED = bool(triton.knobs.runtime.interpret)


@triton.jit
def _param(prm_ptr, part, row, cols, cmask, P, PSTRIDE: tl.constexpr):
    # Row `row` of part `part` of the parameter block (in the accumulation dtype), per
    # column (PSTRIDE = 1) or one value for all (PSTRIDE = 0).
    return tl.load(prm_ptr + (part * 6 + row) * P + cols * PSTRIDE, mask=cmask, other=1.0)


@triton.jit
def _divide(a, b):
    # A correctly rounded division (Triton's float32 `/` may be approximate on GPUs;
    # float64 division is always correctly rounded).
    if a.dtype == tl.float32:
        return tl.math.div_rn(a, b)
    else:
        return a / b


@triton.jit
def _log_ratio(y, ref, regular):
    # l = log(y / r), exactly 0 at a tie y == r; a zero, infinite or NaN reference divides
    # by 1 (such parts are overridden per set). Where y / r leaves the float range (inf for
    # a finite y, 0 for a positive one), log(y) - log(r).
    ratio = _divide(y, tl.where(regular, ref, 1.0))
    out_of_range = regular & (((ratio == float("inf")) & (y < float("inf")))
                              | ((ratio == 0) & (y > 0)))
    l = tl.where(out_of_range, tl.log(y) - tl.log(tl.where(regular, ref, 1.0)), tl.log(ratio))
    return tl.where(y == ref, 0.0, l)


@triton.jit
def _part_value(r, ymin, ymax, acc, s1, s2, p, t, beta, small, n, log_n, SAFE: tl.constexpr):
    # G of one part (gnp_composite._forward_part): r exp(D + beta log n) with D = t log(A/n)
    # or its expansion m1 + p v / 2, then the special parts in order of precedence.
    inf = float("inf")
    expand = (small != 0) & (ymin > 0) & (ymax < inf)
    m1 = s1 / n
    var = tl.maximum(s2 / n - m1 * m1, 0.0)
    d = tl.where(expand, m1 + p * var * 0.5, t * (tl.log(acc) - log_n))
    rr = tl.where((r > 0) & (r < inf), r, 1.0)
    scale = d + beta * log_n
    # r * exp(...) is exactly r for max and min; the log form only where exp would overflow
    # or underflow.
    g = tl.where((scale < SAFE) & (scale > -SAFE), rr * tl.exp(scale),
                 tl.exp(tl.log(rr) + scale))
    g = tl.where(r == 0, 0.0, g)
    g = tl.where(((ymax == inf) & (p >= 0)) | (ymin == inf), inf, g)
    return tl.where((p == 0) & (ymin == 0) & (ymax == inf), float("nan"), g)


@triton.jit
def _forward_kernel(x_ptr, ptr_ptr, perm_ptr, prm_ptr, out_ptr, st_ptr, K, SK, P, stride_x,
                    HAS_PERM: tl.constexpr, PSTRIDE: tl.constexpr, SAFE: tl.constexpr,
                    BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    cmask = cols < K
    acc_t = out_ptr.dtype.element_ty
    inf = float("inf")
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    p_p = _param(prm_ptr, 0, 0, cols, cmask, P, PSTRIDE)
    t_p = _param(prm_ptr, 0, 1, cols, cmask, P, PSTRIDE)
    b_p = _param(prm_ptr, 0, 2, cols, cmask, P, PSTRIDE)
    small_p = _param(prm_ptr, 0, 3, cols, cmask, P, PSTRIDE)
    p_n = _param(prm_ptr, 1, 0, cols, cmask, P, PSTRIDE)
    t_n = _param(prm_ptr, 1, 1, cols, cmask, P, PSTRIDE)
    b_n = _param(prm_ptr, 1, 2, cols, cmask, P, PSTRIDE)
    small_n = _param(prm_ptr, 1, 3, cols, cmask, P, PSTRIDE)

    # Pass 1: largest and smallest x per channel; NaN anywhere in the set is remembered.
    mx = tl.full([BLOCK_K], -inf, acc_t)
    mn = tl.full([BLOCK_K], inf, acc_t)
    bad = tl.zeros([BLOCK_K], tl.int32)
    for r0 in range(start, end, BLOCK_E):
        rows, _, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        v = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                    other=0.0).to(acc_t)
        mx = tl.maximum(mx, tl.max(tl.where(mask & (v == v), v, -inf), axis=0))
        mn = tl.minimum(mn, tl.min(tl.where(mask & (v == v), v, inf), axis=0))
        bad = tl.maximum(bad, tl.max((mask & (v != v)).to(tl.int32), axis=0))
    # Largest and smallest y of each part; the reference is the largest for p > 0.
    ymax_p = tl.where(mx > 0, mx, 0.0)
    ymin_p = tl.where(mn > 0, mn, 0.0)
    ymax_n = tl.where(mn < 0, -mn, 0.0)
    ymin_n = tl.where(mx < 0, -mx, 0.0)
    r_p = tl.where(p_p > 0, ymax_p, ymin_p)
    r_n = tl.where(p_n > 0, ymax_n, ymin_n)
    reg_p = (r_p > 0) & (r_p < inf)
    reg_n = (r_n > 0) & (r_n < inf)

    # Pass 2: A = sum exp(p l) per part, and the sums of l and l^2 for the expansion.
    a_p = tl.zeros([BLOCK_K], acc_t)
    a_n = tl.zeros([BLOCK_K], acc_t)
    s1_p = tl.zeros([BLOCK_K], acc_t)
    s1_n = tl.zeros([BLOCK_K], acc_t)
    s2_p = tl.zeros([BLOCK_K], acc_t)
    s2_n = tl.zeros([BLOCK_K], acc_t)
    for r0 in range(start, end, BLOCK_E):
        rows, _, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        v = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                    other=0.0).to(acc_t)
        # Masked lanes hold 0, which belongs to neither part.
        neg = v < 0
        pos = v > 0
        ref = tl.where(neg, r_n[None, :], r_p[None, :])
        l = _log_ratio(tl.abs(v), ref, tl.where(neg, reg_n[None, :], reg_p[None, :]))
        z = tl.where(l == 0, 0.0, tl.where(neg, p_n[None, :], p_p[None, :]) * l)
        w = tl.exp(z)
        a_p += tl.sum(tl.where(pos, w, 0.0), axis=0)
        a_n += tl.sum(tl.where(neg, w, 0.0), axis=0)
        s1_p += tl.sum(tl.where(pos, l, 0.0), axis=0)
        s1_n += tl.sum(tl.where(neg, l, 0.0), axis=0)
        s2_p += tl.sum(tl.where(pos, l * l, 0.0), axis=0)
        s2_n += tl.sum(tl.where(neg, l * l, 0.0), axis=0)

    n = (end - start).to(acc_t)
    log_n = tl.log(n)
    g_p = _part_value(r_p, ymin_p, ymax_p, a_p, s1_p, s2_p, p_p, t_p, b_p, small_p, n, log_n,
                      SAFE)
    g_n = _part_value(r_n, ymin_n, ymax_n, a_n, s1_n, s2_n, p_n, t_n, b_n, small_n, n, log_n,
                      SAFE)
    # NaN in a set makes both parts NaN (and so its gradients, in backward).
    g_p = tl.where(bad > 0, float("nan"), g_p)
    g_n = tl.where(bad > 0, float("nan"), g_n)
    # An empty set pools to 0 with an all-zero state.
    empty = end <= start
    base = s.to(tl.int64) * K + cols
    sk = tl.cast(SK, tl.int64)  # slices of the state: j * SK may pass 2**31
    tl.store(out_ptr + base, tl.where(empty, 0.0, g_p - g_n), mask=cmask)
    tl.store(st_ptr + base, tl.where(empty, 0.0, r_p), mask=cmask)
    tl.store(st_ptr + sk + base, a_p, mask=cmask)
    tl.store(st_ptr + 2 * sk + base, tl.where(empty, 0.0, g_p), mask=cmask)
    tl.store(st_ptr + 3 * sk + base, tl.where(empty, 0.0, r_n), mask=cmask)
    tl.store(st_ptr + 4 * sk + base, a_n, mask=cmask)
    tl.store(st_ptr + 5 * sk + base, tl.where(empty, 0.0, g_n), mask=cmask)


@triton.jit
def _part_factors(g, r, acc, gout, p, t, beta, log_n, zeros):
    # Per set and channel: `ga` multiplies w / ratio for the elements of the part, `k0` is
    # its one-sided derivative at y == 0 (both times the upstream gradient g). A NaN part
    # makes both NaN, so the set's gradients show it.
    inf = float("inf")
    regular = (r > 0) & (gout < inf) & (gout == gout)
    f = tl.where(regular, gout / tl.where(regular, r * acc, 1.0), 0.0)
    # Zero part: n^(beta - t) per zero y for p > 0, for the single zero for p < 0.
    passes = (r == 0) & ((p > 0) | ((p < 0) & (zeros == 1)))
    zf = tl.where(passes, tl.exp((beta - tl.where(passes, t, 0.0)) * log_n), 0.0)
    zf = tl.where(zf == inf, 0.0, zf)
    ga = g * f
    k0 = tl.where(r == 0, g * zf, tl.where(p == 1, g * f, 0.0))
    nan_part = gout != gout
    return tl.where(nan_part, gout, ga), tl.where(nan_part, gout, k0)


@triton.jit
def _grad_unit(g, gout, acc, st, s1, s2, cnt, p, t, small, c_exp, c_small, n, log_n):
    # g * dG/da = g pi/2 G E (1 + t^2) with E = sum w z / A - log(A / n), or the expansion
    # g pi/4 G (1 + p^2) v; 0 for a part that is not finite and positive.
    inf = float("inf")
    live = (gout > 0) & (gout < inf)
    m1 = s1 / n
    expand = (small != 0) & (cnt == n) & (tl.abs(m1) < inf)
    var = tl.maximum(s2 / n - m1 * m1, 0.0)
    e = st / acc - (tl.log(acc) - log_n)
    da = tl.where(expand, c_small * gout * var, c_exp * gout * e)
    return tl.where(live, g * da, 0.0)


@triton.jit
def _backward_kernel(x_ptr, ptr_ptr, perm_ptr, prm_ptr, g_ptr, st_ptr, gx_ptr, gp_ptr,
                     K, SK, P, stride_x,
                     HAS_PERM: tl.constexpr, PSTRIDE: tl.constexpr, NEED_X: tl.constexpr,
                     NEED_P: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr):
    s = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    cmask = cols < K
    acc_t = st_ptr.dtype.element_ty
    inf = float("inf")
    start = tl.load(ptr_ptr + s)
    end = tl.load(ptr_ptr + s + 1)
    base = s.to(tl.int64) * K + cols
    sk = tl.cast(SK, tl.int64)  # slices of the state: j * SK may pass 2**31
    g = tl.load(g_ptr + base, mask=cmask, other=0.0).to(acc_t)
    r_p = tl.load(st_ptr + base, mask=cmask, other=1.0)
    a_p = tl.load(st_ptr + sk + base, mask=cmask, other=1.0)
    gout_p = tl.load(st_ptr + 2 * sk + base, mask=cmask, other=0.0)
    r_n = tl.load(st_ptr + 3 * sk + base, mask=cmask, other=1.0)
    a_n = tl.load(st_ptr + 4 * sk + base, mask=cmask, other=1.0)
    gout_n = tl.load(st_ptr + 5 * sk + base, mask=cmask, other=0.0)
    p_p = _param(prm_ptr, 0, 0, cols, cmask, P, PSTRIDE)
    t_p = _param(prm_ptr, 0, 1, cols, cmask, P, PSTRIDE)
    b_p = _param(prm_ptr, 0, 2, cols, cmask, P, PSTRIDE)
    p_n = _param(prm_ptr, 1, 0, cols, cmask, P, PSTRIDE)
    t_n = _param(prm_ptr, 1, 1, cols, cmask, P, PSTRIDE)
    b_n = _param(prm_ptr, 1, 2, cols, cmask, P, PSTRIDE)
    n = (end - start).to(acc_t)
    log_n = tl.log(n)

    # Zero counts matter only for a zero part with p < 0 (whether its zero is unique), and
    # only for x's gradient: elsewhere this pass is empty.
    zeros_p = tl.zeros([BLOCK_K], acc_t)
    zeros_n = tl.zeros([BLOCK_K], acc_t)
    count_end = start
    if NEED_X:
        count = cmask & (((r_p == 0) & (p_p < 0)) | ((r_n == 0) & (p_n < 0)))
        count_end = tl.where(tl.max(count.to(tl.int32), axis=0) > 0, end, start)
    for r0 in range(start, count_end, BLOCK_E):
        rows, _, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        v = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                    other=0.0).to(acc_t)
        zeros_p += tl.sum(tl.where(mask & (v <= 0), 1.0, 0.0), axis=0)
        zeros_n += tl.sum(tl.where(mask & (v >= 0), 1.0, 0.0), axis=0)
    ga_p, k0_p = _part_factors(g, r_p, a_p, gout_p, p_p, t_p, b_p, log_n, zeros_p)
    ga_n, k0_n = _part_factors(g, r_n, a_n, gout_n, p_n, t_n, b_n, log_n, zeros_n)
    # Elements equal to 0 sit on both parts' kink: each part contributes half.
    half0 = 0.5 * (k0_p + k0_n)
    reg_p = (r_p > 0) & (r_p < inf)
    reg_n = (r_n > 0) & (r_n < inf)

    st_p = tl.zeros([BLOCK_K], acc_t)
    st_n = tl.zeros([BLOCK_K], acc_t)
    s1_p = tl.zeros([BLOCK_K], acc_t)
    s1_n = tl.zeros([BLOCK_K], acc_t)
    s2_p = tl.zeros([BLOCK_K], acc_t)
    s2_n = tl.zeros([BLOCK_K], acc_t)
    c_p = tl.zeros([BLOCK_K], acc_t)
    c_n = tl.zeros([BLOCK_K], acc_t)
    for r0 in range(start, end, BLOCK_E):
        rows, _, mask = tile_rows(perm_ptr, r0, end, cmask, HAS_PERM, BLOCK_E)
        v = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask,
                    other=0.0).to(acc_t)
        neg = v < 0
        pos = v > 0
        y = tl.abs(v)
        p = tl.where(neg, p_n[None, :], p_p[None, :])
        ref = tl.where(neg, r_n[None, :], r_p[None, :])
        regular = tl.where(neg, reg_n[None, :], reg_p[None, :])
        # y / r: 0 for a part without a regular reference (its factor is 0 or NaN).
        ratio = tl.where(regular, _divide(y, tl.where(regular, ref, 1.0)), 0.0)
        l = _log_ratio(y, ref, regular)
        z = tl.where(l == 0, 0.0, p * l)
        w = tl.exp(z)
        if NEED_X:
            # dG/dy = F w / ratio; at ratio == 0 the one-sided derivative [p == 1]; an
            # infinite one counts as 0.
            phi = tl.where(ratio == 0, tl.where(p == 1, 1.0, 0.0), w / ratio)
            phi = tl.where(phi == inf, 0.0, phi)
            a = tl.where(neg, ga_n[None, :], ga_p[None, :])
            d = tl.where(a != 0, a * phi, 0.0)
            d = tl.where(v == 0, half0[None, :], d)
            d = tl.where(v != v, v, d)
            tl.store(gx_ptr + rows[:, None] * stride_x + cols[None, :],
                     d.to(gx_ptr.dtype.element_ty), mask=mask)
        if NEED_P:
            wz = tl.where(w > 0, w * z, 0.0)
            finite = tl.abs(l) < inf
            st_p += tl.sum(tl.where(pos, wz, 0.0), axis=0)
            st_n += tl.sum(tl.where(neg, wz, 0.0), axis=0)
            s1_p += tl.sum(tl.where(pos, l, 0.0), axis=0)
            s1_n += tl.sum(tl.where(neg, l, 0.0), axis=0)
            s2_p += tl.sum(tl.where(pos, l * l, 0.0), axis=0)
            s2_n += tl.sum(tl.where(neg, l * l, 0.0), axis=0)
            c_p += tl.sum(tl.where(pos & finite, 1.0, 0.0), axis=0)
            c_n += tl.sum(tl.where(neg & finite, 1.0, 0.0), axis=0)
    if NEED_P:
        small_p = _param(prm_ptr, 0, 3, cols, cmask, P, PSTRIDE)
        small_n = _param(prm_ptr, 1, 3, cols, cmask, P, PSTRIDE)
        da_p = _grad_unit(g, gout_p, a_p, st_p, s1_p, s2_p, c_p, p_p, t_p, small_p,
                          _param(prm_ptr, 0, 4, cols, cmask, P, PSTRIDE),
                          _param(prm_ptr, 0, 5, cols, cmask, P, PSTRIDE), n, log_n)
        da_n = _grad_unit(g, gout_n, a_n, st_n, s1_n, s2_n, c_n, p_n, t_n, small_n,
                          _param(prm_ptr, 1, 4, cols, cmask, P, PSTRIDE),
                          _param(prm_ptr, 1, 5, cols, cmask, P, PSTRIDE), n, log_n)
        # Parameters learn from parts with a finite, positive value; out = G+ - G-, so the
        # negative part's gradients enter with a minus sign.
        db_p = tl.where((gout_p > 0) & (gout_p < inf), g * gout_p * log_n, 0.0)
        db_n = tl.where((gout_n > 0) & (gout_n < inf), g * gout_n * log_n, 0.0)
        tl.store(gp_ptr + base, da_p, mask=cmask)
        tl.store(gp_ptr + sk + base, db_p, mask=cmask)
        tl.store(gp_ptr + 2 * sk + base, -da_n, mask=cmask)
        tl.store(gp_ptr + 3 * sk + base, -db_n, mask=cmask)


def parameters(a_pos: Tensor, b_pos: Tensor, a_neg: Tensor, b_neg: Tensor,
               acc: torch.dtype) -> Tensor:
    """The kernels' parameter block ``[2, 6, P]`` (part, row, column; ``P`` = 1 when every
    parameter is shared, else the number of columns) in the accumulation dtype. The rows of
    a part: ``p``, ``t = 1/p``, ``beta``, ``[|p| < SMALL_P]`` and the factors of ``dG/da``,
    ``pi/2 (1 + t^2)`` and ``pi/4 (1 + p^2)`` (in the expansion's range)."""
    flat = [t.detach().reshape(-1).to(acc) for t in (a_pos, b_pos, a_neg, b_neg)]
    width = max(t.numel() for t in flat)
    a = torch.stack([flat[0].expand(width), flat[2].expand(width)])
    beta = torch.stack([flat[1].expand(width), flat[3].expand(width)])
    p, t = exponent(a)
    small = (p.abs() < SMALL_P[acc]).to(acc)
    return torch.stack([p, t, beta, small, HALF_PI * (1 + t * t), (HALF_PI / 2) * (1 + p * p)],
                       dim=1).contiguous()


def gnp_forward(x: Tensor, a_pos: Tensor, b_pos: Tensor, a_neg: Tensor, b_neg: Tensor,
                ptr: Tensor, perm: Tensor | None, size: int, block_k: int | None = None,
                block_e: int | None = None) -> tuple[Tensor, Tensor]:
    """GNP of ``x`` ``[E, K]`` (any float dtype) over the CSR sets with parameters
    ``[1, K]`` or ``[1, 1]`` per part: the ``[S, K]`` output and the ``[6, S, K]`` state
    ``(r, A, G)`` of the positive and the negative part, in the accumulation dtype."""
    x = x.contiguous()
    columns = x.size(1)
    acc = accumulation_dtype(x)
    if size == 0 or columns == 0 or x.size(0) == 0:
        return (torch.zeros(size, columns, dtype=acc, device=x.device),
                torch.zeros(6, size, columns, dtype=acc, device=x.device))
    prm = parameters(a_pos, b_pos, a_neg, b_neg, acc)
    width = prm.size(-1)
    out = torch.empty(size, columns, dtype=acc, device=x.device)
    state = torch.empty(6, size, columns, dtype=acc, device=x.device)
    bk, be = blocks(columns, block_k, block_e, tile=1024, max_k=64)
    _forward_kernel[(size, triton.cdiv(columns, bk))](
        x, ptr, x if perm is None else perm, prm, out, state, columns, size * columns, width,
        x.stride(0), HAS_PERM=perm is not None, PSTRIDE=int(width > 1),
        SAFE=_EXP_SAFE[acc], BLOCK_E=be, BLOCK_K=bk)
    return out, state


def gnp_backward(grad: Tensor, x: Tensor, a_pos: Tensor, b_pos: Tensor, a_neg: Tensor,
                 b_neg: Tensor, ptr: Tensor, perm: Tensor | None, state: Tensor, need_x: bool,
                 need_params: bool, block_k: int | None = None, block_e: int | None = None
                 ) -> tuple[Tensor | None, Tensor | None]:
    """``grad_x`` (``x``'s dtype, or ``None``) and the parameters' gradients ``[4, K]``
    per column for ``(a_pos, b_pos, a_neg, b_neg)`` (or ``None``), from the upstream
    gradient ``[S, K]`` and the forward's state."""
    x = x.contiguous()
    columns, size = x.size(1), state.size(1)
    acc = state.dtype
    grad_x = torch.empty_like(x) if need_x else None
    grad_params = None
    if not (need_x or need_params):
        return grad_x, grad_params
    if size == 0 or columns == 0 or x.size(0) == 0:
        return grad_x, (torch.zeros(4, columns, dtype=acc, device=x.device) if need_params
                        else None)
    prm = parameters(a_pos, b_pos, a_neg, b_neg, acc)
    width = prm.size(-1)
    partial = torch.empty(4, size, columns, dtype=acc, device=x.device) if need_params else None
    bk, be = blocks(columns, block_k, block_e, tile=1024, max_k=64)
    _backward_kernel[(size, triton.cdiv(columns, bk))](
        x, ptr, x if perm is None else perm, prm, grad.to(acc).contiguous(),
        state.contiguous(), x if grad_x is None else grad_x,
        state if partial is None else partial, columns, size * columns, width, x.stride(0),
        HAS_PERM=perm is not None, PSTRIDE=int(width > 1), NEED_X=need_x,
        NEED_P=need_params, BLOCK_E=be, BLOCK_K=bk)
    if partial is not None:
        grad_params = partial.sum(1)
    return grad_x, grad_params
