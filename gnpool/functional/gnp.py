"""Generalized norm-based pooling (GNP) as a pure function with a closed-form backward."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..kernels import Segments, resolve_backend, segment_tensors
from ..kernels.gnp_composite import PartState, gnp_backward, gnp_forward
from ._sets import (
    Rows,
    check_features,
    check_reverse_mode,
    compute_dtype,
    from_rows,
    make_segments,
    normalize_dim,
    per_column,
    probe,
    reduce_like,
    script_csr,
    to_rows,
)

Param = float | Tensor


class GNPFunction(torch.autograd.Function):
    """Autograd for GNP on ``[E, K]`` rows in its native coordinates ``(p_unit, beta)``
    per part on the torch backends (``native``, ``scatter``); saves x and O(sets x
    columns) statistics. The fused backends go through ``torch.ops.gnpool`` instead."""

    @staticmethod
    def forward(ctx, x: Tensor, a_pos: Tensor, b_pos: Tensor, a_neg: Tensor, b_neg: Tensor,
                index: Tensor | None, ptr: Tensor | None, size: int, backend: str) -> Tensor:
        params = (a_pos, b_pos, a_neg, b_neg)
        seg = Segments(x.size(0), size, index=index, ptr=ptr)
        out, pos, neg = gnp_forward(resolve_backend(backend), x, seg, *params)
        ctx.save_for_backward(x, *params, index, ptr, *pos, *neg)
        ctx.size, ctx.backend = size, backend
        return out

    @staticmethod
    @once_differentiable       # the closed-form backward is not itself differentiable
    def backward(ctx, grad: Tensor):
        x, a_pos, b_pos, a_neg, b_neg, index, ptr, *state = ctx.saved_tensors
        params = (a_pos, b_pos, a_neg, b_neg)
        needs = tuple(ctx.needs_input_grad[:5])
        seg = Segments(x.size(0), ctx.size, index=index, ptr=ptr)
        pos, neg = PartState(*state[:3]), PartState(*state[3:])
        grad_x, *grad_params = gnp_backward(resolve_backend(ctx.backend), grad.contiguous(), x,
                                            seg, *params, pos, neg, needs)
        grad_params = [reduce_like(g, p) if need else None
                       for g, p, need in zip(grad_params, params, needs[1:], strict=True)]
        return (grad_x, *grad_params, None, None, None, None)


# Backends whose GNP kernels are torch.library operators (torch.ops.gnpool.*).
_OPERATOR_BACKENDS = ("cpu", "triton")


def _eager() -> bool:
    return not torch.compiler.is_compiling()


def _values(t: Tensor) -> str:
    flat = t.detach().reshape(-1)
    return str(flat.tolist() if flat.numel() <= 8 else flat[:8].tolist() + ["..."])


def _check_unit(name: str, a: Tensor) -> None:
    if _eager():
        detached = a.detach()
        if not bool(((detached >= -1) & (detached <= 1)).all()):
            raise ValueError(f"{name} must lie in [-1, 1] (p = tan(pi * {name} / 2)), "
                             f"got {_values(a)}")


def _check_finite(name: str, value: Tensor) -> None:
    if _eager() and not bool(torch.isfinite(value.detach()).all()):
        raise ValueError(f"{name} must be finite, got {_values(value)}")


def p_to_unit(p: Tensor) -> Tensor:
    """``p_unit = 2 atan(p) / pi`` in [-1, 1], exactly +-1 at ``p = +-inf``."""
    return torch.where(torch.isinf(p), torch.sign(p), torch.atan(p) / (math.pi / 2))


def q_to_beta(p: Tensor, q: Tensor) -> Tensor:
    """``beta = (1 - q) / p``: 0 at ``p = +-inf`` (q has no effect on max and min) and at
    ``p = 0``, where only ``q = 1`` is defined."""
    safe = torch.where(p == 0, torch.ones_like(p), p)
    return torch.where(p == 0, torch.zeros_like(p), (1 - q) / safe)


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

    (Ko, Kwon, Shin & Lee, "Learning to Pool in Graph Neural Networks for
    Extrapolation", 2021.) ``p=1, q=0`` is sum, ``p=1, q=1`` mean, ``p=2, q=0`` the L2
    norm, ``p=inf, p_neg=-inf`` exactly max and ``p=-inf, p_neg=inf`` exactly min (``q``
    has no effect there); ``p=0`` with ``q=1`` is the geometric mean. This is
    :func:`gnp_unit` with ``p_unit = 2 atan(p) / pi`` and ``beta = (1 - q) / p``.

    Computed in a scaled log form: inputs from 1e-30 to 1e30, zeros and ties give
    finite outputs and gradients wherever the true values are finite, also for a set
    spanning more than float32's range of ratios (``log(y) - log(r)`` where ``y / r``
    would overflow; within 30% of the float64 value for ``|p| < 0.01``, where a cumulant
    expansion is used, and to float accuracy elsewhere, with one exception: where ``q``
    is not 1 and ``|p|`` is small, the size term ``n^((1 - q) / p)`` amplifies rounding
    by ``1 / |p|``, and in a set with a zero (no expansion) float32 on the CPU kernels
    keeps about ``1e-7 / |p|`` relative accuracy: 7% off at ``p = 1e-6, q = 0`` for a set
    of one positive element and a zero, nothing useful below ``p = 1e-7`` (the other
    backends fare no better in general); float64 holds there). Empty sets pool
    to 0; a zero element with ``p <= 0`` makes its part exactly 0. Infinite inputs give
    the limit: an infinite part for ``p >= 0`` (NaN for ``p = 0`` with a zero in the same
    part, and for ``+inf - inf`` across the parts), ignored by ``p < 0`` unless the whole
    part is infinite; an infinite part passes no gradient. NaN stays in its set.

    Args:
        x: real input of any rank (fp16/bf16 are computed in float32).
        index: set of each element along ``dim`` (any order), int32/int64.
        ptr: CSR boundaries of the sets (elements grouped by set). Without ``index``
            and ``ptr`` all elements form one set.
        dim_size: number of sets (inferred from ``index``/``ptr`` when omitted).
        dim: the dimension pooled over.
        p, q: exponent (any real or +-inf) and size normalisation (finite) of the
            positive part: floats, or tensors with 1 or ``x.size(-1)`` (per-channel)
            values. ``p = 0`` requires ``q = 1``.
        p_neg, q_neg: the same for the negative part (default: ``p`` and ``q``).
        backend: ``"cpu"`` (fused kernels), ``"triton"``, ``"scatter"``, ``"native"`` or
            ``None`` (the fastest one that supports ``x``: ``triton`` for CUDA tensors,
            ``cpu`` for CPU tensors).

    Returns:
        ``x`` with ``dim`` reduced to ``dim_size``, in ``x``'s dtype.

    Raises:
        TypeError: ``x`` is not a floating-point tensor, or a parameter is neither a
            float nor a tensor.
        ValueError: bad ``index``/``ptr``/``dim_size``/``dim``, a NaN ``p``, a
            non-finite ``q``, ``p = 0`` with ``q != 1``, or a parameter whose size is
            neither 1 nor ``x.size(-1)``.
        NotImplementedError: an input or parameter under forward-mode AD
            (``torch.func.jvp``, ``torch.autograd.forward_ad``) or a ``torch.func``
            transform (``grad``, ``vmap``): the kernels have a reverse-mode derivative
            only (``Tensor.backward``, ``torch.autograd.grad``).
    """
    check_features("x", x)
    dtype = compute_dtype(x)
    dim = normalize_dim(x, dim)
    chosen = resolve_backend(backend, probe(x, dtype), op="gnp").name
    rows = _rows(x, dim, dtype, chosen)
    p_neg = p if p_neg is None else p_neg
    q_neg = q if q_neg is None else q_neg
    converted = []
    for p_name, p_value, q_name, q_value in (("p", p, "q", q), ("p_neg", p_neg, "q_neg", q_neg)):
        pt = per_column(p_name, p_value, rows, dtype)
        qt = per_column(q_name, q_value, rows, dtype)
        if _eager():
            if bool(pt.detach().isnan().any()):
                raise ValueError(f"{p_name} must be a number or +-inf, got {_values(pt)}")
            _check_finite(q_name, qt)
            if bool(((pt.detach() == 0) & (qt.detach() != 1)).any()):
                raise ValueError(f"{p_name} = 0 is defined only with {q_name} = 1 (the "
                                 f"geometric mean), got {q_name}={_values(qt)}")
        converted += [p_to_unit(pt), q_to_beta(pt, qt)]
    return _pool(x, index, ptr, dim_size, dim, rows, converted, chosen)


def gnp_unit(
    x: Tensor,
    index: Tensor | None = None,
    ptr: Tensor | None = None,
    dim_size: int | None = None,
    dim: int = -2,
    p_unit: Param = 0.5,
    beta: Param = 1.0,
    p_neg_unit: Param | None = None,
    beta_neg: Param | None = None,
    backend: str | None = None,
) -> Tensor:
    r"""GNP in its native coordinates: a size-scaled power mean per part.

    .. math::
        G(Y) = |X|^{\beta} \Big(\frac{1}{|X|} \sum_{y \in Y} y^p\Big)^{1/p}, \quad
        p = \tan(\pi a / 2), \qquad
        \mathrm{GNP}(X) = G_{a,\beta}(\mathrm{relu}(X)) - G_{a^-,\beta^-}(\mathrm{relu}(-X))

    ``a`` (``p_unit``) in [-1, 1] covers every exponent: ``a = 1`` is exactly max,
    ``a = -1`` exactly min, ``a = 0`` the geometric mean, ``a = 1/2`` (p = 1) the mean
    and, with ``beta = 1``, the sum; ``beta = 1/p`` gives the L^p norm. The function and
    its gradients for ``x``, ``a`` and ``beta`` are finite and continuous over the whole
    range, ends included, which is what :class:`~gnpool.GNPAggregation` trains. The
    same as :func:`gnp` with ``q = 1 - beta * p``; see there for the arguments, special
    values and errors.

    Args:
        p_unit, beta: exponent in [-1, 1] and size exponent (finite) of the positive
            part: floats or tensors with 1 or ``x.size(-1)`` values.
        p_neg_unit, beta_neg: the same for the negative part (default: the positive
            part's).
    """
    return gnp_unit_clamped(x, index, ptr, dim_size, dim, p_unit, beta, p_neg_unit, beta_neg,
                            backend, check_units=True)


def gnp_unit_clamped(x: Tensor, index: Tensor | None, ptr: Tensor | None,
                     dim_size: int | None, dim: int, p_unit: Param, beta: Param,
                     p_neg_unit: Param | None, beta_neg: Param | None, backend: str | None,
                     check_units: bool = False) -> Tensor:
    """:func:`gnp_unit` for callers whose ``p_unit`` values lie in [-1, 1] by construction
    (:class:`~gnpool.GNPAggregation` clamps them): without ``check_units`` the range check,
    a host synchronisation per call, is skipped. ``beta`` is still checked to be finite,
    and ``p_unit`` not to be NaN (one synchronisation for the four parameters)."""
    check_features("x", x)
    dtype = compute_dtype(x)
    dim = normalize_dim(x, dim)
    chosen = resolve_backend(backend, probe(x, dtype), op="gnp").name
    rows = _rows(x, dim, dtype, chosen)
    p_neg_unit = p_unit if p_neg_unit is None else p_neg_unit
    beta_neg = beta if beta_neg is None else beta_neg
    names = ("p_unit", "beta", "p_neg_unit", "beta_neg")
    params = [per_column(name, value, rows, dtype)
              for name, value in zip(names, (p_unit, beta, p_neg_unit, beta_neg), strict=True)]
    if check_units:
        for name, t in zip(names, params, strict=True):
            if name.endswith("unit"):
                _check_unit(name, t)
    if _eager():
        # Finite betas and no NaN exponent (a NaN p_unit, which clamping keeps, would
        # pool its part to 0): one host synchronisation for the four, the names on failure.
        ok = torch.stack([(~t.detach().isnan()).all() if name.endswith("unit")
                          else torch.isfinite(t.detach()).all()
                          for name, t in zip(names, params, strict=True)])
        if not bool(ok.all()):
            for name, t in zip(names, params, strict=True):
                if name.endswith("unit"):
                    if bool(t.detach().isnan().any()):
                        raise ValueError(f"{name} must be a number in [-1, 1], got "
                                         f"{_values(t)}")
                else:
                    _check_finite(name, t)
    return _pool(x, index, ptr, dim_size, dim, rows, params, chosen)


def _rows(x: Tensor, dim: int, dtype: torch.dtype, backend: str) -> Rows:
    # The Triton kernels read fp16/bf16 directly and accumulate in float32.
    return to_rows(x, dim, x.dtype if backend == "triton" else dtype)


def _pool(x: Tensor, index: Tensor | None, ptr: Tensor | None, dim_size: int | None,
          dim: int, rows: Rows, params: list[Tensor], backend: str) -> Tensor:
    check_reverse_mode("GNP", x, *params)
    seg = make_segments(x.size(dim), index, ptr, dim_size, x.device, dim)
    if backend in _OPERATOR_BACKENDS:
        _, csr_ptr, perm = segment_tensors(backend, seg)
        out = torch.ops.gnpool.gnp_forward(rows.data, *params, csr_ptr, perm, seg.size,
                                           backend)[0]
    else:
        index, ptr, _ = segment_tensors(backend, seg)
        out = GNPFunction.apply(rows.data, *params, index, ptr, seg.size, backend)
    return from_rows(out, rows, seg.size, x.dtype)


def _script_column(value: Tensor, columns: int, dtype: torch.dtype) -> Tensor:
    # A [channels] parameter as [1, 1] (shared) or [1, columns] (repeated over the
    # columns of the batch dimensions, as per_column does).
    flat = value.to(dtype).reshape(-1)
    if flat.numel() == 1:
        return flat.view(1, 1)
    return flat.repeat(columns // flat.numel()).view(1, columns)


def gnp_unit_script(
    x: Tensor,
    p_unit: Tensor,
    beta: Tensor,
    p_neg_unit: Tensor,
    beta_neg: Tensor,
    index: Tensor | None,
    ptr: Tensor | None,
    dim_size: int | None,
    dim: int,
) -> Tensor:
    """:func:`gnp_unit` in TorchScript, for tensor parameters with 1 value or one per
    channel (``x.size(-1)``, pooled along another dimension): the sets become CSR with the
    ``gnpool::csr`` operator and the kernels run through ``torch.ops.gnpool.gnp_forward``
    with ``backend="auto"`` (the fused kernels of the tensors' device, chosen at run time).
    Inputs are not validated beyond their dtype and what the operators check.

    Raises:
        TypeError: ``x`` is not a floating-point tensor."""
    if not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor (float16, bfloat16, float32 or "
                        "float64), got an integer or boolean one")
    dim = dim % x.dim()
    csr_ptr, perm, size = script_csr(x, index, ptr, dim_size, dim)
    dtype = x.dtype
    if dtype == torch.float16 or dtype == torch.bfloat16:
        dtype = torch.float32
    moved = x.movedim(dim, 0)
    shape = list(moved.shape)
    rows = moved.reshape(shape[0], -1).contiguous()
    columns = rows.size(1)
    out = torch.ops.gnpool.gnp_forward(
        rows, _script_column(p_unit, columns, dtype), _script_column(beta, columns, dtype),
        _script_column(p_neg_unit, columns, dtype), _script_column(beta_neg, columns, dtype),
        csr_ptr, perm, size, "auto")[0]
    shape[0] = size
    return out.reshape(shape).movedim(0, dim).to(x.dtype)
