"""The multi-view reconstructor: shapes, masks, initialisation and arguments."""

from __future__ import annotations

import math

import pytest
import torch

from gnpool.models import MultiViewReconstructor, ViewEncoder, VoxelDecoder


@pytest.mark.parametrize("image_size,grid", [(8, 8), (16, 32), (32, 16)])
def test_shapes(image_size, grid):
    torch.manual_seed(0)
    model = MultiViewReconstructor("attsets", image_size=image_size, grid=grid, channels=12,
                                   width=4)
    views = torch.rand(3, 5, 1, image_size, image_size)
    assert model(views).shape == (3, grid, grid, grid)
    assert model(views[:, :, 0]).shape == (3, grid, grid, grid)      # [B, V, S, S] too
    assert model.encode(views).shape == (3, 5, 12)
    assert ViewEncoder(image_size, 7, 2)(views[:, 0]).shape == (3, 7)
    assert VoxelDecoder(grid, 7, 2)(torch.rand(3, 7)).shape == (3, grid, grid, grid)


@pytest.mark.parametrize("name", ["attsets", "gnp", "max", "mean", "sum", "gru"])
def test_a_masked_view_is_an_absent_view(name):
    torch.manual_seed(0)
    model = MultiViewReconstructor(name, image_size=8, grid=8, channels=8, width=2).double()
    views = torch.rand(2, 4, 1, 8, 8, dtype=torch.float64)
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    out = model(views, mask)
    assert torch.allclose(out[0], model(views[:1, [0, 2, 3]])[0], atol=1e-10)
    assert torch.allclose(out[1], model(views[1:])[0], atol=1e-10)


def test_every_aggregator_starts_from_the_same_encoder_and_decoder():
    states = []
    for name in ("attsets", "gnp", "gru", "max"):
        torch.manual_seed(3)
        model = MultiViewReconstructor(name, image_size=8, grid=8, channels=8, width=2)
        states.append({k: v for k, v in model.state_dict().items()
                       if not k.startswith("aggregator.")})
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        assert all(torch.equal(state[k], states[0][k]) for k in state)


def test_occupancy_sets_the_last_bias_and_silhouettes_are_binary():
    model = MultiViewReconstructor("mean", image_size=8, grid=8, channels=8, width=2,
                                   occupancy=0.05)
    bias = model.decoder.net[-1].bias
    assert torch.allclose(bias, torch.full_like(bias, math.log(0.05 / 0.95)))
    sil = MultiViewReconstructor("mean", image_size=8, grid=8, channels=8, width=2,
                                 silhouette=True)
    views = torch.rand(1, 2, 1, 8, 8) * (torch.rand(1, 2, 1, 8, 8) > 0.5)
    assert torch.equal(sil.encode(views), sil.encode((views > 0).float()))


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="image_size must be 4 \\* 2\\^k"):
        MultiViewReconstructor("mean", image_size=12)
    with pytest.raises(ValueError, match="grid must be 4 \\* 2\\^k"):
        MultiViewReconstructor("mean", grid=4)
    with pytest.raises(ValueError, match="occupancy must be in \\(0, 1\\)"):
        MultiViewReconstructor("mean", occupancy=1.0)
    model = MultiViewReconstructor("mean", image_size=8, grid=8, channels=4, width=2)
    with pytest.raises(ValueError, match="views must have shape \\[B, V, 1, 8, 8\\]"):
        model(torch.rand(2, 3, 1, 16, 16))
