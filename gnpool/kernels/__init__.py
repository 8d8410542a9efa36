"""Backends the functional layer dispatches to.

- ``cpu``: fused C++ kernels built at install (float32/float64 CPU tensors).
- ``scatter``: torch-scatter's CSR (grouped) and scatter (any order) kernels, when installed.
- ``native``: plain torch scatter/index ops; always available, works under torch.compile.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from . import cpu, native, scatter
from .segments import Segments

_BACKENDS: dict[str, ModuleType] = {"cpu": cpu, "scatter": scatter, "native": native}


def available_backends() -> list[str]:
    """Names of the backends usable in this installation, fastest first."""
    return [name for name, mod in _BACKENDS.items() if getattr(mod, "available", True)]


def _supports(mod: ModuleType, x: Tensor | None) -> bool:
    return x is None or not hasattr(mod, "supports") or mod.supports(x)


def resolve_backend(name: str | None, x: Tensor | None = None) -> ModuleType:
    """The backend module for ``name``; ``None`` or ``"auto"`` picks the fastest one usable
    for ``x`` (the native one while torch.compile traces)."""
    if name is None or name == "auto":
        if torch.compiler.is_compiling():
            return native
        for candidate in available_backends():
            if _supports(_BACKENDS[candidate], x):
                return _BACKENDS[candidate]
        return native
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)} or 'auto', got {name!r}")
    mod = _BACKENDS[name]
    if name not in available_backends():
        raise ValueError(f"backend {name!r} is not available here "
                         f"(available: {available_backends()})")
    if not _supports(mod, x):
        raise ValueError(f"backend {name!r} does not support a {x.dtype} tensor on {x.device}")
    if torch.compiler.is_compiling() and name != "native":
        raise ValueError(f"backend {name!r} cannot be traced by torch.compile; use 'native'")
    return mod


def segment_tensors(backend: str, seg: Segments
                    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(index, ptr, perm)`` in the form ``backend`` consumes: native works on the index,
    scatter on ptr where elements are grouped, cpu on ptr plus a permutation."""
    if backend == "native":
        return seg.index, None, None
    if backend == "cpu":
        return (None, *cpu.csr(seg))
    ptr = seg.ptr
    return (None, ptr, None) if ptr is not None else (seg.index, None, None)


__all__ = ["Segments", "available_backends", "resolve_backend", "segment_tensors"]
