"""Backends the functional layer dispatches to.

- ``cpu``: fused C++ kernels built at install (float32/float64 CPU tensors).
- ``triton``: Triton kernels for CUDA tensors (optional dependency; CPU tensors too under
  ``TRITON_INTERPRET=1``); only for the operators in ``triton_backend.operators``.
- ``scatter``: torch-scatter's CSR (grouped) and scatter (any order) kernels, when installed.
- ``native``: plain torch scatter/index ops; always available, the reference.

The fused kernels of the operators in ``ops.TRACEABLE`` are registered as torch.library
operators (``torch.ops.gnpool.*``, see :mod:`.ops`), so torch.compile and torch.export trace
them; other backends fall back to ``native`` while compiling.
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from . import cpu, native, ops, scatter, triton_backend
from .segments import Segments

_BACKENDS: dict[str, ModuleType] = {"cpu": cpu, "triton": triton_backend, "scatter": scatter,
                                    "native": native}


def _implements(mod: ModuleType, op: str | None) -> bool:
    # A backend without an ``operators`` list implements every operator; with one, op=None
    # (an operator that does not name itself) is not among them.
    operators = getattr(mod, "operators", None)
    return operators is None or op in operators


def available_backends(op: str | None = None) -> list[str]:
    """Names of the backends usable in this installation for operator ``op`` (``"attsets"``,
    ``"gnp"``; ``None``: those that implement every operator), fastest first."""
    return [name for name, mod in _BACKENDS.items()
            if getattr(mod, "available", True) and _implements(mod, op)]


def _supports(mod: ModuleType, x: Tensor | None) -> bool:
    return x is None or not hasattr(mod, "supports") or mod.supports(x)


def _selects(mod: ModuleType, x: Tensor | None) -> bool:
    # What automatic choice takes: a backend may support more than it is picked for.
    if x is not None and hasattr(mod, "selects"):
        return mod.selects(x)
    return _supports(mod, x)


def _tracing() -> bool:
    # torch.compile or torch.jit.trace records the calls: a kernel reached through ctypes
    # instead of a registered operator would be missing from the recorded graph.
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def resolve_backend(name: str | None, x: Tensor | None = None, op: str | None = None
                    ) -> ModuleType:
    """The backend module for ``name``; ``None`` or ``"auto"`` picks the fastest one usable
    for ``x`` and operator ``op``. While torch.compile or torch.jit.trace traces, only
    backends whose kernels for ``op`` are registered operators (``ops.TRACEABLE``) or
    ``native`` qualify."""
    compiling = _tracing()
    if name is None or name == "auto":
        for candidate in available_backends(op):
            if compiling and not ops.traceable(op, candidate):
                continue
            if _selects(_BACKENDS[candidate], x):
                return _BACKENDS[candidate]
        return native
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)} or 'auto', got {name!r}")
    mod = _BACKENDS[name]
    if not _implements(mod, op):
        raise ValueError(f"backend {name!r} implements only {sorted(mod.operators)}, "
                         f"not {op or 'this operator'}")
    if name not in available_backends(op):
        raise ValueError(f"backend {name!r} is not available here "
                         f"(available: {available_backends(op)})")
    if not _supports(mod, x):
        detail = f" ({mod.why_not(x)})" if hasattr(mod, "why_not") else ""
        raise ValueError(f"backend {name!r} does not support a {x.dtype} tensor on "
                         f"{x.device}{detail}")
    if compiling and not ops.traceable(op, name):
        raise ValueError(f"backend {name!r} cannot be traced by torch.compile; use 'native'")
    return mod


def segment_tensors(backend: str, seg: Segments
                    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """``(index, ptr, perm)`` in the form ``backend`` consumes: native works on the index,
    scatter on ptr where elements are grouped, cpu and triton on ptr plus a permutation."""
    if backend == "native":
        return seg.index, None, None
    if backend in ("cpu", "triton"):
        if _tracing() and not seg.grouping_known:
            # Checking whether the index is sorted would need its values: sort it anyway.
            return (None, *torch.ops.gnpool.csr(seg.index, seg.size))
        return (None, *_BACKENDS[backend].csr(seg))
    ptr = seg.ptr
    return (None, ptr, None) if ptr is not None else (seg.index, None, None)


__all__ = ["Segments", "available_backends", "resolve_backend", "segment_tensors"]
