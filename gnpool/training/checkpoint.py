"""Checkpoint helpers: atomic writes, random states, values safe for ``weights_only`` loading."""

from __future__ import annotations

import numbers
import os
import random
import tempfile
from typing import Any

import numpy as np
import torch
from torch import Tensor


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``:
    an interruption leaves either the old file or the new one, never a partial one."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write the checkpoint {path}: its directory "
                                f"{directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def get_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """The global random states of torch (CPU and initialised CUDA devices), numpy and
    ``random``, and ``generator``'s, as plain values and tensors."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, keys.tolist(), int(pos), int(has_gauss), float(cached)),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["faset"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what :func:`get_rng_state` returned (``generator`` from ``"faset"``)."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if generator is not None and "faset" in state:
        generator.set_state(state["faset"])


def plain(value: Any, what: str) -> Any:
    """``value`` with tensors and numpy scalars/arrays turned into Python numbers and
    lists, so a checkpoint holding it loads with ``weights_only=True``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Tensor):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, numbers.Number):
        return float(value)
    if isinstance(value, dict):
        return {str(k): plain(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, what) for v in value]
    raise TypeError(f"{what} must be made of numbers, strings, tensors, numpy values, lists "
                    f"and dicts (it is stored in the checkpoint), got {type(value).__name__}")
