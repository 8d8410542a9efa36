"""Solid shapes built from primitives (boxes, ellipsoids, cylinders, cones), their unions
and differences, and the random shape categories of the multi-view dataset.

A :class:`Shape` is a sequence of :class:`Part` s applied in order: a part adds its
solid to the shape, or removes it (``subtract=True``). Occupancy is evaluated exactly at
any points, so rendering and voxelisation sample the same solid.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

KINDS = ("box", "ellipsoid", "cylinder", "cone")
_AXES = {"x": (1, 2, 0), "y": (2, 0, 1), "z": (0, 1, 2)}


@dataclass(frozen=True)
class Part:
    """One primitive solid.

    Attributes:
        kind: ``"box"`` (half extents ``size``), ``"ellipsoid"`` (radii ``size``),
            ``"cylinder"`` (cross-section radii ``size[0]``, ``size[1]``, half length
            ``size[2]``) or ``"cone"`` (base radii ``size[0]``, ``size[1]``, half length
            ``size[2]``, apex at the positive end of its axis).
        center: position of the primitive's centre.
        size: three positive lengths in the primitive's own frame.
        axis: the world axis (``"x"``, ``"y"`` or ``"z"``) of the primitive's third
            size (the cylinder's or cone's axis).
        yaw: rotation about the world z axis, in radians, applied after ``axis``.
        subtract: remove the solid from what the earlier parts built.
    """

    kind: str
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    axis: str = "z"
    yaw: float = 0.0
    subtract: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.axis not in _AXES:
            raise ValueError(f"axis must be 'x', 'y' or 'z', got {self.axis!r}")
        if len(self.size) != 3 or min(self.size) <= 0:
            raise ValueError(f"size must be three positive lengths, got {self.size!r}")
        if len(self.center) != 3:
            raise ValueError(f"center must have three coordinates, got {self.center!r}")

    def affine(self) -> tuple[Tensor, Tensor]:
        """``(A, b)`` (float64) mapping a world point ``p`` to ``A @ p + b`` in the
        primitive's frame scaled by its size: the solid is then a unit cube, ball,
        cylinder or cone with its axis last."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        yaw = torch.tensor([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        matrix = yaw[list(_AXES[self.axis])] / torch.tensor(self.size,
                                                            dtype=torch.float64).view(3, 1)
        return matrix, -matrix @ torch.tensor(self.center, dtype=torch.float64)

    def contains(self, points: Tensor) -> Tensor:
        """Boolean [...]: which of ``points`` [..., 3] lie inside (boundary included)."""
        matrix, shift = (t.to(points.dtype) for t in self.affine())
        return self._inside(torch.addmm(shift, points.reshape(-1, 3), matrix.T)
                            .view(points.shape))

    def contains_on_rays(self, origins: Tensor, directions: Tensor, t: Tensor) -> Tensor:
        """Boolean [R, D]: which of the points ``origins + t * directions`` lie inside,
        for rays ``origins``, ``directions`` [R, 3] and distances ``t`` [D].

        The affine map is applied to the R rays rather than to the R * D points: one
        multiply-add per coordinate then gives every sample in the primitive's frame.
        """
        matrix, shift = (x.to(origins.dtype) for x in self.affine())
        start = torch.addmm(shift, origins, matrix.T)
        step = directions @ matrix.T
        return self._inside(torch.addcmul(start.unsqueeze(1), t.view(1, -1, 1),
                                          step.unsqueeze(1)))

    def _inside(self, q: Tensor) -> Tensor:
        # q: points in the frame where the solid is the unit cube, ball, cylinder or cone.
        if self.kind == "box":
            return q.abs().amax(-1) <= 1
        if self.kind == "ellipsoid":
            return (q * q).sum(-1) <= 1
        radial = q[..., 0] ** 2 + q[..., 1] ** 2
        along = q[..., 2]
        if self.kind == "cylinder":
            return (radial <= 1) & (along.abs() <= 1)
        # cone: the radius shrinks linearly from the base (along = -1) to the apex (+1).
        return (along.abs() <= 1) & (radial <= ((1 - along) / 2) ** 2)

    def scaled(self, scale: float, offset: tuple[float, float, float]) -> Part:
        """The part moved by ``-offset`` and then scaled by ``scale`` about the origin."""
        center = tuple((c - o) * scale for c, o in zip(self.center, offset, strict=True))
        return replace(self, center=center, size=tuple(s * scale for s in self.size))


@dataclass(frozen=True)
class Shape:
    """A solid: ``parts`` applied in order (union, or difference for subtracted parts)."""

    category: str
    parts: tuple[Part, ...]

    def occupancy(self, points: Tensor) -> Tensor:
        """Boolean [...]: which of ``points`` [..., 3] lie inside the shape."""
        return self._combine(lambda part: part.contains(points), points.shape[:-1],
                             points.device)

    def occupancy_on_rays(self, origins: Tensor, directions: Tensor, t: Tensor) -> Tensor:
        """Boolean [R, D]: occupancy at ``origins + t * directions`` (see
        :meth:`Part.contains_on_rays`)."""
        return self._combine(lambda part: part.contains_on_rays(origins, directions, t),
                             (origins.size(0), t.numel()), origins.device)

    def _combine(self, contains, shape, device) -> Tensor:
        inside = torch.zeros(shape, dtype=torch.bool, device=device)
        for part in self.parts:
            hit = contains(part)
            inside = inside & ~hit if part.subtract else inside | hit
        return inside

    def normalized(self, radius: float = 0.95, probe: int = 48, extent: float = 1.6) -> Shape:
        """The shape centred on its bounding box and scaled to fit a ball of ``radius``.

        The extent is measured on a ``probe``^3 grid over ``[-extent, extent]^3``,
        with a cell's half diagonal added, so the solid fits the ball up to parts
        thinner than a probe cell.
        """
        axis = torch.linspace(-extent, extent, probe, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)
        inside = grid[self.occupancy(grid)]
        if inside.numel() == 0:
            raise ValueError(f"shape of category {self.category!r} is empty on the probe grid")
        lo, hi = inside.min(0).values, inside.max(0).values
        center = (lo + hi) / 2
        cell = 2 * extent / (probe - 1)
        reach = float((inside - center).norm(dim=1).max()) + cell * math.sqrt(3) / 2
        offset = tuple(float(c) for c in center)
        return Shape(self.category, tuple(p.scaled(radius / reach, offset) for p in self.parts))


Sampler = Callable[[np.random.Generator], Shape]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _legs(rng: np.random.Generator, half_w: float, half_d: float, bottom: float, top: float,
          radius: float) -> list[Part]:
    inset = _u(rng, 0.05, 0.15)
    mid, half = (bottom + top) / 2, (top - bottom) / 2
    return [Part("cylinder", (sx * (half_w - inset), sy * (half_d - inset), mid),
                 (radius, radius, half)) for sx in (-1, 1) for sy in (-1, 1)]


def table(rng: np.random.Generator) -> Shape:
    """A box top on four cylinder legs."""
    w, d, h, t = _u(rng, 0.6, 1.0), _u(rng, 0.4, 0.9), _u(rng, 0.4, 0.8), _u(rng, 0.04, 0.1)
    top = Part("box", (0.0, 0.0, h - t), (w, d, t))
    return Shape("table", (top, *_legs(rng, w, d, -h, h - 2 * t, _u(rng, 0.05, 0.1))))


def chair(rng: np.random.Generator) -> Shape:
    """A seat on four legs with a back rest along one edge."""
    w, d, t = _u(rng, 0.35, 0.55), _u(rng, 0.35, 0.55), _u(rng, 0.04, 0.08)
    seat_z, back_h = _u(rng, -0.2, 0.1), _u(rng, 0.4, 0.7)
    seat = Part("box", (0.0, 0.0, seat_z), (w, d, t))
    back = Part("box", (0.0, -d + t, seat_z + t + back_h), (w, t, back_h))
    legs = _legs(rng, w, d, seat_z - t - _u(rng, 0.4, 0.6), seat_z - t, _u(rng, 0.04, 0.08))
    return Shape("chair", (seat, back, *legs))


def mug(rng: np.random.Generator) -> Shape:
    """A hollow cylinder open at the top, with a box handle with a hole."""
    r, h, wall = _u(rng, 0.35, 0.6), _u(rng, 0.4, 0.7), _u(rng, 0.06, 0.12)
    outer = Part("cylinder", (0.0, 0.0, 0.0), (r, r, h))
    inner = Part("cylinder", (0.0, 0.0, wall + 0.05), (r - wall, r - wall, h), subtract=True)
    reach, grip = _u(rng, 0.15, 0.3), _u(rng, 0.3, 0.6) * h
    handle = Part("box", (r + reach / 2, 0.0, 0.0), (reach / 2 + wall, wall, grip))
    hole = Part("box", (r + reach / 2, 0.0, 0.0), (reach / 2, 2 * wall, grip - wall),
                subtract=True)
    return Shape("mug", (outer, inner, handle, hole))


def snowman(rng: np.random.Generator) -> Shape:
    """Two or three stacked balls, each smaller than the one below."""
    radius, z, parts = _u(rng, 0.35, 0.5), 0.0, []
    for i in range(int(rng.integers(2, 4))):
        if i:
            shrink = _u(rng, 0.6, 0.8)
            z += radius * (1 + shrink) * _u(rng, 0.75, 0.9)
            radius *= shrink
        parts.append(Part("ellipsoid", (0.0, 0.0, z), (radius, radius, radius)))
    return Shape("snowman", tuple(parts))


def dumbbell(rng: np.random.Generator) -> Shape:
    """A bar along x with a ball or a box at each end."""
    half, r = _u(rng, 0.5, 0.8), _u(rng, 0.06, 0.12)
    parts = [Part("cylinder", (0.0, 0.0, 0.0), (r, r, half), axis="x")]
    size = _u(rng, 0.2, 0.35)
    kind = "ellipsoid" if rng.random() < 0.5 else "box"
    for sign in (-1, 1):
        parts.append(Part(kind, (sign * half, 0.0, 0.0), (size, size, size)))
    return Shape("dumbbell", tuple(parts))


def arch(rng: np.random.Generator) -> Shape:
    """A block with a cylindrical tunnel cut through its lower part."""
    w, d, h = _u(rng, 0.6, 1.0), _u(rng, 0.2, 0.5), _u(rng, 0.4, 0.8)
    r = _u(rng, 0.3, 0.7) * min(w, 2 * h)
    block = Part("box", (0.0, 0.0, 0.0), (w, d, h))
    tunnel = Part("cylinder", (0.0, 0.0, -h), (r, r, 2 * d), axis="y", subtract=True)
    return Shape("arch", (block, tunnel))


def lamp(rng: np.random.Generator) -> Shape:
    """A flat round base, a thin pole and a cone or ball shade."""
    base_r, base_t, height = _u(rng, 0.25, 0.45), _u(rng, 0.04, 0.08), _u(rng, 0.6, 1.0)
    base = Part("cylinder", (0.0, 0.0, base_t), (base_r, base_r, base_t))
    pole_r = _u(rng, 0.03, 0.06)
    pole = Part("cylinder", (0.0, 0.0, base_t + height / 2), (pole_r, pole_r, height / 2))
    shade_r, shade_h = _u(rng, 0.25, 0.45), _u(rng, 0.15, 0.3)
    kind = "cone" if rng.random() < 0.5 else "ellipsoid"
    shade = Part(kind, (0.0, 0.0, base_t + height), (shade_r, shade_r, shade_h))
    return Shape("lamp", (base, pole, shade))


def bowl(rng: np.random.Generator) -> Shape:
    """The lower half of a hollow ellipsoid on a short foot."""
    r, depth, wall = _u(rng, 0.5, 0.8), _u(rng, 0.5, 0.9), _u(rng, 0.06, 0.12)
    outer = Part("ellipsoid", (0.0, 0.0, 0.0), (r, r, r * depth))
    inner = Part("ellipsoid", (0.0, 0.0, 0.0), (r - wall, r - wall, r * depth - wall),
                 subtract=True)
    cut = Part("box", (0.0, 0.0, r), (2 * r, 2 * r, r), subtract=True)
    foot_r = _u(rng, 0.2, 0.4) * r
    foot = Part("cylinder", (0.0, 0.0, -r * depth), (foot_r, foot_r, wall))
    return Shape("bowl", (outer, inner, cut, foot))


#: Every category, in a fixed order (its index is the stored category id).
CATEGORIES: dict[str, Sampler] = {
    "table": table, "chair": chair, "mug": mug, "snowman": snowman, "dumbbell": dumbbell,
    "arch": arch, "lamp": lamp, "bowl": bowl,
}


def sample_shape(category: str, rng: np.random.Generator, radius: float = 0.95) -> Shape:
    """A random shape of ``category``, normalised to fit a ball of ``radius``."""
    if category not in CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    return CATEGORIES[category](rng).normalized(radius)
