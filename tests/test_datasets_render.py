"""Rendering sanity: discs, rectangles, depths, camera frames and voxel grids."""

from __future__ import annotations

import math

import pytest
import torch

from gnpool.datasets.render import (
    camera_basis,
    pixel_centers,
    render_depth,
    voxel_centers,
    voxelize,
)
from gnpool.datasets.shapes import Part, Shape

BALL = Shape("ball", (Part("ellipsoid", (0.0, 0.0, 0.0), (0.6, 0.6, 0.6)),))


pytestmark = pytest.mark.usefixtures("one_thread")


def test_camera_frames_are_orthonormal_right_handed_and_point_at_the_camera():
    az = torch.tensor([0.0, 90.0, 33.0, 250.0])
    el = torch.tensor([0.0, 0.0, 45.0, -60.0])
    right, up, toward = camera_basis(az, el)
    frame = torch.stack((right, up, toward), dim=1)                    # [V, 3, 3]
    eye = torch.eye(3, dtype=torch.float64).expand(4, 3, 3)
    assert torch.allclose(frame @ frame.transpose(1, 2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(frame), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(toward[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(toward[1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
                          atol=1e-12)
    assert torch.allclose(up[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert math.isclose(toward[2, 2].item(), math.sin(math.radians(45)))


def test_a_ball_is_the_same_disc_from_every_viewpoint():
    gen = torch.Generator().manual_seed(0)
    az = torch.rand(12, generator=gen) * 360
    el = torch.rand(12, generator=gen) * 120 - 60
    images = render_depth(BALL, az, el, image_size=32)
    masks = images > 0
    assert all(torch.equal(masks[0], m) for m in masks), "same silhouette from every view"
    # The disc: exactly the pixels whose centres lie within the radius.
    c = pixel_centers(32)
    disc = (c.view(-1, 1) ** 2 + c.view(1, -1) ** 2) <= 0.36
    assert torch.equal(masks[0], disc)
    area = masks[0].double().mean().item() * 4
    assert abs(area - math.pi * 0.36) < 0.03 * math.pi * 0.36


def test_a_ball_s_depth_is_its_distance_from_the_near_plane():
    image = render_depth(BALL, torch.tensor([10.0]), torch.tensor([20.0]), 32, 64)[0]
    c = pixel_centers(32)
    rho2 = c.view(-1, 1) ** 2 + c.view(1, -1) ** 2
    inside = rho2 <= 0.36
    # The ray at radius rho meets the ball at t = sqrt(r^2 - rho^2), i.e. at distance
    # 1 - t from the near plane; samples are 2/64 apart.
    distance = 1 - torch.sqrt((0.36 - rho2).clamp_min(0))
    expected = 1 - distance / 2
    assert (image[inside] - expected[inside].float()).abs().max() <= 1 / 64 + 1e-6
    assert (image[~inside] == 0).all()


def test_a_box_seen_along_an_axis_is_a_rectangle():
    box = Shape("box", (Part("box", (0.0, 0.0, 0.0), (0.3, 0.5, 0.25)),))
    # Looking along -x (azimuth 0, elevation 0): columns run along +y, rows down along z.
    image = render_depth(box, torch.tensor([0.0]), torch.tensor([0.0]), image_size=40)[0]
    c = pixel_centers(40)
    rows = c.flip(0).view(-1, 1).abs() <= 0.25              # z
    cols = c.view(1, -1).abs() <= 0.5                       # y
    assert torch.equal(image > 0, rows & cols)
    # The face facing the camera is flat: one depth, at x = 0.3 (distance 0.7).
    face = image[image > 0]
    assert torch.allclose(face, face[0].expand_as(face))
    assert abs(face[0].item() - (1 - 0.7 / 2)) <= 1 / 80 + 1e-6


def test_a_box_seen_from_above_is_a_rectangle_rotated_by_its_yaw():
    box = Shape("box", (Part("box", (0.0, 0.0, 0.0), (0.6, 0.2, 0.2), yaw=math.pi / 2),))
    # From above (elevation ~90 is not allowed; 89.9 leaves rows along -x within 1e-3).
    image = render_depth(box, torch.tensor([0.0]), torch.tensor([89.9]), image_size=32)[0]
    # Columns follow +y and rows -x; yawed by 90 degrees, the long side lies along y.
    c = pixel_centers(32)
    rows = c.flip(0).view(-1, 1).abs() <= 0.2               # -x
    cols = c.view(1, -1).abs() <= 0.6                       # y
    assert torch.equal(image > 0, rows & cols)
    assert int(rows.sum()) < int(cols.sum())


def test_voxelize_counts_the_share_of_sub_samples_inside():
    shape = Shape("two", (Part("ellipsoid", (0.1, 0.0, 0.0), (0.5, 0.4, 0.3)),
                          Part("box", (0.0, 0.0, 0.0), (0.2, 0.2, 0.9), subtract=True)))
    grid, sub = 8, 3
    cell = 2.0 / grid
    offsets = cell * ((torch.arange(sub, dtype=torch.float64) + 0.5) / sub - 0.5)
    centers = voxel_centers(grid)
    share = torch.zeros(grid, grid, grid, dtype=torch.float64)
    for dx in offsets:
        for dy in offsets:
            for dz in offsets:
                point = centers + torch.stack((dx, dy, dz))
                share += shape.occupancy(point.float()).double()
    expected = share / sub ** 3 >= 0.5
    got = voxelize(shape, grid, sub)
    assert got.shape == (grid, grid, grid) and got.any()
    assert torch.equal(got, expected)


def test_voxels_are_indexed_x_y_z():
    slab = Shape("slab", (Part("box", (0.5, 0.0, 0.0), (0.5, 1.0, 1.0)),))
    vox = voxelize(slab, 4, 1)
    assert vox[2:].all() and not vox[:2].any()


@pytest.mark.parametrize("kwargs,match", [
    ({"image_size": 0}, "image_size must be a positive int"),
    ({"depth_samples": 1}, "depth_samples must be an int >= 2"),
])
def test_render_validates_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_depth(BALL, torch.tensor([0.0]), torch.tensor([0.0]), **kwargs)
    with pytest.raises(ValueError, match="azimuth and elevation must be tensors"):
        render_depth(BALL, torch.tensor([0.0, 1.0]), torch.tensor([0.0]))
