"""What the Triton kernels over CSR segments share: the rows of one tile of a set, and the
tile shape and accumulation dtype chosen on the host.

Imported by the ``triton_<operator>.py`` modules only (importing Triton is slow, and
``TRITON_INTERPRET`` must be set before it is imported).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def tile_rows(perm_ptr, r0, end, cmask, HAS_PERM: tl.constexpr, BLOCK_E: tl.constexpr):
    """Set positions ``r0 .. r0 + BLOCK_E`` (those before ``end``): the rows of ``x``
    holding them, as 64-bit offsets (E * K may exceed 2**31) read through the CSR
    permutation when the index was not grouped, their row mask, and the
    ``[BLOCK_E, BLOCK_K]`` mask with the channel mask ``cmask``."""
    r = r0 + tl.arange(0, BLOCK_E)
    rmask = r < end
    if HAS_PERM:
        rows = tl.load(perm_ptr + r, mask=rmask, other=0).to(tl.int64)
    else:
        rows = r.to(tl.int64)
    return rows, rmask, rmask[:, None] & cmask[None, :]


def accumulation_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 are read as they are and
    accumulated in float32)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def blocks(columns: int, block_k: int | None, block_e: int | None, *, tile: int,
           max_k: int) -> tuple[int, int]:
    """``(BLOCK_K, BLOCK_E)``: the given sizes, or a tile of about ``tile`` values: the
    channels of a set (up to ``max_k``) times enough rows to cover a typical set (around
    20 elements) in one or two steps."""
    if block_k is None:
        block_k = min(triton.next_power_of_2(max(columns, 1)), max_k)
    if block_e is None:
        block_e = max(16, min(64, tile // block_k))
    return block_k, block_e
