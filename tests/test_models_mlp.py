"""The MLP the models are built from."""

from __future__ import annotations

import pytest
import torch

from gnpool.models import MLP


def test_shapes_and_depth():
    mlp = MLP(3, 16, 5, num_layers=3)
    assert [lin.out_features for lin in mlp.linears] == [16, 16, 5]
    assert mlp(torch.randn(7, 3)).shape == (7, 5)


def test_last_activation_controls_the_sign_of_the_output():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    relu_end = MLP(4, 8, 8, 2, last_activation=True)
    linear_end = MLP(4, 8, 8, 2, last_activation=False)
    linear_end.load_state_dict(relu_end.state_dict())
    assert bool((relu_end(x) >= 0).all())
    assert bool((linear_end(x) < 0).any())
    assert torch.equal(relu_end(x), torch.relu(linear_end(x)))


def test_one_layer_is_affine():
    mlp = MLP(2, 99, 1, num_layers=1, last_activation=False)
    x = torch.randn(5, 2)
    lin = mlp.linears[0]
    torch.testing.assert_close(mlp(x), x @ lin.weight.T + lin.bias)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_num_layers_is_checked(bad):
    with pytest.raises(ValueError, match="num_layers"):
        MLP(2, 4, 1, num_layers=bad)


def test_softplus_ending_is_positive_and_the_names_are_equivalent():
    torch.manual_seed(0)
    x = torch.randn(200, 4)
    linear_end = MLP(4, 8, 8, 2, last_activation="linear")
    softplus_end = MLP(4, 8, 8, 2, last_activation="softplus")
    relu_end = MLP(4, 8, 8, 2, last_activation="relu")
    softplus_end.load_state_dict(linear_end.state_dict())
    relu_end.load_state_dict(linear_end.state_dict())
    torch.testing.assert_close(softplus_end(x),
                               torch.nn.functional.softplus(linear_end(x)))
    assert bool((softplus_end(x) > 0).all())
    assert torch.equal(relu_end(x), torch.relu(linear_end(x)))
    assert "last=softplus" in repr(softplus_end) and "last=linear" in repr(linear_end)


@pytest.mark.parametrize("bad", ["tanh", None, 1, "ReLU"])
def test_last_activation_is_checked(bad):
    with pytest.raises(ValueError, match=r"last_activation must be true, false or one of "
                                         r"relu, linear, softplus, got"):
        MLP(2, 4, 1, last_activation=bad)


def test_last_activation_set_after_construction_takes_effect():
    torch.manual_seed(0)
    mlp = MLP(3, 4, 2, 2, last_activation=True)
    mlp.last_activation = False
    assert mlp.ending == "linear" and "last=linear" in repr(mlp)
    assert bool((mlp(torch.randn(200, 3)) < 0).any())
    with pytest.raises(ValueError, match="last_activation must be"):
        mlp.last_activation = "tanh"
    assert mlp.last_activation is False and mlp.ending == "linear"
