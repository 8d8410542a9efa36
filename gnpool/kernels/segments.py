"""How elements are grouped into sets: an index vector, a CSR pointer, or both."""

from __future__ import annotations

import torch
from torch import Tensor


class Segments:
    """The grouping of ``num_elements`` rows into ``size`` sets.

    Built from either ``index`` (set of each element, any order) or ``ptr``
    (CSR boundaries, elements grouped by set). The other representation is
    derived on first use, so a backend that only needs one of them pays for
    nothing else.
    """

    __slots__ = ("num_elements", "size", "_index", "_ptr", "_perm", "_count", "_sorted")

    def __init__(
        self,
        num_elements: int,
        size: int,
        index: Tensor | None = None,
        ptr: Tensor | None = None,
        perm: Tensor | None = None,
        sorted: bool | None = None,
    ) -> None:
        if index is None and ptr is None:
            raise ValueError("Segments needs 'index' or 'ptr'")
        self.num_elements = num_elements
        self.size = size
        self._index = index
        self._ptr = ptr
        self._perm = perm
        self._count: Tensor | None = None
        # A ptr without perm describes grouped elements; an index may or may not be.
        self._sorted = (perm is None) if ptr is not None else sorted

    @property
    def index(self) -> Tensor:
        """Set of each element, ``[num_elements]`` int64."""
        if self._index is None:
            sets = torch.arange(self.size, device=self._ptr.device)
            grouped = torch.repeat_interleave(sets, self.count, output_size=self.num_elements)
            if self._perm is None:
                self._index = grouped
            else:
                self._index = torch.empty_like(grouped).index_copy_(0, self._perm, grouped)
        return self._index

    @property
    def count(self) -> Tensor:
        """Number of elements of each set, ``[size]`` int64."""
        if self._count is None:
            if self._ptr is not None:
                self._count = self._ptr[1:] - self._ptr[:-1]
            else:
                self._count = torch.zeros(self.size, dtype=torch.long,
                                          device=self._index.device)
                self._count.scatter_add_(0, self._index,
                                         torch.ones_like(self._index))
        return self._count

    @property
    def is_sorted(self) -> bool:
        """Whether elements of a set are contiguous and sets come in order."""
        if self._sorted is None:
            idx = self._index
            self._sorted = bool((idx[1:] >= idx[:-1]).all()) if idx.numel() > 1 else True
        return self._sorted

    @property
    def grouping_known(self) -> bool:
        """Whether :attr:`is_sorted` is known without reading the index (no host sync)."""
        return self._sorted is not None

    @property
    def ptr(self) -> Tensor | None:
        """CSR boundaries ``[size + 1]`` when the elements are grouped, else ``None``."""
        if self._ptr is None and self.is_sorted:
            self._ptr = torch.cat([self.count.new_zeros(1), self.count.cumsum(0)])
        return self._ptr if self._perm is None else None

    @property
    def perm(self) -> Tensor | None:
        """With :attr:`csr_ptr`: the elements of set s are ``perm[csr_ptr[s]:csr_ptr[s+1]]``."""
        return self._perm

    @property
    def csr_ptr(self) -> Tensor | None:
        """CSR boundaries over the elements reordered by :attr:`perm` (if any)."""
        return self._ptr


def sort_csr(index: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """``(ptr, perm)`` of an index in any order with torch ops only (any device, traceable):
    a stable sort, so the elements of a set keep their order, and the boundaries of the
    sorted runs found by binary search (no atomics, so the result is deterministic)."""
    sorted_index, perm = torch.sort(index, stable=True)
    sets = torch.arange(size + 1, device=index.device, dtype=sorted_index.dtype)
    return torch.searchsorted(sorted_index, sets), perm
