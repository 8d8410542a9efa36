"""Fused CPU kernels for GNP and AttSets (``csrc/``, built at install) called through ctypes.

One pass over the input per reduction sweep, per-set statistics kept in cache, and a
backward that reads x once and writes its gradient once. Used for contiguous float32 /
float64 CPU tensors. Called through the ``torch.ops.gnpool`` operators (``ops.py``), which
torch.compile and torch.export trace and TorchScript calls.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from .segments import Segments

name = "cpu"


_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "gnpool_gnp_forward": [_P, _P, _P, _I64, _I64, _P, _P, _P, _P, _I64, _P, _P, _INT],
    "gnpool_gnp_backward": [_P, _P, _P, _I64, _I64, _P, _P, _P, _P, _I64, _P, _P, _P, _P, _INT],
    "gnpool_attsets_forward": [_P, _P, _P, _P, _I64, _I64, _P, _P, _P, _INT],
    "gnpool_attsets_backward": [_P, _P, _P, _P, _I64, _I64, _P, _P, _P, _P, _P, _P, _INT],
    "gnpool_attsets_linear_forward": [_P, _P, _P, _I64, _I64, _P, _P, _I64, _INT, _P, _P, _P,
                                      _INT],
    "gnpool_attsets_linear_backward": [_P, _P, _P, _I64, _I64, _P, _P, _P, _I64, _INT, _P, _P,
                                       _P, _P, _P, _P, _INT],
}
_ABI_VERSION = 5


def _levels() -> list[str]:
    # Builds of csrc/ per instruction-set level (setup.py), best first.
    capability = torch.backends.cpu.get_cpu_capability()
    levels = ["generic"]
    if capability.startswith("AVX2") or capability.startswith("AVX512"):
        levels.insert(0, "avx2")
    if capability.startswith("AVX512"):
        levels.insert(0, "avx512")
    return levels


def _load() -> ctypes.CDLL | None:
    here = Path(__file__).parent
    for path in (p for level in _levels() for p in sorted(here.glob(f"_cpu_{level}.*so"))):
        try:
            lib = ctypes.CDLL(str(path))
            if lib.gnpool_abi_version() != _ABI_VERSION:
                continue
        except (OSError, AttributeError):
            continue
        for prefix, argtypes in _SIGNATURES.items():
            for suffix in ("f32", "f64"):
                fn = getattr(lib, f"{prefix}_{suffix}")
                fn.argtypes, fn.restype = argtypes, None
        lib.gnpool_csr_from_index.argtypes = [_P, _I64, _I64, _P, _P]
        lib.gnpool_csr_from_index.restype = _INT
        lib.gnpool_check_ptr.argtypes = [_P, _I64, _I64]
        lib.gnpool_check_ptr.restype = _INT
        return lib
    return None


_lib = _load()
available = _lib is not None
#: The file the kernels were loaded from (None when no build is usable).
library = None if _lib is None else _lib._name
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def supports(x: Tensor) -> bool:
    """Whether these kernels can pool ``x`` (``[E, K]`` rows)."""
    return available and x.device.type == "cpu" and x.dtype in _DTYPES


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def csr(seg: Segments) -> tuple[Tensor, Tensor | None]:
    """``(ptr, perm)`` of the sets: ``perm`` is ``None`` when elements are already grouped."""
    if seg.ptr is not None:
        return seg.ptr.contiguous(), None
    return csr_from_index(seg.index, seg.size)


def csr_from_index(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(ptr, perm)`` of an int64 index in any order by a stable counting sort (O(E))."""
    index = index.contiguous()
    ptr = torch.empty(size + 1, dtype=torch.long)
    perm = torch.empty(index.numel(), dtype=torch.long)
    if _lib.gnpool_csr_from_index(_p(index), index.numel(), size, _p(ptr), _p(perm)):
        raise ValueError(f"index values must lie in [0, {size})")
    return ptr, perm


def _sets(rows: int, ptr: Tensor, perm: Tensor | None, size: int
          ) -> tuple[Tensor, Tensor | None]:
    """``(ptr, perm)`` as the kernels read them, checked first: they index ``x`` through
    both without bounds checks, so sets that do not describe its ``rows`` elements would
    read and write outside it (the Python-side checks of the modules and functions are
    skipped in TorchScript and under torch.compile; the operators are public too).
    ``ptr``: ``size + 1`` int64 offsets on the CPU, from 0 to ``rows``, non-decreasing;
    ``perm`` (``None`` or an empty tensor: the elements are grouped already): ``rows``
    int64 element numbers, as :func:`csr_from_index` makes them (their values are not
    checked). Raises ``ValueError`` naming what is wrong."""
    if size < 0:
        raise ValueError(f"size (the number of sets) must be >= 0, got {size}")
    if ptr.dtype != torch.long or ptr.device.type != "cpu" or ptr.dim() != 1 \
            or ptr.numel() != size + 1:
        raise ValueError(f"ptr must be a 1-D int64 CPU tensor of size + 1 = {size + 1} "
                         f"offsets, got {ptr.dtype} of shape {tuple(ptr.shape)} on "
                         f"{ptr.device}")
    ptr = ptr.contiguous()
    # In C: a loop over the offsets costs less than one torch or numpy call.
    error = _lib.gnpool_check_ptr(_p(ptr), size, rows)
    if error in (1, 2):
        raise ValueError(f"ptr must start at 0 and end at the number of elements ({rows}), "
                         f"got ptr[0]={int(ptr[0])}, ptr[-1]={int(ptr[-1])}")
    if error:
        raise ValueError("ptr must be non-decreasing")
    if perm is not None and (perm.numel() > 0 or rows == 0):
        if perm.dtype != torch.long or perm.device.type != "cpu" or perm.dim() != 1 \
                or perm.numel() != rows:
            raise ValueError(f"perm must be a 1-D int64 CPU tensor with one entry per "
                             f"element ({rows}), got {perm.dtype} of shape "
                             f"{tuple(perm.shape)} on {perm.device}")
        return ptr, perm.contiguous()
    return ptr, None


def _params(x: Tensor, params: tuple[Tensor, ...]) -> tuple[list[Tensor], int]:
    flat = [p.detach().reshape(-1).to(x.dtype).contiguous() for p in params]
    stride = 0 if all(p.numel() == 1 for p in flat) else 1
    columns = x.size(1)
    if stride:
        flat = [p.expand(columns).contiguous() for p in flat]
    return flat, stride


def gnp_forward(x: Tensor, ptr: Tensor, perm: Tensor | None, size: int,
                params: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
    """GNP of ``x`` per set; returns the output and the ``[6, S, K]`` backward state."""
    x = x.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, size)
    columns = x.size(1)
    flat, stride = _params(x, params)
    out = x.new_empty(size, columns)
    state = x.new_empty(6, size, columns)
    fn = getattr(_lib, f"gnpool_gnp_forward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(ptr), _p(perm), size, columns, *(_p(p) for p in flat), stride, _p(out),
       _p(state), torch.get_num_threads())
    return out, state


def gnp_backward(grad: Tensor, x: Tensor, ptr: Tensor, perm: Tensor | None, size: int,
                 params: tuple[Tensor, ...], state: Tensor, need_x: bool, need_params: bool
                 ) -> tuple[Tensor | None, Tensor | None]:
    """``grad_x`` ``[E, K]`` and the parameter gradients ``[4, K]`` (p, q, p_neg, q_neg)."""
    x = x.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, size)
    grad = grad.to(x.dtype).contiguous()
    columns = x.size(1)
    flat, stride = _params(x, params)
    grad_x = torch.empty_like(x) if need_x else None
    threads = torch.get_num_threads()
    partial = x.new_zeros(threads, 4, columns) if need_params else None
    fn = getattr(_lib, f"gnpool_gnp_backward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(ptr), _p(perm), size, columns, *(_p(p) for p in flat), stride, _p(grad),
       _p(state), _p(grad_x), _p(partial), threads)
    return grad_x, None if partial is None else partial.sum(0)


def attsets_forward(x: Tensor, scores: Tensor, ptr: Tensor, perm: Tensor | None, size: int,
                    out: Tensor | None = None, m: Tensor | None = None,
                    l: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets of ``x`` with ``scores`` (both ``[E, K]``): the ``[S, K]`` output and the
    per-set max score ``m`` and sum of exponentials ``l`` (written into the given
    contiguous buffers when provided)."""
    x, scores = x.contiguous(), scores.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, size)
    columns = x.size(1)
    out, m, l = (x.new_empty(size, columns) if t is None else t for t in (out, m, l))
    fn = getattr(_lib, f"gnpool_attsets_forward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(scores), _p(ptr), _p(perm), size, columns, _p(out), _p(m), _p(l),
       torch.get_num_threads())
    return out, m, l


def attsets_backward(grad: Tensor, x: Tensor, scores: Tensor, ptr: Tensor,
                     perm: Tensor | None, size: int, out: Tensor, m: Tensor, l: Tensor,
                     need_x: bool, need_scores: bool, grad_x: Tensor | None = None,
                     grad_scores: Tensor | None = None
                     ) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of AttSets for ``x`` and ``scores`` (``[E, K]`` each, or ``None``), written
    into the given contiguous buffers when provided."""
    x, scores = x.contiguous(), scores.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, size)
    grad = grad.to(x.dtype).contiguous()
    if need_x and grad_x is None:
        grad_x = torch.empty_like(x)
    if need_scores and grad_scores is None:
        grad_scores = torch.empty_like(scores)
    fn = getattr(_lib, f"gnpool_attsets_backward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(scores), _p(ptr), _p(perm), size, x.size(1), _p(grad), _p(out.contiguous()),
       _p(m.contiguous()), _p(l.contiguous()), _p(grad_x), _p(grad_scores),
       torch.get_num_threads())
    return grad_x, grad_scores


_ACTIVATION_CODES = {None: 0, "tanh": 1}


def attsets_linear_forward(x: Tensor, weight: Tensor, bias: Tensor | None,
                           activation: str | None, ptr: Tensor, perm: Tensor | None, size: int
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """AttSets with scores ``act(x W^T + b)`` computed inside the kernel, a set at a time:
    the ``[S, K]`` output and the per-set statistics ``(m, l)``."""
    x = x.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, size)
    columns = x.size(1)
    wt = weight.detach().to(x.dtype).t().contiguous()
    b = None if bias is None else bias.detach().to(x.dtype).contiguous()
    out, m, l = (x.new_empty(size, columns) for _ in range(3))
    fn = getattr(_lib, f"gnpool_attsets_linear_forward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(ptr), _p(perm), size, columns, _p(wt), _p(b), weight.size(0),
       _ACTIVATION_CODES[activation], _p(out), _p(m), _p(l), torch.get_num_threads())
    return out, m, l


def attsets_linear_backward(grad: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None,
                            activation: str | None, ptr: Tensor, perm: Tensor | None,
                            out: Tensor, m: Tensor, l: Tensor, need_x: bool, need_params: bool
                            ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Gradients for ``(x, weight, bias)`` (scores recomputed inside the kernel)."""
    x = x.contiguous()
    ptr, perm = _sets(x.size(0), ptr, perm, out.size(0))
    columns, rows_out = x.size(1), weight.size(0)
    grad = grad.to(x.dtype).contiguous()
    w = weight.detach().to(x.dtype).contiguous()
    wt = w.t().contiguous()
    b = None if bias is None else bias.detach().to(x.dtype).contiguous()
    grad_x = torch.empty_like(x) if need_x else None
    threads = torch.get_num_threads()
    partial = x.new_empty(threads, rows_out * columns + rows_out) if need_params else None
    fn = getattr(_lib, f"gnpool_attsets_linear_backward_{_DTYPES[x.dtype]}")
    fn(_p(x), _p(ptr), _p(perm), out.size(0), columns, _p(w), _p(wt), _p(b), rows_out,
       _ACTIVATION_CODES[activation], _p(grad), _p(out.contiguous()), _p(m.contiguous()),
       _p(l.contiguous()), _p(grad_x), _p(partial), threads)
    if partial is None:
        return grad_x, None, None
    total = partial.sum(0)
    grad_w = total[: rows_out * columns].view_as(weight).to(weight.dtype)
    grad_b = None if bias is None else total[rows_out * columns:].to(bias.dtype)
    return grad_x, grad_w, grad_b
