"""Segment primitives backed by torch-scatter's CSR and scatter kernels."""

from __future__ import annotations

from torch import Tensor

from .segments import Segments

try:
    import torch_scatter
except (ImportError, OSError):  # not installed, or built against another torch
    torch_scatter = None

name = "scatter"
available = torch_scatter is not None


def _reduce(src: Tensor, seg: Segments, reduce: str) -> Tensor:
    ptr = seg.ptr
    if ptr is not None:
        return torch_scatter.segment_csr(src, ptr, reduce=reduce)
    return torch_scatter.scatter(src, seg.index, 0, dim_size=seg.size, reduce=reduce)


def segment_sum(src: Tensor, seg: Segments) -> Tensor:
    return _reduce(src, seg, "sum")


def segment_max(src: Tensor, seg: Segments) -> Tensor:
    return _reduce(src, seg, "max")


def segment_min(src: Tensor, seg: Segments) -> Tensor:
    return _reduce(src, seg, "min")


def gather(src: Tensor, seg: Segments) -> Tensor:
    ptr = seg.ptr
    if ptr is not None:
        return torch_scatter.gather_csr(src, ptr)
    return src.index_select(0, seg.index)
