"""AttSets: feature-wise attention pooling over sets, with a memory-light backward."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..kernels import Segments, resolve_backend, segment_tensors
from ..kernels.attsets_composite import attsets_backward, attsets_forward
from ._sets import (
    check_features,
    check_reverse_mode,
    compute_dtype,
    from_rows,
    make_segments,
    normalize_dim,
    probe,
    script_csr,
    to_rows,
)


class AttSetsFunction(torch.autograd.Function):
    """Autograd for AttSets on ``[E, K]`` rows on the torch backends (``native``,
    ``scatter``): the weights are recomputed in backward from per-set statistics instead
    of being stored. The fused backends go through ``torch.ops.gnpool`` instead."""

    @staticmethod
    def forward(ctx, x: Tensor, scores: Tensor, index: Tensor | None, ptr: Tensor | None,
                size: int, backend: str) -> Tensor:
        seg = Segments(x.size(0), size, index=index, ptr=ptr)
        out, *state = attsets_forward(resolve_backend(backend), x, scores, seg)
        ctx.save_for_backward(x, scores, index, ptr, out, *state)
        ctx.size, ctx.backend = size, backend
        return out

    @staticmethod
    @once_differentiable       # the closed-form backward is not itself differentiable
    def backward(ctx, grad: Tensor):
        x, scores, index, ptr, out, m, l = ctx.saved_tensors
        need_x, need_scores = ctx.needs_input_grad[:2]
        seg = Segments(x.size(0), ctx.size, index=index, ptr=ptr)
        grad_x, grad_scores = attsets_backward(resolve_backend(ctx.backend), grad.contiguous(),
                                               x, scores, seg, out, m, l, need_x, need_scores)
        return grad_x, grad_scores, None, None, None, None


# Backends whose AttSets kernels are torch.library operators (torch.ops.gnpool.*).
_OPERATOR_BACKENDS = ("cpu", "triton")


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype} on {value.device}"
    return type(value).__name__


def _check_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """``weight`` ``[F, F]`` or ``[1, F]`` and ``bias`` ``None``, ``[weight.size(0)]`` or
    ``[1]``, floating-point and on ``x``'s device (the fused kernels read exactly that many
    values, so a bias of another length must not reach them)."""
    features = x.size(-1)
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor of shape [{features}, {features}] or "
                        f"[1, {features}], got {_describe(weight)}")
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got dtype {weight.dtype}")
    if weight.dim() != 2 or weight.size(1) != features or weight.size(0) not in (1, features):
        raise ValueError(f"weight must have shape [{features}, {features}] or [1, {features}] "
                         f"for x with {features} features, got {tuple(weight.shape)}")
    if weight.device != x.device:
        raise ValueError(f"weight must be on x's device ({x.device}), got a weight on "
                         f"{weight.device}")
    if bias is None:
        return
    rows = weight.size(0)
    expected = "[1]" if rows == 1 else f"[{rows}] or [1]"
    if not isinstance(bias, Tensor):
        raise TypeError(f"bias must be None or a torch.Tensor of shape {expected}, got "
                        f"{_describe(bias)}")
    if not bias.is_floating_point():
        raise TypeError(f"bias must be a floating-point tensor, got dtype {bias.dtype}")
    if bias.dim() != 1 or bias.size(0) not in (1, rows):
        raise ValueError(f"bias must have shape {expected} for weight of shape "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    if bias.device != x.device:
        raise ValueError(f"bias must be on x's device ({x.device}), got a bias on {bias.device}")


def _score_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The dtype of scores from ``x`` and ``weight`` of dtypes ``a`` and ``b`` (as the
    operators' accumulation dtype): float64 if one is float64, else float32."""
    return torch.float64 if a == torch.float64 or b == torch.float64 else torch.float32


def attsets(
    x: Tensor,
    scores: Tensor,
    index: Tensor | None = None,
    ptr: Tensor | None = None,
    dim_size: int | None = None,
    dim: int = -2,
    backend: str | None = None,
) -> Tensor:
    r"""Attention pooling with a separate softmax per channel (AttSets).

    .. math::
        s_i = \mathrm{softmax}_{j \in \text{set}}(z_j)_i \ \text{(per channel)}, \qquad
        \mathrm{AttSets}(X) = \sum_i s_i \odot x_i

    A one-element set passes through unchanged, empty sets pool to 0, and the softmax is
    computed relative to each set's largest score, so any finite score magnitude is safe.
    The backward recomputes the weights, saving only ``x``, ``scores`` and per-set
    statistics.

    Masking with scores: a score of ``-inf`` (an additive mask) gives its element weight
    exactly 0 in that channel, and a set whose scores in a channel are all ``-inf`` pools
    to 0 there, like an empty set, with zero gradients (instead of the NaN of a softmax
    over only ``-inf``). A masked element still enters as ``0 * x``, so its features must
    be finite. ``+inf`` and NaN scores give NaN. All backends agree on this.

    Args:
        x: features of any rank, pooled along ``dim``.
        scores: attention scores, the shape of ``x``, or with a last dimension of 1 (one
            score per element, shared by all channels).
        index: set of each element along ``dim`` (any order).
        ptr: CSR boundaries of the sets. Without ``index`` and ``ptr`` all elements form one
            set.
        dim_size: number of sets (inferred when omitted).
        dim: the dimension pooled over.
        backend: ``"cpu"``, ``"triton"``, ``"scatter"``, ``"native"`` or ``None`` (the
            fastest one that supports the input: ``triton`` for CUDA tensors, ``cpu`` for
            CPU tensors).

    Raises:
        NotImplementedError: an input under forward-mode AD (``torch.func.jvp``,
            ``torch.autograd.forward_ad``) or a ``torch.func`` transform (``grad``,
            ``vmap``): the kernels have a reverse-mode derivative only.
    """
    check_features("x", x)
    check_features("scores", scores)
    if scores.shape != x.shape:
        if scores.shape[:-1] != x.shape[:-1] or scores.size(-1) != 1:
            raise ValueError(f"scores must have the shape of x {tuple(x.shape)} or "
                             f"{tuple(x.shape[:-1]) + (1,)}, got {tuple(scores.shape)}")
        scores = scores.expand_as(x)
    dim = normalize_dim(x, dim)
    check_reverse_mode("AttSets", x, scores)
    dtype = torch.promote_types(compute_dtype(x), compute_dtype(scores))
    seg = make_segments(x.size(dim), index, ptr, dim_size, x.device, dim)
    name = resolve_backend(backend, probe(x, dtype), op="attsets").name
    if name == "triton" and x.dtype == scores.dtype:
        dtype = x.dtype  # the kernels read fp16/bf16 directly and accumulate in float32
    rows = to_rows(x, dim, dtype)
    score_rows = to_rows(scores, dim, dtype)
    if name in _OPERATOR_BACKENDS:
        _, csr_ptr, perm = segment_tensors(name, seg)
        out = torch.ops.gnpool.attsets_forward(rows.data, score_rows.data, csr_ptr, perm,
                                               seg.size, name)[0]
    else:
        index, ptr, _ = segment_tensors(name, seg)
        out = AttSetsFunction.apply(rows.data, score_rows.data, index, ptr, seg.size, name)
    return from_rows(out, rows, seg.size, x.dtype)


def attsets_linear(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    index: Tensor | None = None,
    ptr: Tensor | None = None,
    dim_size: int | None = None,
    dim: int = -2,
    backend: str | None = None,
) -> Tensor:
    r"""AttSets with a linear scoring layer: ``attsets(x, act(x W^T + b), ...)``.

    On the fused CPU kernels each element's scores are computed from the element while it
    is in cache and recomputed in backward, so no ``[elements, channels]`` tensor besides
    ``x`` and its gradient is ever held; elsewhere this is exactly the composition of
    ``linear`` and :func:`attsets`.

    ``x`` and ``weight`` may have different floating dtypes: the scores are then computed in
    float64 if one of them is float64, else in float32 (fp16/bf16 ``x`` in float32, as the
    pooling). ``bias`` is converted to the dtype of the scores; the output has ``x``'s dtype.

    Args:
        x: features ``[..., F]`` pooled along ``dim``.
        weight: ``[F, F]`` (one score per channel) or ``[1, F]`` (one score per element), a
            floating-point tensor on ``x``'s device.
        bias: ``None``, or a floating-point tensor on ``x``'s device of shape
            ``[weight.size(0)]``, or ``[1]`` (added to every score, as
            ``torch.nn.functional.linear`` broadcasts it).
        activation: ``None`` or ``"tanh"`` applied to the scores.
        index, ptr, dim_size, dim, backend: as in :func:`attsets`.

    Raises:
        TypeError: ``x``, ``weight`` or ``bias`` not a tensor, or not floating-point.
        ValueError: ``weight`` or ``bias`` of another shape than above or on another device
            than ``x``, an unknown ``activation``, and the errors of :func:`attsets`.
        NotImplementedError: as in :func:`attsets` (forward-mode AD, ``torch.func``).
    """
    check_features("x", x)
    _check_linear(x, weight, bias)
    if activation not in (None, "tanh"):
        raise ValueError(f"activation must be None or 'tanh', got {activation!r}")
    dim = normalize_dim(x, dim)
    name = resolve_backend(backend, probe(x, compute_dtype(x)), op="attsets").name
    # x and weight of different dtypes: the scores in their accumulation dtype.
    mixed = None if x.dtype == weight.dtype else _score_dtype(x.dtype, weight.dtype)
    # The C++ kernels compute the scores in x's dtype (the operator converts x to the
    # accumulation dtype of x and weight first); Triton's in the accumulation dtype.
    fused = x.dim() == 2 and dim == 0 and name in _OPERATOR_BACKENDS
    if not fused:
        score_x = x if mixed is None else x.to(mixed)
        if mixed is not None:
            weight = weight.to(mixed)
        if bias is not None and bias.dtype != score_x.dtype:
            bias = bias.to(score_x.dtype)
        scores = torch.nn.functional.linear(score_x, weight, bias)
        if activation == "tanh":
            scores = torch.tanh(scores)
        return attsets(x, scores, index=index, ptr=ptr, dim_size=dim_size, dim=dim,
                       backend=backend)
    if mixed is not None and name == "cpu":
        weight = weight.to(mixed)   # the operator then computes in that dtype
    check_reverse_mode("AttSets", x, weight, bias)
    if bias is not None and bias.size(0) != weight.size(0):
        bias = bias.expand(weight.size(0))  # a [1] bias for every score (the kernels read F)
    seg = make_segments(x.size(0), index, ptr, dim_size, x.device, 0)
    _, csr_ptr, perm = segment_tensors(name, seg)
    out = torch.ops.gnpool.attsets_linear_forward(x.contiguous(), weight, bias, activation,
                                                  csr_ptr, perm, seg.size, name)[0]
    return out.to(x.dtype)


def attsets_linear_script(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    activation: str | None,
    index: Tensor | None,
    ptr: Tensor | None,
    dim_size: int | None,
    dim: int,
) -> Tensor:
    """:func:`attsets_linear` in TorchScript: the sets become CSR with the ``gnpool::csr``
    operator and the kernels run through ``torch.ops.gnpool`` with ``backend="auto"`` (the
    fused kernels of the tensors' device, chosen at run time). The sets are not validated
    beyond what the operators check; ``x``'s dtype and the shapes of ``weight`` and
    ``bias`` are (as in :func:`attsets_linear`, a ``[1]`` bias is added to every score),
    their errors reaching Python as ``torch.jit.Error`` naming the ``TypeError`` or
    ``ValueError``."""
    if not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor (float16, bfloat16, float32 or "
                        "float64), got an integer, boolean or complex one")
    if not weight.is_floating_point():
        raise TypeError("weight must be a floating-point tensor, got an integer, boolean or "
                        "complex one")
    features = x.size(-1)
    rows = weight.size(0) if weight.dim() == 2 else -1
    if rows == -1 or weight.size(1) != features or (rows != 1 and rows != features):
        raise ValueError(f"weight must have shape [F, F] or [1, F] for x with F={features} "
                         f"features, got {weight.shape}")
    if bias is not None:
        if bias.dim() != 1 or (bias.size(0) != 1 and bias.size(0) != rows):
            raise ValueError(f"bias must have shape [weight.size(0)] = [{rows}] or [1], got "
                             f"{bias.shape}")
    dim = dim % x.dim()
    csr_ptr, perm, size = script_csr(x, index, ptr, dim_size, dim)
    if x.dim() == 2 and dim == 0:
        if bias is not None and bias.size(0) != rows:
            bias = bias.expand(rows)
        out = torch.ops.gnpool.attsets_linear_forward(x.contiguous(), weight, bias, activation,
                                                      csr_ptr, perm, size, "auto")[0]
        return out.to(x.dtype)
    score_x = x
    if weight.dtype != x.dtype:
        score_x = x.to(_score_dtype(x.dtype, weight.dtype))
        weight = weight.to(score_x.dtype)
    if bias is not None and bias.dtype != score_x.dtype:
        bias = bias.to(score_x.dtype)
    scores = torch.nn.functional.linear(score_x, weight, bias)
    if activation is not None and activation == "tanh":
        scores = torch.tanh(scores)
    moved = x.movedim(dim, 0)
    shape = list(moved.shape)
    rows_x = moved.reshape(shape[0], -1)
    score_rows = scores.expand_as(x).movedim(dim, 0).reshape(shape[0], -1)
    if score_rows.dtype != rows_x.dtype:
        common = _score_dtype(rows_x.dtype, score_rows.dtype)
        rows_x, score_rows = rows_x.to(common), score_rows.to(common)
    out = torch.ops.gnpool.attsets_forward(rows_x, score_rows, csr_ptr, perm, size, "auto")[0]
    shape[0] = size
    return out.reshape(shape).movedim(0, dim).to(x.dtype)
