"""PyG's set aggregations built as readouts, checked against their formulas."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import aggr

from gnpool.baselines import SET_READOUTS, is_set_readout, pyg_set_readout
from gnpool.models import DeepSets, MessageMLPGNN, resolve_pooling


def batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(17, 8, generator=gen, dtype=torch.float64)
    index = torch.tensor([0] * 5 + [1] * 9 + [3] * 3)     # set 2 is empty
    return x, index


def test_deepsets_is_rho_of_the_sum_of_phi():
    x, index = batch()
    module = pyg_set_readout("deepsets", 8).double()
    assert isinstance(module, aggr.DeepSetsAggregation)
    phi, rho = module.local_nn, module.global_nn
    assert [type(m) for m in phi] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Linear]
    summed = torch.zeros(4, 8, dtype=torch.float64).index_add(0, index, phi(x))
    torch.testing.assert_close(module(x, index, dim_size=4), rho(summed))


def test_variance_preserving_is_the_sum_over_root_n():
    x, index = batch(1)
    module = pyg_set_readout("variance_preserving", 8)
    n = torch.bincount(index, minlength=4).double().clamp_min(1).view(-1, 1)
    expected = torch.zeros(4, 8, dtype=torch.float64).index_add(0, index, x) / n.sqrt()
    torch.testing.assert_close(module(x, index, dim_size=4), expected)


@pytest.mark.parametrize("channels, heads", [(8, 4), (6, 2), (3, 1)])
def test_set_transformer_arguments(channels, heads):
    module = pyg_set_readout("SetTransformer", channels)
    assert isinstance(module, aggr.SetTransformerAggregation)
    assert (module.heads, module.num_seed_points, len(module.encoders), len(module.decoders),
            module.layer_norm, module.dropout) == (heads, 1, 1, 1, False, 0.0)
    x = torch.randn(10, channels)
    index = torch.tensor([0] * 4 + [2] * 6)
    out = module(x, index, dim_size=3)
    assert out.shape == (3, channels) and torch.isfinite(out).all()
    # A set's output depends on its own elements only, in any order.
    perm = torch.cat([torch.tensor([2, 0, 3, 1]), 4 + torch.randperm(6)])
    torch.testing.assert_close(module(x[perm], index, dim_size=3), out)
    torch.testing.assert_close(module(x[:4], index[:4], dim_size=1), out[:1])


def test_kwargs_override_the_choices():
    assert pyg_set_readout("settransformer", 8, heads=2, num_seed_points=2).heads == 2
    assert pyg_set_readout("deepsets", 8, global_nn=None).global_nn is None


def test_names_and_errors():
    assert SET_READOUTS == ("deepsets", "settransformer", "variancepreserving")
    assert is_set_readout("Deep_Sets") and is_set_readout("SetTransformerAggregation")
    assert not is_set_readout("sum") and not is_set_readout("laf")
    with pytest.raises(ValueError, match="name='sum' is not one of PyG's set readouts"):
        pyg_set_readout("sum", 8)
    with pytest.raises(ValueError, match="channels must be a positive int, got 0"):
        pyg_set_readout("deepsets", 0)


@pytest.mark.parametrize("name", SET_READOUTS)
def test_models_resolve_them_by_name(name):
    module = resolve_pooling(name, 8)
    assert type(module).__name__.lower().startswith(name)
    gnn = MessageMLPGNN(3, 1, 8, 1, aggr="sum", readout=name)
    x, edge_index = torch.randn(5, 3), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    assert gnn(x, edge_index, batch=torch.tensor([0, 0, 1, 1, 1]), num_graphs=2).shape == (2, 1)
    sets = DeepSets(1, 1, 8, pooling=name)
    assert sets(torch.rand(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]), dim_size=2).shape == (2, 1)
