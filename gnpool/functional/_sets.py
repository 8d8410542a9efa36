"""Input checks and the [elements, columns] layout shared by the pooling functions."""

from __future__ import annotations

import math
import operator
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd import forward_ad

try:
    from torch._C._functorch import is_functorch_wrapped_tensor as _functorch_wrapped
except ImportError:     # pragma: no cover - a torch without functorch's C bindings
    def _functorch_wrapped(t: Tensor) -> bool:
        return False

from ..kernels import Segments

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def check_reverse_mode(op: str, *tensors: Tensor | None) -> None:
    """Raise ``NotImplementedError`` for tensors under forward-mode AD
    (``torch.func.jvp``, ``torch.autograd.forward_ad``) or another ``torch.func`` transform
    (``grad``, ``vmap``): the kernels have a reverse-mode derivative only, and a
    ``torch.library`` operator without a forward-mode one would give a zero tangent
    without any error. Not checked while ``torch.compile`` traces (a ``forward_ad`` dual
    tensor passed into a compiled function is not seen)."""
    if _compiling():
        return
    for t in tensors:
        if t is None:
            continue
        if _functorch_wrapped(t) or forward_ad.unpack_dual(t).tangent is not None:
            raise NotImplementedError(
                f"{op} has a reverse-mode derivative only: forward-mode AD "
                "(torch.func.jvp, torch.autograd.forward_ad) and the torch.func transforms "
                "(grad, vmap, jacrev) are not supported; use Tensor.backward or "
                "torch.autograd.grad")


def check_features(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")


def normalize_dim(x: Tensor, dim: int) -> int:
    if isinstance(dim, bool) or not hasattr(dim, "__index__"):
        raise TypeError(f"dim must be an int, got {dim!r}")
    dim = operator.index(dim)
    if not -x.dim() <= dim < x.dim():
        hint = (" (a 1-D x has one feature per element: pool it with dim=0, or pass "
                "x.unsqueeze(-1))" if x.dim() == 1 else "")
        raise ValueError(f"dim must be in [{-x.dim()}, {x.dim() - 1}] for x of shape "
                         f"{tuple(x.shape)}, got dim={dim}{hint}")
    return dim % x.dim()


def compute_dtype(x: Tensor) -> torch.dtype:
    """fp16/bf16 are pooled in float32."""
    return torch.float32 if x.dtype in _LOW_PRECISION else x.dtype


def probe(x: Tensor, dtype: torch.dtype) -> Tensor:
    """What backend choice looks at (``x``'s device, and ``dtype``), without converting x."""
    return x if x.dtype == dtype else x.new_empty(0, dtype=dtype)


def make_segments(num_elements: int, index: Tensor | None, ptr: Tensor | None,
                  dim_size: int | None, device: torch.device,
                  dim: int | None = None) -> Segments:
    """Validate ``index``/``ptr``/``dim_size`` and describe the sets.

    With neither ``index`` nor ``ptr`` all elements form one set. With both, ``ptr``
    wins (the elements are then known to be grouped). ``dim``, the pooled dimension of
    ``x``, only enters the error messages.
    """
    along = "along the pooled dimension" if dim is None else f"along dim {dim}"
    if isinstance(dim_size, Tensor) and dim_size.dim() == 0 and not (
            dim_size.is_floating_point() or dim_size.is_complex()
            or dim_size.dtype == torch.bool):
        # As PyG passes it while torch.jit.trace records (a constant of the trace there).
        dim_size = int(dim_size)
    if dim_size is not None:
        if isinstance(dim_size, bool) or not isinstance(dim_size, int) or dim_size < 0:
            raise ValueError(f"dim_size must be a non-negative int, got {dim_size!r}")
    if ptr is not None:
        if not isinstance(ptr, Tensor) or ptr.dim() != 1 or ptr.dtype not in (
                torch.int32, torch.int64) or ptr.numel() < 1:
            raise ValueError("ptr must be a 1-D int32/int64 tensor with at least one entry, "
                             f"got {_describe(ptr)}")
        size = ptr.numel() - 1
        if dim_size is not None and dim_size != size:
            raise ValueError(f"dim_size must equal len(ptr) - 1 = {size}, got {dim_size}")
        ptr = ptr.to(device=device, dtype=torch.long)
        if not _compiling():
            if int(ptr[0]) != 0 or int(ptr[-1]) != num_elements:
                raise ValueError(f"ptr must start at 0 and end at the number of elements "
                                 f"{along} ({num_elements}), got ptr[0]={int(ptr[0])}, "
                                 f"ptr[-1]={int(ptr[-1])}")
            if size > 0 and bool((ptr[1:] < ptr[:-1]).any()):
                raise ValueError("ptr must be non-decreasing")
        return Segments(num_elements, size, ptr=ptr)
    if index is None:
        size = 1 if dim_size is None else dim_size
        if size != 1:
            raise ValueError(f"without index or ptr all elements form one set, so dim_size "
                             f"must be 1, got {dim_size}")
        index = torch.zeros(num_elements, dtype=torch.long, device=device)
        return Segments(num_elements, 1, index=index, sorted=True)
    if not isinstance(index, Tensor) or index.dim() != 1 or index.dtype not in (
            torch.int32, torch.int64):
        raise ValueError(f"index must be a 1-D int32/int64 tensor, got {_describe(index)}")
    if index.numel() != num_elements:
        raise ValueError(f"index has {index.numel()} entries but x has {num_elements} "
                         f"elements {along}; expected one entry per element")
    index = index.to(device=device, dtype=torch.long)
    if index.numel() == 0:
        dim_size = 0 if dim_size is None else dim_size
    elif not _compiling():
        lo, hi = (int(v) for v in torch.aminmax(index))
        dim_size = hi + 1 if dim_size is None else dim_size
        if lo < 0 or hi >= dim_size:
            raise ValueError(f"index values must lie in [0, dim_size={dim_size}), "
                             f"got values in [{lo}, {hi}]")
    elif dim_size is None:
        dim_size = int(index.max()) + 1
    return Segments(num_elements, dim_size, index=index)


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"a tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return type(t).__name__


class Rows(NamedTuple):
    """``x`` rearranged as ``[elements, columns]`` and what undoes it."""
    data: Tensor
    shape: tuple  # x's shape with the pooled dimension moved first
    dim: int
    channels: int | None  # size of the last dimension when it is not the pooled one


def to_rows(x: Tensor, dim: int, dtype: torch.dtype) -> Rows:
    moved = x.movedim(dim, 0)
    data = moved.reshape(moved.size(0), math.prod(moved.shape[1:])).to(dtype).contiguous()
    channels = x.size(-1) if dim != x.dim() - 1 else None
    return Rows(data, tuple(moved.shape), dim, channels)


def from_rows(out: Tensor, rows: Rows, num_sets: int, dtype: torch.dtype) -> Tensor:
    return out.reshape((num_sets,) + rows.shape[1:]).movedim(0, rows.dim).to(dtype)


def per_column(name: str, value: object, rows: Rows, dtype: torch.dtype) -> Tensor:
    """A scalar or per-channel parameter as a ``[1, columns]`` or ``[1, 1]`` tensor."""
    device = rows.data.device
    if isinstance(value, Tensor):
        t = value.to(device=device, dtype=dtype)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        t = torch.tensor(float(value), device=device, dtype=dtype)
    else:
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    t = t.reshape(-1)
    if t.numel() == 1:
        return t.view(1, 1)
    if rows.channels is None or t.numel() != rows.channels:
        expected = "1" if rows.channels is None else f"1 or {rows.channels} (x.size(-1))"
        raise ValueError(f"{name} must have {expected} values, got shape "
                         f"{tuple(value.shape)}")
    columns = rows.data.size(1)
    return t.repeat(columns // rows.channels).view(1, columns)


def reduce_like(grad: Tensor | None, param: Tensor) -> Tensor | None:
    """Sum a ``[columns]`` gradient down to a parameter of shape ``[1, 1]`` or ``[1, K]``."""
    if grad is None:
        return None
    return grad.sum().view(1, 1) if param.numel() == 1 else grad.view_as(param)


def script_csr(x: Tensor, index: Tensor | None, ptr: Tensor | None, dim_size: int | None,
               dim: int) -> tuple[Tensor, Tensor | None, int]:
    """``(ptr, perm, size)`` of the sets along ``dim`` in TorchScript (no validation): a
    given ``ptr``, the ``gnpool::csr`` operator on an index in any order, or one set."""
    perm: Tensor | None = None
    if ptr is not None:
        csr_ptr = ptr.to(device=x.device, dtype=torch.long)
        return csr_ptr, perm, csr_ptr.numel() - 1
    if index is not None:
        index = index.to(device=x.device, dtype=torch.long)
        if dim_size is not None:
            size = dim_size
        else:
            size = int(index.max()) + 1 if index.numel() > 0 else 0
        csr_ptr, perm = torch.ops.gnpool.csr(index, size)
        return csr_ptr, perm, size
    return torch.tensor([0, x.size(dim)], device=x.device, dtype=torch.long), perm, 1
