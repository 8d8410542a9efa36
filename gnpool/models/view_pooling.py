"""Aggregators over the views of ``[B, V, C]`` feature sets with an optional ``[B, V]``
mask: every one maps ``(x, mask)`` to ``[B, C]``.

- :class:`gnpool.nn.AttSets` (feature-wise attention; used as it is),
- :class:`ViewGNP`: :class:`gnpool.GNPAggregation` over the present views of each sample,
- :class:`ViewPooling`: max, mean or sum over the present views,
- :class:`ViewGRU`: a GRU reading the present views in their order (3D-R2N2's recurrent
  fusion, on feature vectors); the only one whose result depends on the order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from ..aggr import GNPAggregation
from ..nn import AttSets

#: Names :func:`view_aggregator` accepts.
VIEW_AGGREGATORS = ("attsets", "gnp", "max", "mean", "sum", "gru")


def _check(x: Tensor, mask: Tensor | None, channels: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.size(2) != channels:
        got = f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor [B, V, C] with C={channels}, got {got}")
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean tensor [B, V], got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(f"mask must have shape [B, V] = {tuple(x.shape[:2])}, got "
                             f"{tuple(mask.shape)}")


class ViewPooling(torch.nn.Module):
    """Max, mean or sum over the present views; a sample without views pools to 0.

    Args:
        channels: ``C``.
        pooling: ``"max"``, ``"mean"`` or ``"sum"``.
    """

    def __init__(self, channels: int, pooling: str) -> None:
        super().__init__()
        if pooling not in ("max", "mean", "sum"):
            raise ValueError(f"pooling must be 'max', 'mean' or 'sum', got {pooling!r}")
        self.channels, self.pooling = channels, pooling

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check(x, mask, self.channels)
        if mask is None:
            return {"max": lambda: x.amax(1), "mean": lambda: x.mean(1),
                    "sum": lambda: x.sum(1)}[self.pooling]()
        keep = mask.unsqueeze(-1)
        if self.pooling == "max":
            out = x.masked_fill(~keep, -torch.inf).amax(1)
            return out.masked_fill(~mask.any(1, keepdim=True), 0)
        total = x.masked_fill(~keep, 0).sum(1)
        if self.pooling == "sum":
            return total
        return total / mask.sum(1, keepdim=True).clamp_min(1).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.channels}, pooling={self.pooling!r}"


class ViewGNP(torch.nn.Module):
    """:class:`gnpool.GNPAggregation` over the views: each sample's present views are
    one set (``ptr``-delimited), so a masked view is simply absent and the result does
    not depend on the order of the views. A one-view set passes through unchanged (GNP
    of one element is the element), which FASet's first stage relies on.

    Args:
        channels: ``C`` (each channel learns its own ``p`` and ``q``).
        **kwargs: passed to :class:`gnpool.GNPAggregation` (default ``p=1, q=1``:
            the mean).
    """

    def __init__(self, channels: int, **kwargs: Any) -> None:
        super().__init__()
        kwargs = {"p": 1.0, "q": 1.0, **kwargs}
        self.channels = channels
        self.gnp = GNPAggregation(channels=channels, **kwargs)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check(x, mask, self.channels)
        batch, views = x.shape[:2]
        if mask is None:
            flat = x.reshape(batch * views, -1)
            ptr = torch.arange(0, batch * views + 1, views, device=x.device)
        else:
            flat = x[mask]                       # row-major: sample by sample, in order
            counts = mask.sum(1)
            ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return self.gnp(flat, ptr=ptr, dim_size=batch, dim=0)


class ViewGRU(torch.nn.Module):
    """A GRU over the present views in their order; the result is its last hidden state
    (0 for a sample without views).

    Args:
        channels: ``C``, the input and hidden size.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.gru = torch.nn.GRU(channels, channels, batch_first=True)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        _check(x, mask, self.channels)
        if mask is None:
            return self.gru(x)[1][0]
        lengths = mask.sum(1)
        # Present views first, in their order, so that the sequences are padded at the end.
        order = (~mask).to(torch.uint8).argsort(dim=1, stable=True)
        x = x.gather(1, order.unsqueeze(-1).expand_as(x))
        out = x.new_zeros(x.size(0), self.channels)
        some = lengths > 0
        if bool(some.any()):
            packed = pack_padded_sequence(x[some], lengths[some].cpu(), batch_first=True,
                                          enforce_sorted=False)
            out[some] = self.gru(packed)[1][0]
        return out


def view_aggregator(name: str, channels: int, **kwargs: Any) -> torch.nn.Module:
    """The aggregator ``name`` (one of :data:`VIEW_AGGREGATORS`) for ``channels``
    features; ``kwargs`` go to :class:`gnpool.nn.AttSets` or :class:`ViewGNP`."""
    if name == "attsets":
        return AttSets(channels, **kwargs)
    if name == "gnp":
        return ViewGNP(channels, **kwargs)
    if kwargs:
        raise ValueError(f"aggregator {name!r} takes no keyword arguments, got {kwargs!r}")
    if name in ("max", "mean", "sum"):
        return ViewPooling(channels, name)
    if name == "gru":
        return ViewGRU(channels)
    raise ValueError(f"aggregator name must be one of {', '.join(VIEW_AGGREGATORS)}, "
                     f"got {name!r}")
