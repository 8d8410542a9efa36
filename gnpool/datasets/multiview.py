"""The multi-view reconstruction dataset: random solids of several categories, each as a
voxel grid and as depth maps from random viewpoints.

Usage::

    from gnpool.datasets.multiview import load_multiview
    train = load_multiview("train")                 # generated once, then cached
    sample = train[0]        # {"views": [24, 1, 32, 32] float32, "target": [32, 32, 32]}
    ood = load_multiview("test_ood")                # shapes of the held-out category

Splits: ``train``, ``val`` and ``test`` draw shapes from the training categories in
equal shares; ``test_ood`` draws them from the held-out category. Every shape has its own
random stream (:func:`gnpool.datasets.spec.item_rng`), so a split is bit-identical for a
seed and its parameters, whatever else changes. The data card is
``datasets/multiview.md``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import cache
from .render import render_depth, voxelize
from .shapes import CATEGORIES, sample_shape
from .spec import item_rng

TASK = "multiview"
SPLITS = ("train", "val", "test", "test_ood")
CARD = "datasets/multiview.md"
HELDOUT = "chair"

#: Parameters and their defaults.
DEFAULTS: dict[str, Any] = {
    "num_train": 1000,
    "num_val": 100,
    "num_test": 300,
    "num_ood": 150,
    "views": 24,
    "grid": 32,
    "image_size": 32,
    "depth_samples": None,        # None: 2 * image_size, a spacing of half a pixel
    "elevation": (-60.0, 60.0),
    "categories": tuple(c for c in CATEGORIES if c != HELDOUT),
    "heldout": HELDOUT,
    "subsamples": 3,
    "radius": 0.95,
}
_COUNT = {"train": "num_train", "val": "num_val", "test": "num_test", "test_ood": "num_ood"}
# What every split's content depends on (besides its count and categories).
_SHARED = ("views", "grid", "image_size", "depth_samples", "elevation", "subsamples", "radius")


def _positive_int(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"parameter {name}={value!r} is invalid: expected an int >= {least}")
    return value


def _power_of_two_multiple(name: str, value: int) -> None:
    # The models halve images and double voxel grids between 4 and the full size.
    if value < 4 or value & (value - 1):
        raise ValueError(f"parameter {name}={value!r} is invalid: expected a power of two "
                         f">= 4 (the models go from or to 4 cells by factors of 2)")


def multiview_params(**params: Any) -> dict[str, Any]:
    """:data:`DEFAULTS` overridden by ``params``, validated and in canonical form."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"the multiview dataset has no parameter {', '.join(unknown)}; "
                         f"expected some of {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **params}
    for name in ("num_train", "num_val", "num_test", "num_ood"):
        out[name] = _positive_int(name, out[name], 0)
    for name in ("views", "grid", "image_size", "subsamples"):
        out[name] = _positive_int(name, out[name])
    for name in ("grid", "image_size"):
        _power_of_two_multiple(name, out[name])
    if out["depth_samples"] is None:
        out["depth_samples"] = 2 * out["image_size"]
    out["depth_samples"] = _positive_int("depth_samples", out["depth_samples"], 2)
    try:
        lo, hi = (float(v) for v in out["elevation"])
    except (TypeError, ValueError):
        raise ValueError(f"parameter elevation={out['elevation']!r} is invalid: expected two "
                         f"angles in degrees") from None
    if not -90.0 < lo <= hi < 90.0:
        raise ValueError(f"parameter elevation={out['elevation']!r} is invalid: expected "
                         f"-90 < lo <= hi < 90 (degrees; the poles have no azimuth)")
    out["elevation"] = (lo, hi)
    cats = out["categories"]
    cats = tuple([cats] if isinstance(cats, str) else cats)
    bad = [c for c in (*cats, out["heldout"]) if c not in CATEGORIES]
    if bad or not cats:
        raise ValueError(f"categories={cats!r}, heldout={out['heldout']!r} are invalid: "
                         f"expected names from {', '.join(CATEGORIES)} (at least one)")
    if out["heldout"] in cats:
        raise ValueError(f"heldout={out['heldout']!r} is also among the training "
                         f"categories {cats}; a held-out category must be unseen")
    out["categories"] = cats
    radius = float(out["radius"])
    if not 0 < radius < 1:
        raise ValueError(f"parameter radius={out['radius']!r} is invalid: expected 0 < "
                         f"radius < 1 (shapes must fit the image window [-1, 1])")
    out["radius"] = radius
    return out


def split_categories(params: Mapping[str, Any], split: str) -> tuple[str, ...]:
    """The categories ``split`` draws from, in the order samples cycle through them."""
    return (params["heldout"],) if split == "test_ood" else tuple(params["categories"])


def _split_params(params: Mapping[str, Any], split: str) -> dict[str, Any]:
    out = {k: params[k] for k in _SHARED}
    out["count"] = params[_COUNT[split]]
    out["categories"] = split_categories(params, split)
    return out


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; expected one of {', '.join(SPLITS)}")


def generate(params: Mapping[str, Any], split: str, seed: int,
             progress: bool = True) -> dict[str, Tensor]:
    """Draw, render and voxelise every shape of ``split``.

    Returns:
        ``images`` uint8 [N, V, R, R] (depth maps scaled to 0..255, 0 = background),
        ``voxels`` bool [N, G, G, G] (indexed ``[x, y, z]``), ``cameras`` float32
        [N, V, 2] (azimuth, elevation in degrees) and ``category`` int64 [N] (the index
        in :data:`gnpool.datasets.shapes.CATEGORIES`).
    """
    cats = split_categories(params, split)
    count, views = params[_COUNT[split]], params["views"]
    size, grid = params["image_size"], params["grid"]
    images = torch.zeros(count, views, size, size, dtype=torch.uint8)
    voxels = torch.zeros(count, grid, grid, grid, dtype=torch.bool)
    cameras = torch.zeros(count, views, 2, dtype=torch.float32)
    category = torch.zeros(count, dtype=torch.int64)
    names = list(CATEGORIES)
    lo, hi = params["elevation"]
    bar = tqdm(range(count), desc=f"{TASK}/{split}", unit="shape", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    for i in bar:
        rng = item_rng(TASK, split, seed, i)
        name = cats[i % len(cats)]
        shape = sample_shape(name, rng, params["radius"])
        azimuth = torch.from_numpy(rng.uniform(0.0, 360.0, views))
        elevation = torch.from_numpy(rng.uniform(lo, hi, views))
        depth = render_depth(shape, azimuth, elevation, size, params["depth_samples"])
        images[i] = (depth * 255).round().to(torch.uint8)
        voxels[i] = voxelize(shape, grid, params["subsamples"])
        cameras[i] = torch.stack((azimuth, elevation), dim=-1).float()
        category[i] = names.index(name)
    return {"images": images, "voxels": voxels, "cameras": cameras, "category": category}


def _check_storage(storage: Any, params: Mapping[str, Any], split: str) -> None:
    try:
        count, views = params[_COUNT[split]], params["views"]
        size, grid = params["image_size"], params["grid"]
        expected = {"images": ((count, views, size, size), torch.uint8),
                    "voxels": ((count, grid, grid, grid), torch.bool),
                    "cameras": ((count, views, 2), torch.float32),
                    "category": ((count,), torch.int64)}
        assert set(storage) == set(expected)
        for key, (shape, dtype) in expected.items():
            assert tuple(storage[key].shape) == shape and storage[key].dtype == dtype, key
    except (AssertionError, KeyError, TypeError, AttributeError) as err:
        raise cache.CacheError(f"inconsistent contents ({err!r})") from None


class MultiViewDataset(torch.utils.data.Dataset):
    """One split: sample ``i`` is ``{"views": float32 [V, 1, R, R], "target": float32
    [G, G, G]}``, the batch layout :class:`gnpool.training.FASet` takes.

    Attributes:
        images, voxels, cameras, category: the stored tensors (see :func:`generate`).
        params: the resolved parameters; ``split``, ``seed``: what was drawn.
        cache_path: the cache file; ``generated``: whether this load generated the split.
        generation_seconds: the wall time its generation took (stored with the cache).
    """

    def __init__(self, storage: Mapping[str, Tensor], params: Mapping[str, Any], split: str,
                 seed: int, *, cache_path: Path | None = None, generated: bool = False,
                 generation_seconds: float | None = None) -> None:
        self.images, self.voxels = storage["images"], storage["voxels"]
        self.cameras, self.category = storage["cameras"], storage["category"]
        self.params, self.split, self.seed = dict(params), split, seed
        self.cache_path, self.generated = cache_path, generated
        self.generation_seconds = generation_seconds

    def __len__(self) -> int:
        return self.images.size(0)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        views = self.images[index].unsqueeze(1).float() / 255
        return {"views": views, "target": self.voxels[index].float()}

    def category_name(self, index: int) -> str:
        """The category of sample ``index``."""
        return list(CATEGORIES)[int(self.category[index])]

    def stats(self) -> dict[str, Any]:
        """Shapes per category, voxel occupancy and silhouette coverage (mean, min, max)."""
        occupancy = self.voxels.flatten(1).float().mean(1)
        coverage = (self.images > 0).flatten(2).float().mean(2)
        names = list(CATEGORIES)
        counts = torch.bincount(self.category, minlength=len(names))
        return {
            "shapes": len(self),
            "categories": {names[i]: int(c) for i, c in enumerate(counts) if c},
            "occupancy": _summary(occupancy),
            "silhouette": _summary(coverage),
            "generation_seconds": self.generation_seconds,
        }


def _summary(t: Tensor) -> tuple[float, float, float]:
    if t.numel() == 0:
        return (math.nan, math.nan, math.nan)
    return float(t.mean()), float(t.min()), float(t.max())


def load_multiview(split: str = "train", *, root: str | Path | None = None, seed: int = 0,
                   progress: bool = True, force_reload: bool = False,
                   **params: Any) -> MultiViewDataset:
    """Load one split, generating and caching it on first use.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` or ``"test_ood"`` (held-out category).
        root: cache directory (default: :func:`gnpool.datasets.cache.default_root`).
        seed: the same seed and parameters give bit-identical tensors.
        progress: show a progress bar on stderr while generating.
        force_reload: regenerate even if a valid cache file exists.
        **params: parameters overriding :data:`DEFAULTS`.

    A cache file that is truncated, corrupted or unreadable is regenerated with a warning.
    """
    _check_split(split)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is invalid; expected a non-negative integer")
    resolved = multiview_params(**params)
    key = cache.cache_key(TASK, split, _split_params(resolved, split), seed)
    path = cache.cache_file(cache.default_root() if root is None else root, TASK, split, key)
    storage, generated, seconds = cache.load_or_generate(
        path, key, {"key": key, "task": TASK, "split": split, "seed": seed, "params": resolved},
        lambda: generate(resolved, split, seed, progress),
        lambda stored: _check_storage(stored, resolved, split), force=force_reload)
    return MultiViewDataset(storage, resolved, split, seed, cache_path=path,
                            generated=generated, generation_seconds=seconds)


def load_multiview_splits(splits: Iterable[str] = SPLITS, **kwargs: Any
                          ) -> dict[str, MultiViewDataset]:
    """:func:`load_multiview` for several splits; returns ``{split: dataset}``."""
    return {s: load_multiview(s, **kwargs) for s in splits}


def plot_examples(path: str | Path, dataset: MultiViewDataset, per_category: int = 1,
                  views: int = 6) -> Path:
    """A PNG of the first ``per_category`` shapes of each category in ``dataset``: the
    voxel grid and the first ``views`` depth maps with their camera angles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks: list[int] = []
    for cat in torch.unique(dataset.category, sorted=True).tolist():
        picks += torch.nonzero(dataset.category == cat).flatten()[:per_category].tolist()
    views = min(views, dataset.images.size(1))
    fig = plt.figure(figsize=(1.6 * (views + 1.4), 1.7 * len(picks)))
    for row, index in enumerate(picks):
        ax = fig.add_subplot(len(picks), views + 1, row * (views + 1) + 1, projection="3d")
        ax.voxels(dataset.voxels[index].numpy(), facecolors="tab:blue", edgecolor="none")
        ax.set_box_aspect((1, 1, 1))                 # voxels are cubes; z is up
        ax.view_init(elev=20, azim=-60)
        ax.set_axis_off()
        name = dataset.category_name(index)
        held_out = " (held out)" if name == dataset.params["heldout"] else ""
        ax.set_title(name + held_out, fontsize=9)
        for v in range(views):
            ax = fig.add_subplot(len(picks), views + 1, row * (views + 1) + 2 + v)
            ax.imshow(dataset.images[index, v].numpy(), cmap="gray", vmin=0, vmax=255)
            az, el = dataset.cameras[index, v].tolist()
            ax.set_title(f"az {az:.0f}, el {el:.0f}", fontsize=7)
            ax.set_axis_off()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
