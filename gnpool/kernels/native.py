"""Segment primitives in plain torch: always available, traceable by torch.compile."""

from __future__ import annotations

from torch import Tensor

from .segments import Segments

name = "native"


def _scatter(src: Tensor, seg: Segments, reduce: str) -> Tensor:
    out = src.new_zeros((seg.size, src.size(1)))
    index = seg.index.view(-1, 1).expand_as(src)
    # include_self=False leaves empty sets at the zero fill.
    return out.scatter_reduce_(0, index, src, reduce, include_self=False)


def segment_sum(src: Tensor, seg: Segments) -> Tensor:
    """Per-set sum of the rows of ``src`` ``[E, K]`` -> ``[S, K]``; empty sets give 0."""
    return _scatter(src, seg, "sum")


def segment_max(src: Tensor, seg: Segments) -> Tensor:
    """Per-set maximum (NaN propagates within its set); empty sets give 0."""
    return _scatter(src, seg, "amax")


def segment_min(src: Tensor, seg: Segments) -> Tensor:
    """Per-set minimum (NaN propagates within its set); empty sets give 0."""
    return _scatter(src, seg, "amin")


def gather(src: Tensor, seg: Segments) -> Tensor:
    """Broadcast per-set rows ``[S, K]`` back to their elements ``[E, K]``."""
    return src.index_select(0, seg.index)
