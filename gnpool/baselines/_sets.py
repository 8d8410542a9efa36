"""Input checks and per-set reductions shared by the baseline aggregations (plain torch).

The baselines are reference implementations of other authors' aggregators: they use
ordinary autograd on ``[elements, ...]`` tensors, not gnpool's fused kernels.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..functional._sets import check_features, compute_dtype, make_segments, normalize_dim
from ..kernels import Segments


class SetRows(NamedTuple):
    """``x`` with the pooled dimension moved first, and its grouping into sets."""
    rows: Tensor        # [elements, *rest], in the compute dtype
    segments: Segments
    dim: int            # the pooled dimension of x, non-negative


def set_rows(x: Tensor, index: Tensor | None, ptr: Tensor | None, dim_size: int | None,
             dim: int, owner: str) -> SetRows:
    """Validate the inputs of a baseline's ``forward`` and bring ``x`` to ``[E, *rest]``.

    The baselines keep their channels in the last dimension of ``x``, so ``x`` needs
    at least two dimensions and ``dim`` must not be the last one. Raises ``TypeError``
    for a non-floating ``x`` and ``ValueError`` (naming the argument) for a bad
    ``dim``, ``index``, ``ptr`` or ``dim_size``.
    """
    check_features("x", x)
    d = normalize_dim(x, dim)
    if x.dim() < 2 or d == x.dim() - 1:
        raise ValueError(f"{owner} keeps the channels in the last dimension of x, so x needs "
                         f"at least 2 dimensions and dim must not be the last; got x of "
                         f"shape {tuple(x.shape)} and dim={dim}")
    rows = x.movedim(d, 0).to(compute_dtype(x))
    return SetRows(rows, make_segments(rows.size(0), index, ptr, dim_size, x.device), d)


def check_channels(x: Tensor, channels: int, name: str = "in_channels") -> None:
    if x.size(-1) != channels:
        raise ValueError(f"x must have {name}={channels} features in its last dimension, "
                         f"got shape {tuple(x.shape)}")


def per_set(values: Tensor, rows: Tensor) -> Tensor:
    """A ``[sets]`` tensor shaped ``[sets, 1, ..., 1]`` to broadcast with ``[sets, *rest]``."""
    return values.view(-1, *([1] * (rows.dim() - 1))).to(rows.dtype)


def segment_sum(values: Tensor, seg: Segments) -> Tensor:
    """``[sets, *rest]``: the sum of ``values`` (``[elements, *rest]``) over each set."""
    out = values.new_zeros((seg.size, *values.shape[1:]))
    return out.index_add(0, seg.index, values)


def segment_extreme(values: Tensor, seg: Segments, reduce: str) -> Tensor:
    """Differentiable per-set ``"amax"`` or ``"amin"`` (ties share the gradient);
    an empty set gives 0."""
    index = seg.index.view(-1, *([1] * (values.dim() - 1))).expand_as(values)
    out = values.new_zeros((seg.size, *values.shape[1:]))
    return out.scatter_reduce(0, index, values, reduce, include_self=False)


def segment_any(mask: Tensor, seg: Segments) -> Tensor:
    """``[sets, *rest]`` bool: whether any element of the set has ``mask`` set."""
    return segment_sum(mask.to(torch.int32), seg) > 0


def restore(out: Tensor, dim: int, dtype: torch.dtype) -> Tensor:
    """``[sets, *rest]`` back to the layout of ``x`` (sets along ``dim``) in ``dtype``."""
    return out.movedim(0, dim).to(dtype)
