"""Generalized norm-based pooling (GNP) as a pure function with a closed-form backward."""

from __future__ import annotations

import torch
from torch import Tensor

from ..kernels import Segments, cpu, resolve_backend, segment_tensors
from ..kernels.gnp_composite import PartState, gnp_backward, gnp_forward
from ._sets import (
    check_features,
    compute_dtype,
    from_rows,
    make_segments,
    normalize_dim,
    per_column,
    reduce_like,
    to_rows,
)

#: Smallest allowed |p|: the function is singular at p = 0.
P_MIN = 0.1
#: Largest allowed |p|. With q = 1, max(X) * n^(-1/P_MAX) <= G <= max(X) for a set of
#: n non-negative elements, so p = P_MAX matches max within 1 - n^(-1/P_MAX)
#: (4.5% at n = 100, 6.7% at n = 1000).
P_MAX = 100.0

Param = float | Tensor


class GNPFunction(torch.autograd.Function):
    """Autograd for GNP on ``[E, K]`` rows; saves x and O(sets x columns) statistics."""

    @staticmethod
    def forward(ctx, x: Tensor, p_pos: Tensor, q_pos: Tensor, p_neg: Tensor, q_neg: Tensor,
                index: Tensor | None, ptr: Tensor | None, perm: Tensor | None,
                size: int, backend: str) -> Tensor:
        params = (p_pos, q_pos, p_neg, q_neg)
        if backend == "cpu":
            out, state = cpu.gnp_forward(x, ptr, perm, size, params)
            state = (state,)
        else:
            seg = Segments(x.size(0), size, index=index, ptr=ptr)
            out, pos, neg = gnp_forward(resolve_backend(backend), x, seg, *params)
            state = (*pos, *neg)
        ctx.save_for_backward(x, *params, index, ptr, perm, *state)
        ctx.size, ctx.backend = size, backend
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, p_pos, q_pos, p_neg, q_neg, index, ptr, perm, *state = ctx.saved_tensors
        params = (p_pos, q_pos, p_neg, q_neg)
        needs = tuple(ctx.needs_input_grad[:5])
        if ctx.backend == "cpu":
            grad_x, grad_params = cpu.gnp_backward(grad, x, ptr, perm, ctx.size, params, state[0],
                                                   needs[0], any(needs[1:]))
            grads = [grad_x] + ([None] * 4 if grad_params is None else list(grad_params))
        else:
            seg = Segments(x.size(0), ctx.size, index=index, ptr=ptr)
            pos, neg = PartState(*state[:3]), PartState(*state[3:])
            grads = gnp_backward(resolve_backend(ctx.backend), grad.contiguous(), x, seg,
                                 *params, pos, neg, needs)
        grad_x, *grad_params = grads
        grad_params = [reduce_like(g, p) if need else None
                       for g, p, need in zip(grad_params, params, needs[1:], strict=True)]
        return (grad_x, *grad_params, None, None, None, None, None)


def _check_p(name: str, p: Tensor) -> None:
    if torch.compiler.is_compiling():
        return
    mag = p.detach().abs()
    if not bool(torch.isfinite(p.detach()).all()) or bool(((mag < P_MIN) | (mag > P_MAX)).any()):
        raise ValueError(f"{name} must satisfy {P_MIN} <= |{name}| <= {P_MAX} "
                         f"(GNP is singular at p = 0), got {_values(p)}")


def _check_q(name: str, q: Tensor) -> None:
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(q.detach()).all()):
        raise ValueError(f"{name} must be finite, got {_values(q)}")


def _values(t: Tensor) -> str:
    flat = t.detach().reshape(-1)
    return str(flat.tolist() if flat.numel() <= 8 else flat[:8].tolist() + ["..."])


def gnp(
    x: Tensor,
    index: Tensor | None = None,
    ptr: Tensor | None = None,
    dim_size: int | None = None,
    dim: int = -2,
    p: Param = 1.0,
    q: Param = 0.0,
    p_neg: Param | None = None,
    q_neg: Param | None = None,
    backend: str | None = None,
) -> Tensor:
    r"""Generalized norm-based pooling of the sets of ``x`` along ``dim``.

    .. math::
        G_{p,q}(Y) = \Big(|X|^{-q} \sum_{y \in Y} y^p\Big)^{1/p}, \qquad
        \mathrm{GNP}(X) = G_{p,q}(\mathrm{relu}(X)) - G_{p^-,q^-}(\mathrm{relu}(-X))

    ``p=1, q=0`` is sum, ``p=1, q=1`` mean, ``p -> +inf, p_neg -> -inf`` max and
    ``p -> -inf, p_neg -> +inf`` min. Every case is computed in a scaled log form,
    so inputs from 1e-30 to 1e30 and any ``|p|`` in ``[P_MIN, P_MAX]`` give finite
    outputs and gradients wherever the true values are finite. Empty sets pool to 0.
    A zero element with ``p < 0`` makes its part exactly 0.

    Args:
        x: real input of any rank.
        index: set of each element along ``dim`` (any order).
        ptr: CSR boundaries of the sets (elements grouped by set). Without ``index``
            and ``ptr`` all elements form one set.
        dim_size: number of sets (inferred from ``index``/``ptr`` when omitted).
        dim: the dimension pooled over.
        p, q: exponent and size normalisation of the positive part: floats, or tensors
            with 1 or ``x.size(-1)`` (per-channel) values. ``p`` must satisfy
            ``P_MIN <= |p| <= P_MAX``.
        p_neg, q_neg: the same for the negative part (default: ``p`` and ``q``).
        backend: ``"cpu"`` (fused kernels), ``"scatter"``, ``"native"`` or ``None`` (the
            fastest one that supports ``x``).

    Returns:
        ``x`` with ``dim`` reduced to ``dim_size``, in ``x``'s dtype (fp16/bf16 inputs
        are computed in float32).
    """
    check_features("x", x)
    dim = normalize_dim(x, dim)
    dtype = compute_dtype(x)
    seg = make_segments(x.size(dim), index, ptr, dim_size, x.device)
    rows = to_rows(x, dim, dtype)
    p_neg = p if p_neg is None else p_neg
    q_neg = q if q_neg is None else q_neg
    params = []
    for name, value in (("p", p), ("q", q), ("p_neg", p_neg), ("q_neg", q_neg)):
        t = per_column(name, value, rows, dtype)
        (_check_p if name.startswith("p") else _check_q)(name, t)
        params.append(t)
    name = resolve_backend(backend, rows.data).name
    out = GNPFunction.apply(rows.data, *params, *segment_tensors(name, seg), seg.size, name)
    return from_rows(out, rows, seg.size, x.dtype)
