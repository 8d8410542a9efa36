"""Primitive solids, their unions and differences, and the shape categories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gnpool.datasets.shapes import CATEGORIES, Part, Shape, sample_shape

pytestmark = pytest.mark.usefixtures("one_thread")


def random_points(n: int = 4000, seed: int = 0, extent: float = 1.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1) * extent


def rotate_z(points: torch.Tensor, angle: float) -> torch.Tensor:
    """Points rotated by -angle about z: world coordinates into a frame yawed by angle."""
    c, s = math.cos(angle), math.sin(angle)
    x, y, z = points.unbind(-1)
    return torch.stack((c * x + s * y, -s * x + c * y, z), dim=-1)


def test_primitives_match_their_formulas():
    p = random_points(extent=1.0)
    center = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    yaw = 0.7
    q = rotate_z(p - center, yaw)
    x, y, z = q.unbind(-1)
    a, b, c = 0.5, 0.3, 0.4
    expected = {
        "box": (x.abs() <= a) & (y.abs() <= b) & (z.abs() <= c),
        "ellipsoid": (x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2 <= 1,
        "cylinder": ((x / a) ** 2 + (y / b) ** 2 <= 1) & (z.abs() <= c),
        # apex at z = +c, base radii (a, b) at z = -c
        "cone": ((x / a) ** 2 + (y / b) ** 2 <= ((c - z) / (2 * c)) ** 2) & (z.abs() <= c),
    }
    for kind, truth in expected.items():
        part = Part(kind, tuple(center.tolist()), (a, b, c), yaw=yaw)
        got = part.contains(p)
        assert torch.equal(got, truth), kind
        assert 0.01 < truth.double().mean() < 0.5, "the sample must hit inside and outside"


@pytest.mark.parametrize("axis,perm", [("x", (1, 2, 0)), ("y", (2, 0, 1))])
def test_axis_puts_the_third_size_along_that_world_axis(axis, perm):
    p = random_points(seed=1)
    part = Part("cylinder", (0.0, 0.0, 0.0), (0.2, 0.3, 0.9), axis=axis)
    local = p[:, list(perm)]
    truth = ((local[:, 0] / 0.2) ** 2 + (local[:, 1] / 0.3) ** 2 <= 1) & (local[:, 2].abs() <= 0.9)
    assert torch.equal(part.contains(p), truth)


def test_union_and_difference_apply_in_order():
    p = random_points(seed=2)
    big = Part("ellipsoid", (0.0, 0.0, 0.0), (0.8, 0.8, 0.8))
    hole = Part("box", (0.0, 0.0, 0.0), (0.3, 0.3, 2.0), subtract=True)
    cap = Part("ellipsoid", (0.0, 0.0, 0.0), (0.2, 0.2, 0.2))
    shape = Shape("test", (big, hole, cap))
    r2 = (p ** 2).sum(-1)
    in_hole = (p[:, 0].abs() <= 0.3) & (p[:, 1].abs() <= 0.3)
    truth = ((r2 <= 0.64) & ~in_hole) | (r2 <= 0.04)
    assert torch.equal(shape.occupancy(p), truth)


def test_occupancy_on_rays_equals_occupancy_at_the_points():
    shape = sample_shape("mug", np.random.default_rng(3))
    gen = torch.Generator().manual_seed(3)
    origins = torch.rand(50, 3, generator=gen) * 2 - 1
    directions = torch.nn.functional.normalize(torch.randn(50, 3, generator=gen), dim=-1)
    t = torch.linspace(-1, 1, 40)
    points = origins[:, None, :] + t[None, :, None] * directions[:, None, :]
    on_rays = shape.occupancy_on_rays(origins, directions, t)
    direct = shape.occupancy(points)
    assert on_rays.any() and (~on_rays).any()
    # float32 rounding may differ on the boundary: allow a few of the 2000 samples.
    assert (on_rays != direct).sum() <= 4


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_categories_are_normalised_into_the_unit_ball(category):
    for seed in range(2):
        shape = sample_shape(category, np.random.default_rng(seed))
        assert shape.category == category
        p = random_points(8000, seed, extent=1.2)
        inside = shape.occupancy(p)
        assert inside.sum() > 20, "the shape must not be empty"
        assert p[inside].norm(dim=1).max() <= 0.95 + 0.05, "fits the ball of radius 0.95"


def test_part_validation_names_the_argument():
    with pytest.raises(ValueError, match="kind must be one of"):
        Part("torus", (0, 0, 0), (1, 1, 1))
    with pytest.raises(ValueError, match="size must be three positive lengths"):
        Part("box", (0, 0, 0), (1, 0, 1))
    with pytest.raises(ValueError, match="axis must be"):
        Part("box", (0, 0, 0), (1, 1, 1), axis="w")
    with pytest.raises(ValueError, match="category must be one of"):
        sample_shape("sofa", np.random.default_rng(0))
