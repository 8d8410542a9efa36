"""Orthographic depth maps and voxel grids of :class:`~gnpool.datasets.shapes.Shape` s.

Cameras look at the origin from the direction

    toward = (cos(el) cos(az), cos(el) sin(az), sin(el))

(azimuth ``az`` about the z axis from the x axis, elevation ``el`` above the xy plane),
with ``right = (-sin(az), cos(az), 0)`` and ``up = toward x right``: the image's columns
run along ``right`` and its rows from ``+up`` (top) to ``-up``, and ``(right, up,
toward)`` is right-handed, so no view is mirrored. The image window is
``[-1, 1]^2``, centred on the origin, and each pixel's ray is sampled at
``depth_samples`` points from the near plane (1 in front of the origin) to the far
plane (1 behind it); a pixel's depth is where its first inside sample lies.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .shapes import Shape

# Points evaluated at once: bounds the memory of one rendering call (~12 bytes a point
# for coordinates, plus a few temporaries per part).
_CHUNK_POINTS = 1 << 21


def camera_basis(azimuth: Tensor, elevation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``right``, ``up`` and ``toward`` unit vectors [V, 3] of cameras at ``azimuth`` and
    ``elevation`` [V], in degrees."""
    az, el = torch.deg2rad(azimuth.double()), torch.deg2rad(elevation.double())
    toward = torch.stack((el.cos() * az.cos(), el.cos() * az.sin(), el.sin()), dim=-1)
    right = torch.stack((-az.sin(), az.cos(), torch.zeros_like(az)), dim=-1)
    up = torch.linalg.cross(toward, right, dim=-1)
    return right, up, toward


def pixel_centers(image_size: int) -> Tensor:
    """Coordinates of the pixel centres along one image axis, from -1 to 1 (float64)."""
    step = 2.0 / image_size
    return -1 + step * (torch.arange(image_size, dtype=torch.float64) + 0.5)


def render_depth(shape: Shape, azimuth: Tensor, elevation: Tensor, image_size: int = 32,
                 depth_samples: int | None = None) -> Tensor:
    """Depth maps of ``shape`` seen from ``V`` cameras.

    Args:
        shape: the solid.
        azimuth, elevation: camera directions [V], in degrees.
        image_size: pixels per image side.
        depth_samples: samples along each ray (default ``2 * image_size``, a spacing of
            half a pixel).

    Returns:
        float32 [V, image_size, image_size] in [0, 1]: ``1 - d / 2`` where the ray meets
        the shape at distance ``d`` from the near plane (1 is the near plane, 0 the far
        one), and exactly 0 where it misses (background).
    """
    azimuth, elevation = torch.as_tensor(azimuth), torch.as_tensor(elevation)
    if azimuth.dim() != 1 or azimuth.shape != elevation.shape:
        raise ValueError(f"azimuth and elevation must be tensors [V] of one shape, got "
                         f"{tuple(azimuth.shape)} and {tuple(elevation.shape)}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    depth_samples = 2 * image_size if depth_samples is None else depth_samples
    if isinstance(depth_samples, bool) or not isinstance(depth_samples, int) or depth_samples < 2:
        raise ValueError(f"depth_samples must be an int >= 2, got {depth_samples!r}")
    right, up, toward = camera_basis(azimuth, elevation)
    coords = pixel_centers(image_size)
    u, v = coords, coords.flip(0)                      # columns left to right, rows top down
    step = 2.0 / depth_samples
    t = 1 - step * (torch.arange(depth_samples, dtype=torch.float64) + 0.5)   # near to far
    # Ray origins on the near plane's grid of pixel centres, [V, rows, cols, 3].
    plane = (v.view(1, -1, 1, 1) * up.view(-1, 1, 1, 3)
             + u.view(1, 1, -1, 1) * right.view(-1, 1, 1, 3))
    per_view = image_size * image_size * depth_samples
    chunk = max(1, _CHUNK_POINTS // per_view)
    images = []
    for start in range(0, len(azimuth), chunk):
        origins = plane[start:start + chunk]
        views = origins.shape[0]
        directions = toward[start:start + chunk].view(-1, 1, 1, 3).expand_as(origins)
        inside = shape.occupancy_on_rays(origins.reshape(-1, 3).float(),
                                         directions.reshape(-1, 3).float(), t.float())
        inside = inside.view(views, image_size, image_size, depth_samples)
        hit = inside.any(-1)
        first = inside.to(torch.uint8).argmax(-1)                    # the first inside sample
        distance = (first.double() + 0.5) * step                     # from the near plane
        images.append(torch.where(hit, 1 - distance / 2, 0.0).float())
    return torch.cat(images)


def voxel_centers(grid: int) -> Tensor:
    """Centres [grid, grid, grid, 3] of the cells of ``[-1, 1]^3`` (float64), indexed
    ``[x, y, z]``."""
    axis = -1 + (2.0 / grid) * (torch.arange(grid, dtype=torch.float64) + 0.5)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def voxelize(shape: Shape, grid: int = 32, subsamples: int = 3) -> Tensor:
    """Boolean occupancy [grid, grid, grid] of the cells of ``[-1, 1]^3``, indexed
    ``[x, y, z]``: a cell is occupied when at least half of its ``subsamples^3``
    regularly spaced sample points lie inside the shape."""
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
        raise ValueError(f"grid must be a positive int, got {grid!r}")
    if isinstance(subsamples, bool) or not isinstance(subsamples, int) or subsamples < 1:
        raise ValueError(f"subsamples must be a positive int, got {subsamples!r}")
    # The (grid * subsamples)^3 sample points as rays along z, one per (x, y) column.
    fine = grid * subsamples
    axis = -1 + (2.0 / fine) * (torch.arange(fine, dtype=torch.float32) + 0.5)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    origins = torch.stack((x, y, torch.zeros_like(x)), dim=-1).view(-1, 3)
    directions = torch.tensor([0.0, 0.0, 1.0]).expand_as(origins)
    inside = shape.occupancy_on_rays(origins, directions, axis)       # [fine^2, fine]
    share = inside.view(grid, subsamples, grid, subsamples, grid, subsamples).float()
    return share.mean((1, 3, 5)) >= 0.5
