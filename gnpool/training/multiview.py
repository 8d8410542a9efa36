"""Multi-view batches for FASet: one-view sets for stage 1, random subsets for stage 2.

The default batch layout is ``(views, target)`` or a dict with ``views`` ``[B, V, ...]``,
``target`` ``[B, ...]`` and optionally a boolean ``mask`` ``[B, V]`` (``True`` for the
views present). Both transformations return such a dict, with ``mask`` ``None`` when
every set is complete.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

MultiViewBatch = dict[str, Tensor | None]
_KEYS = {"views", "target", "mask"}


def as_multiview(batch: Any) -> MultiViewBatch:
    """Validate a ``(views, target)`` pair or a ``{views, target, mask}`` dict and return
    the dict (``mask`` ``None`` when absent)."""
    if isinstance(batch, dict):
        unknown = set(batch) - _KEYS
        missing = {"views", "target"} - set(batch)
        if unknown or missing:
            raise ValueError(f"a multi-view batch dict must have the keys 'views', 'target' and "
                             f"optionally 'mask', got {sorted(batch)}; pass single_view_batch, "
                             f"subset_batch and predict to FASet for other layouts")
        views, target, mask = batch["views"], batch["target"], batch.get("mask")
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        (views, target), mask = batch, None
    else:
        raise ValueError(f"batch must be a (views, target) pair or a dict with 'views', "
                         f"'target' and optionally 'mask', got {type(batch).__name__}"
                         + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""))
    if not isinstance(views, Tensor) or views.dim() < 2:
        raise ValueError(f"views must be a tensor [B, V, ...], got "
                         f"{_describe(views)}")
    if not isinstance(target, Tensor) or target.dim() < 1 or target.size(0) != views.size(0):
        raise ValueError(f"target must be a tensor [B, ...] with B={views.size(0)} (views.size(0))"
                         f", got {_describe(target)}")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor [B, V], got {_describe(mask)}")
        if tuple(mask.shape) != tuple(views.shape[:2]):
            raise ValueError(f"mask must have shape [B, V] = {tuple(views.shape[:2])}, got "
                             f"{tuple(mask.shape)}")
    return {"views": views, "target": target, "mask": mask}


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"a tensor of shape {tuple(t.shape)} and dtype {t.dtype}"
    return type(t).__name__


class SetSizes:
    """Draws set sizes uniformly from ``{low, ..., high}``: one size for the whole
    batch, or one per sample.

    Args:
        low, high: the inclusive range of sizes (``1 <= low <= high``).
        per_sample: draw a size for every sample instead of one per batch.
        generator: the random generator (CPU) the sizes are drawn from.
    """

    def __init__(self, low: int, high: int, per_sample: bool = False,
                 generator: torch.Generator | None = None) -> None:
        for name, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"set size {name} must be a positive int, got {value!r}")
        if low > high:
            raise ValueError(f"set sizes must satisfy low <= high, got low={low}, high={high}")
        self.low, self.high, self.per_sample, self.generator = low, high, per_sample, generator

    def __call__(self, num_samples: int) -> Tensor:
        """Sizes for ``num_samples`` sets, a LongTensor ``[num_samples]`` (CPU)."""
        draws = num_samples if self.per_sample else 1
        sizes = torch.randint(self.low, self.high + 1, (draws,), generator=self.generator)
        return sizes.expand(num_samples).clone() if not self.per_sample else sizes

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(low={self.low}, high={self.high}, "
                f"per_sample={self.per_sample})")


def single_view_batch(batch: Any) -> MultiViewBatch:
    """Every present view as its own one-element set: ``[B, V, ...]`` becomes
    ``[N, 1, ...]`` with the target repeated per view (``N = B * V`` minus masked views)."""
    b = as_multiview(batch)
    views, target, mask = b["views"], b["target"], b["mask"]
    num_views = views.size(1)
    views = views.reshape((-1, 1) + tuple(views.shape[2:]))
    target = target.repeat_interleave(num_views, dim=0)
    if mask is not None:
        keep = mask.reshape(-1).to(views.device)
        views, target = views[keep], target[keep]
    return {"views": views, "target": target, "mask": None}


def check_set_sizes(batch: Any, sizes: SetSizes) -> None:
    """Raise ``ValueError`` when ``sizes`` can draw sets larger than the number of views
    ``V`` of ``batch`` (a multi-view batch)."""
    num_views = as_multiview(batch)["views"].size(1)
    if num_views == 0:
        raise ValueError("the batches have no views (views.size(1) is 0): FASet needs at "
                         "least one view per batch")
    if sizes.high > num_views:
        raise ValueError(f"set_sizes reach {sizes.high} views, but the batches have "
                         f"V={num_views} views (views.size(1)); set sizes must lie in "
                         f"[1, {num_views}], e.g. set_sizes=({min(sizes.low, num_views)}, "
                         f"{num_views})")


def subset_batch(batch: Any, sizes: SetSizes | Tensor | int,
                 generator: torch.Generator | None = None) -> MultiViewBatch:
    """Keep ``sizes[b]`` random present views of every sample ``b``.

    A size may not exceed the number of views ``V`` of the batch (``ValueError``; for a
    :class:`SetSizes` its whole range is checked, not only the sizes drawn). A sample
    with fewer present views than its size (masked views) keeps all of them.

    Args:
        batch: a multi-view batch.
        sizes: a :class:`SetSizes` to draw from, a LongTensor ``[B]`` or one int.
        generator: the random generator (CPU) that picks the views.

    Returns:
        A batch with views ``[B, K, ...]``, ``K`` the largest kept size, and a mask when
        the kept sizes differ (``None`` when every sample keeps ``K`` views); the
        padding slots are zero.

    Raises:
        ValueError: a size below 1 or above ``V``.
    """
    b = as_multiview(batch)
    views, target, mask = b["views"], b["target"], b["mask"]
    num_sets, num_views = views.shape[:2]
    if isinstance(sizes, SetSizes):
        check_set_sizes(b, sizes)
        sizes = sizes(num_sets)
    sizes = torch.as_tensor(sizes, dtype=torch.long).expand(num_sets).cpu()
    if bool((sizes < 1).any()) or bool((sizes > num_views).any()):
        raise ValueError(f"sizes must lie in [1, {num_views}] (the batch's number of views "
                         f"V), got {sizes.tolist()}")
    present = (torch.full((num_sets,), num_views, dtype=torch.long) if mask is None
               else mask.sum(1).cpu())
    sizes = torch.minimum(sizes, present)
    keys = torch.rand(num_sets, num_views, generator=generator)
    if mask is not None:
        keys = keys.masked_fill(~mask.cpu(), 2.0)  # absent views sort last
    width = int(sizes.max()) if num_sets else 0
    order = keys.argsort(dim=1, stable=True)[:, :width].to(views.device)
    rows = torch.arange(num_sets, device=views.device).unsqueeze(1)
    kept = torch.arange(width).unsqueeze(0) < sizes.unsqueeze(1)
    views = views[rows, order]
    if bool(kept.all()):
        return {"views": views, "target": target, "mask": None}
    kept = kept.to(views.device)
    # Padding slots hold absent views: zeroed, so no garbage reaches the model.
    views = views.masked_fill(~kept.view(kept.shape + (1,) * (views.dim() - 2)), 0)
    return {"views": views, "target": target, "mask": kept}


def predict_multiview(model: torch.nn.Module, batch: MultiViewBatch) -> tuple[Any, Tensor]:
    """``model(views)``, or ``model(views, mask=mask)`` when the batch has a mask, and the
    target."""
    views, mask = batch["views"], batch.get("mask")
    output = model(views) if mask is None else model(views, mask=mask)
    return output, batch["target"]
