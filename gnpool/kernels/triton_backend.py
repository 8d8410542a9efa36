"""The ``triton`` backend: Triton kernels for CUDA tensors (and for CPU tensors under
Triton's interpreter, ``TRITON_INTERPRET=1``, which is how they are tested without a GPU).

Triton is an optional dependency (``pip install gnpool[triton]``); the kernels themselves
live in ``triton_<operator>.py`` files, imported on first use. Only the operators listed in
:data:`operators` have Triton kernels.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

import torch
from torch import Tensor

from .segments import Segments, sort_csr

name = "triton"
available = importlib.util.find_spec("triton") is not None
#: Operators with Triton kernels.
operators = frozenset({"attsets", "gnp"})
_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_TRUE = ("1", "true", "on", "yes")


def interpreting() -> bool:
    """Whether the kernels run under Triton's interpreter: fixed when the first kernel
    module is imported, from ``TRITON_INTERPRET`` as it was then."""
    for operator in operators:
        loaded = sys.modules.get(f"{__package__}.triton_{operator}")
        if loaded is not None:
            return loaded.INTERPRETED
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in _TRUE


def selects(x: Tensor) -> bool:
    """Whether automatic backend choice picks Triton for ``x``: CUDA tensors only (under the
    interpreter Triton is a test vehicle, far slower than the CPU backends)."""
    return available and x.device.type == "cuda" and x.dtype in _DTYPES


def supports(x: Tensor) -> bool:
    """Whether ``backend="triton"`` can pool ``x``."""
    if not available or x.dtype not in _DTYPES:
        return False
    return x.device.type == "cuda" or (x.device.type == "cpu" and interpreting())


def why_not(x: Tensor) -> str:
    """Why :func:`supports` is false for ``x``."""
    if not available:
        return "triton is not installed (pip install 'gnpool[triton]')"
    if x.dtype not in _DTYPES:
        return f"the Triton kernels take float16/bfloat16/float32/float64, got {x.dtype}"
    return (f"the Triton kernels run on CUDA tensors, or on CPU tensors when TRITON_INTERPRET=1 "
            f"is set before they are first used; got a tensor on {x.device}")


def kernels(operator: str) -> ModuleType:
    """The module with ``operator``'s Triton kernels (imports Triton on first use)."""
    if operator not in operators:
        raise ValueError(f"operator must be one of {sorted(operators)} for the Triton backend, "
                         f"got {operator!r}")
    return importlib.import_module(f".triton_{operator}", __package__)


def csr(seg: Segments) -> tuple[Tensor, Tensor | None]:
    """``(ptr, perm)`` of the sets: ``perm`` is ``None`` when elements are already grouped,
    else the index is sorted once (stable) and the kernels read rows through ``perm``."""
    if seg.ptr is not None:
        return seg.ptr.contiguous(), None
    return sort_csr(seg.index, seg.size)
