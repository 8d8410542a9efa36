"""The task registry: listing, metadata, parameter resolution and loading of splits."""

from __future__ import annotations

import operator
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from torch_geometric.data import Data

from . import cache
from .dataset import TaskDataset, check_storage, generate
from .spec import SPLITS, TaskInfo, TaskSpec

_TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task to the registry (its name must be new)."""
    if spec.name in _TASKS:
        raise ValueError(f"task name={spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def list_tasks(level: str | None = None) -> list[str]:
    """Names of the registered tasks, optionally only those of ``level``
    (``"graph"``, ``"node"`` or ``"set"``)."""
    if level is not None and level not in ("graph", "node", "set"):
        raise ValueError(f"level={level!r} is unknown; expected one of graph, node, set")
    return [n for n, s in _TASKS.items() if level is None or s.level == level]


def get_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of task ``name``."""
    try:
        return _TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"task name={name!r} is unknown; expected one of "
                         f"{', '.join(_TASKS)}") from None


def resolve_params(name: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The defaults of task ``name`` overridden by ``params``, validated and in canonical
    form. Values may be Python values or command-line strings (``"20,30"``)."""
    spec = get_spec(name)
    known = {p.name: p for p in spec.params}
    params = dict(params or {})
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"task {name!r} has no parameter {', '.join(unknown)}; expected "
                         f"parameters: {', '.join(known)}")
    out = {k: (p.convert(params[k]) if k in params else p.default) for k, p in known.items()}
    if spec.check is not None:
        spec.check(out)
    return out


def task_info(name: str, **params: Any) -> TaskInfo:
    """Metadata of task ``name`` with ``params`` applied (see :class:`TaskInfo`)."""
    return _info(get_spec(name), resolve_params(name, params))


def _info(spec: TaskSpec, resolved: Mapping[str, Any]) -> TaskInfo:
    return TaskInfo(
        name=spec.name, level=spec.level, description=spec.description, aggr=spec.aggr,
        readout=spec.readout, num_node_features=spec.num_node_features(resolved),
        edge_dim=spec.edge_dim, target_dim=spec.target_dim(resolved), splits=SPLITS,
        params=resolved, defaults={p.name: p.default for p in spec.params}, card=spec.card)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; expected one of {', '.join(SPLITS)}")


def _check_seed(seed: int) -> int:
    try:
        value = operator.index(seed) if not isinstance(seed, bool) else -1
    except TypeError:
        value = -1
    if value < 0:
        raise ValueError(f"seed={seed!r} is invalid; expected a non-negative integer")
    return value


def _split_params(params: Mapping[str, Any], split: str) -> dict[str, Any]:
    # Only what the split is drawn from enters its cache key, so that changing, e.g.,
    # the extrapolation sizes does not regenerate the training split.
    other = "train_" if split == "test_extrap" else "extrap_"
    count = {"train": "num_train", "val": "num_val"}.get(split, "num_test")
    return {k: v for k, v in params.items()
            if not k.startswith(other) and (not k.startswith("num_") or k == count)}


def load_task(name: str, split: str = "train", *, root: str | os.PathLike | None = None,
              seed: int = 0, progress: bool = True, force_reload: bool = False,
              transform: Callable[[Data], Data] | None = None, **params: Any) -> TaskDataset:
    """Load one split of a task, generating and caching it on first use.

    Args:
        name: a task from :func:`list_tasks`.
        split: ``"train"``, ``"val"``, ``"test_interp"`` or ``"test_extrap"``.
        root: cache directory (default: :func:`gnpool.datasets.cache.default_root`).
        seed: the same seed and parameters give bit-identical tensors.
        progress: show a progress bar on stderr while generating.
        force_reload: regenerate even if a valid cache file exists.
        transform: applied to every ``Data`` on access.
        **params: task parameters overriding the defaults (see :func:`task_info`).

    A cache file that is truncated, corrupted or unreadable is regenerated with a warning.
    """
    spec = get_spec(name)
    _check_split(split)
    seed = _check_seed(seed)
    resolved = resolve_params(name, params)
    info = _info(spec, resolved)
    key = cache.cache_key(name, split, _split_params(resolved, split), seed)
    path = cache.cache_file(cache.default_root() if root is None else root, name, split, key)
    storage, generated, _ = cache.load_or_generate(
        path, key, {"key": key, "task": name, "split": split, "seed": seed, "params": resolved},
        lambda: generate(spec, resolved, split, seed, progress), check_storage,
        force=force_reload)
    return TaskDataset(storage, info, split, seed, transform, cache_path=path,
                       generated=generated, indicator_dims=spec.indicator_dims)


def load_splits(name: str, splits: Iterable[str] = SPLITS, **kwargs: Any
                ) -> dict[str, TaskDataset]:
    """:func:`load_task` for several splits; returns ``{split: dataset}``."""
    return {s: load_task(name, s, **kwargs) for s in splits}


def cache_path(name: str, split: str, *, root: str | os.PathLike | None = None,
               seed: int = 0, **params: Any) -> Path:
    """Where :func:`load_task` caches this split (the file may not exist yet)."""
    _check_split(split)
    resolved = _split_params(resolve_params(name, params), split)
    key = cache.cache_key(name, split, resolved, _check_seed(seed))
    return cache.cache_file(cache.default_root() if root is None else root, name, split, key)
