"""Generation of a split and the PyG dataset that holds it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data, InMemoryDataset
from tqdm.auto import tqdm

from .cache import CacheError
from .graphs import FAMILIES
from .spec import Item, TaskInfo, TaskSpec, item_rng, split_config

Storage = dict[str, Any]


def generate(spec: TaskSpec, params: Mapping[str, Any], split: str, seed: int,
             progress: bool = True) -> Storage:
    """Draw every sample of ``split`` and collate them into the stored form."""
    config = split_config(params, split)
    items = []
    bar = tqdm(range(config.count), desc=f"{spec.name}/{split}", unit="sample",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    for i in bar:
        items.append(spec.make_item(item_rng(spec.name, split, seed, i), i, config, params))
    return collate(items, spec.level)


def _ptr(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def collate(items: list[Item], level: str) -> Storage:
    """Concatenate samples in the layout of :class:`InMemoryDataset` (local node ids).

    Every undirected edge becomes two directed ones; each graph's edges are sorted by
    (source, target). ``edge_index`` is stored as ``int32`` to halve the file size.
    """
    count = len(items)
    node_ptr = _ptr(np.array([len(it.x) for it in items]))
    arrays = {"x": np.concatenate([it.x for it in items]).astype(np.float32)}
    slices = {"x": node_ptr}
    if items[0].edges is not None:
        m = np.array([len(it.edges) for it in items])
        und = np.concatenate([it.edges for it in items])
        gid = np.repeat(np.arange(count), m)
        src = np.concatenate([und[:, 0], und[:, 1]])
        dst = np.concatenate([und[:, 1], und[:, 0]])
        order = np.lexsort((dst, src, np.concatenate([gid, gid])))
        arrays["edge_index"] = np.stack([src[order], dst[order]]).astype(np.int32)
        slices["edge_index"] = _ptr(2 * m)  # sorted by graph first, so graphs stay contiguous
        if items[0].weights is not None:
            w = np.concatenate([it.weights for it in items])
            arrays["edge_attr"] = np.concatenate([w, w])[order][:, None].astype(np.float32)
            slices["edge_attr"] = slices["edge_index"]
    arrays["y"] = np.concatenate([it.y for it in items]).astype(np.float32)
    slices["y"] = node_ptr if level == "node" else np.arange(count + 1, dtype=np.int64)
    if level == "node":
        arrays["mask"] = np.concatenate([it.mask for it in items]).astype(bool)
        slices["mask"] = node_ptr
    return {
        "tensors": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        "slices": {k: torch.from_numpy(v) for k, v in slices.items()},
        "family": torch.tensor([it.family for it in items], dtype=torch.int64),
    }


def check_storage(storage: Any) -> None:
    """Raise :class:`CacheError` unless ``storage`` is consistently shaped."""
    try:
        tensors, slices, family = storage["tensors"], storage["slices"], storage["family"]
        count = len(family)
        assert set(tensors) == set(slices) and {"x", "y"} <= set(tensors)
        for key, value in tensors.items():
            ptr = slices[key]
            dim = 1 if key == "edge_index" else 0
            assert isinstance(value, Tensor) and isinstance(ptr, Tensor)
            assert ptr.numel() == count + 1 and int(ptr[0]) == 0
            assert int(ptr[-1]) == value.size(dim) and bool((ptr.diff() >= 0).all())
    except (AssertionError, KeyError, TypeError, IndexError, RuntimeError) as err:
        raise CacheError(f"inconsistent contents ({err!r})") from None


class TaskDataset(InMemoryDataset):
    """One split of a task: an in-memory PyG dataset of :class:`~torch_geometric.data.Data`.

    Attributes:
        info: the task's :class:`TaskInfo` (with the resolved parameters).
        split: the split name.
        seed: the seed it was drawn with.
        family_ids: ``int64`` [len] id of each sample's graph family (-1 for sets).
        cache_path: the cache file, or ``None``.
        generated: whether this call generated the split (rather than loading it).
    """

    def __init__(self, storage: Storage, info: TaskInfo, split: str, seed: int,
                 transform: Callable[[Data], Data] | None = None, *,
                 cache_path: Path | None = None, generated: bool = False,
                 indicator_dims: int = 0) -> None:
        super().__init__(None, transform=transform, log=False)
        tensors = dict(storage["tensors"])
        if "edge_index" in tensors:
            tensors["edge_index"] = tensors["edge_index"].long()
        self._data = Data(**tensors)
        self.slices = dict(storage["slices"])
        self.info, self.split, self.seed = info, split, seed
        self.family_ids: Tensor = storage["family"]
        self.cache_path, self.generated = cache_path, generated
        self._indicator_dims = indicator_dims

    def family(self, idx: int) -> str | None:
        """Graph family of sample ``idx`` (``None`` for sets)."""
        fid = int(self.family_ids[self.indices()[idx]])
        return FAMILIES[fid] if fid >= 0 else None

    def stats(self) -> dict[str, Any]:
        """Summary statistics: sample count, sizes, edges, feature, weight and label ranges
        (labels of scored nodes only), and samples per family."""
        data, slices = self._data, self.slices
        if self._indices is not None:
            raise ValueError("stats() describes a whole split, not a subset")
        sizes = slices["x"].diff().double()
        values = data.x[:, :data.x.size(1) - self._indicator_dims]
        y = data.y[data.mask] if "mask" in data else data.y
        out: dict[str, Any] = {
            "samples": len(self),
            "nodes": _summary(sizes),
            "features": (float(values.min()), float(values.max())),
            "labels": _summary(y.double()),
        }
        if "edge_index" in data:
            out["edges"] = _summary(slices["edge_index"].diff().double() / 2)
        if "edge_attr" in data:
            out["weights"] = (float(data.edge_attr.min()), float(data.edge_attr.max()))
        fams = self.family_ids[self.family_ids >= 0]
        if len(fams):
            counts = torch.bincount(fams, minlength=len(FAMILIES))
            out["families"] = {FAMILIES[i]: int(c) for i, c in enumerate(counts) if c}
        return out


def _summary(t: Tensor) -> tuple[float, float, float]:
    return float(t.min()), float(t.mean()), float(t.max())
