"""Multi-view 3D reconstruction: a 2D CNN encodes every view, an aggregator fuses the
views' feature vectors, a 3D deconvolution decoder predicts voxel occupancy logits.

The layout follows the AttSets paper's (Yang et al., IJCV 2019): a shared image encoder
to one vector per view, the aggregator (where 3D-R2N2 has its recurrent unit), then an
up-convolutional voxel decoder trained with voxel-wise binary cross-entropy; here at a
size that trains on a CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .view_pooling import view_aggregator


def _halvings(size: int, name: str) -> int:
    """How many factors of 2 take ``size`` to 4 (``size`` must be 4 * 2^k, k >= 1)."""
    steps = (size // 4).bit_length() - 1
    if size < 8 or 4 << steps != size:
        raise ValueError(f"{name} must be 4 * 2^k with k >= 1 (8, 16, 32, ...), got {size!r}")
    return steps


class ViewEncoder(torch.nn.Module):
    """Images ``[N, in_channels, S, S]`` -> feature vectors ``[N, channels]``: stride-2
    convolutions (kernel 4) down to 4 x 4, each followed by a ReLU, then a linear layer
    and a ReLU. Widths double from ``width`` per halving."""

    def __init__(self, image_size: int, channels: int, width: int = 16,
                 in_channels: int = 1) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        c_in = in_channels
        for i in range(_halvings(image_size, "image_size")):
            c_out = width * 2 ** i
            layers += [torch.nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), torch.nn.ReLU()]
            c_in = c_out
        layers += [torch.nn.Flatten(), torch.nn.Linear(c_in * 16, channels), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


class VoxelDecoder(torch.nn.Module):
    """Feature vectors ``[N, channels]`` -> occupancy logits ``[N, G, G, G]``: a linear
    layer to a ``4^3`` grid, then stride-2 transposed convolutions (kernel 4) doubling
    it up to ``G``, with ReLUs between. Widths halve from ``width * 2^(k-1)``.
    ``occupancy`` (in (0, 1)) starts the last bias at its log-odds, so that an untrained
    decoder predicts that share of occupied voxels instead of a half."""

    def __init__(self, grid: int, channels: int, width: int = 16,
                 occupancy: float | None = None) -> None:
        super().__init__()
        steps = _halvings(grid, "grid")
        widths = [width * 2 ** (steps - 1 - i) for i in range(steps)] + [1]
        self.start = widths[0]
        self.project = torch.nn.Sequential(torch.nn.Linear(channels, widths[0] * 64),
                                           torch.nn.ReLU())
        layers: list[torch.nn.Module] = []
        for i in range(steps):
            layers.append(torch.nn.ConvTranspose3d(widths[i], widths[i + 1], 4, stride=2,
                                                   padding=1))
            if i < steps - 1:
                layers.append(torch.nn.ReLU())
        self.net = torch.nn.Sequential(*layers)
        if occupancy is not None:
            if not 0 < occupancy < 1:
                raise ValueError(f"occupancy must be in (0, 1), got {occupancy!r}")
            with torch.no_grad():
                layers[-1].bias.fill_(math.log(occupancy / (1 - occupancy)))

    def forward(self, features: Tensor) -> Tensor:
        cells = self.project(features).view(-1, self.start, 4, 4, 4)
        return self.net(cells).squeeze(1)


class MultiViewReconstructor(torch.nn.Module):
    """Views ``[B, V, 1, S, S]`` (or ``[B, V, S, S]``) and an optional mask ``[B, V]``
    (``True`` for the views present) -> voxel occupancy logits ``[B, G, G, G]``.

    Args:
        aggregator: ``"attsets"``, ``"gnp"``, ``"max"``, ``"mean"``, ``"sum"``, ``"gru"``
            (see :func:`gnpool.models.view_pooling.view_aggregator`) or a module called
            as ``aggregator(features [B, V, C], mask)``.
        image_size: ``S``; grid: ``G`` (both 4 * 2^k, k >= 1).
        channels: ``C``, the length of a view's feature vector.
        width: base width of the encoder and decoder.
        silhouette: feed only ``views > 0`` (the silhouette of a depth map).
        occupancy: the share of occupied voxels the untrained decoder predicts (its last
            bias starts at the log-odds); ``None`` keeps PyTorch's initialisation.
        aggregator_kwargs: passed to the aggregator's constructor.
    """

    def __init__(self, aggregator: str | torch.nn.Module = "attsets", image_size: int = 32,
                 grid: int = 32, channels: int = 128, width: int = 16,
                 silhouette: bool = False, occupancy: float | None = 0.05,
                 aggregator_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.image_size, self.grid, self.channels = image_size, grid, channels
        self.silhouette = silhouette
        self.encoder = ViewEncoder(image_size, channels, width)
        # Built before the aggregator: with the same seed, every aggregator starts from
        # the same encoder and decoder.
        self.decoder = VoxelDecoder(grid, channels, width, occupancy)
        if isinstance(aggregator, str):
            aggregator = view_aggregator(aggregator, channels, **(aggregator_kwargs or {}))
        elif aggregator_kwargs:
            raise ValueError("aggregator_kwargs apply to an aggregator given by name, got a "
                             f"module {type(aggregator).__name__}")
        self.aggregator = aggregator

    def encode(self, views: Tensor) -> Tensor:
        """Feature vectors ``[B, V, C]`` of every view."""
        if views.dim() == 4:
            views = views.unsqueeze(2)
        if views.dim() != 5 or tuple(views.shape[2:]) != (1, self.image_size, self.image_size):
            raise ValueError(f"views must have shape [B, V, 1, {self.image_size}, "
                             f"{self.image_size}] or [B, V, {self.image_size}, "
                             f"{self.image_size}], got {tuple(views.shape)}")
        if self.silhouette:
            views = (views > 0).to(views.dtype)
        batch, num = views.shape[:2]
        return self.encoder(views.flatten(0, 1)).view(batch, num, -1)

    def aggregate(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """``features`` ``[B, V, C]`` fused over the views -> ``[B, C]``."""
        return self.aggregator(features, mask)

    def decode(self, fused: Tensor) -> Tensor:
        """Occupancy logits ``[B, G, G, G]`` of fused features ``[B, C]``."""
        return self.decoder(fused)

    def forward(self, views: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.decode(self.aggregate(self.encode(views), mask))
