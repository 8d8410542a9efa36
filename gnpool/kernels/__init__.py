"""Backends the functional layer dispatches to.

- ``native``: plain torch scatter/index ops; always available, works under torch.compile.
- ``scatter``: torch-scatter's CSR (sorted) and scatter (unsorted) kernels, when installed.
"""

from __future__ import annotations

from types import ModuleType

import torch

from . import native, scatter
from .segments import Segments

_BACKENDS: dict[str, ModuleType] = {"native": native, "scatter": scatter}


def available_backends() -> list[str]:
    """Names of the backends usable in this installation, fastest first."""
    names = ["scatter"] if scatter.available else []
    return names + ["native"]


def resolve_backend(name: str | None) -> ModuleType:
    """The backend module for ``name``; ``None`` or ``"auto"`` picks the fastest usable one."""
    if name is None or name == "auto":
        if torch.compiler.is_compiling():
            return native
        return _BACKENDS[available_backends()[0]]
    if name not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)} or 'auto', got {name!r}")
    if name not in available_backends():
        raise ValueError(f"backend {name!r} is not available here "
                         f"(available: {available_backends()})")
    return _BACKENDS[name]


__all__ = ["Segments", "available_backends", "resolve_backend"]
