"""AttSetsAggregation inside PyG and against AttentionalAggregation."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from conftest import random_sets, to_ptr
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GraphConv, SAGEConv
from torch_geometric.nn import aggr as pyg

from gnpool import AttSetsAggregation, register


def test_equals_pyg_attentional_aggregation_with_the_same_weights():
    x, index = random_sets(400, 30, 16, seed=0, dtype=torch.float32)
    ours = AttSetsAggregation(16)
    gate = torch.nn.Linear(16, 16)
    gate.load_state_dict(ours.score.state_dict())
    ref = pyg.AttentionalAggregation(gate_nn=gate)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ours, out_ref = ours(xa, index, dim_size=32), ref(xb, index, dim_size=32)
    torch.testing.assert_close(out_ours, out_ref, rtol=1e-5, atol=1e-6)
    out_ours.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.score.weight.grad, gate.weight.grad, rtol=1e-4, atol=1e-4)


def test_initialisation_is_xavier_with_zero_bias():
    aggr = AttSetsAggregation(64)
    bound = (6 / (64 + 64)) ** 0.5
    assert torch.equal(aggr.score.bias, torch.zeros(64))
    largest = aggr.score.weight.detach().abs().max().item()
    assert 0.9 * bound < largest <= bound


def test_index_ptr_and_readout():
    graphs = [Data(x=torch.randn(n, 4)) for n in (2, 7, 1)]
    batch = Batch.from_data_list(graphs)
    aggr = AttSetsAggregation(4, activation="tanh")
    out = aggr(batch.x, batch.batch, dim_size=3)
    torch.testing.assert_close(out, aggr(batch.x, ptr=batch.ptr))
    for i, data in enumerate(graphs):
        torch.testing.assert_close(out[i], aggr(data.x).squeeze(0))
    torch.testing.assert_close(out[2], graphs[2].x[0])  # one element passes through


def test_one_score_per_element_mode():
    x, index = random_sets(50, 5, 3, seed=1, dtype=torch.float32)
    aggr = AttSetsAggregation(3, per_channel=False)
    assert aggr.score.out_features == 1
    weights = torch.zeros(50, 1)
    for s in range(5):
        member = index == s
        weights[member] = torch.softmax(aggr.score(x[member]), 0)
    ref = torch.zeros(5, 3).index_add_(0, index, weights * x)
    torch.testing.assert_close(aggr(x, index, dim_size=5), ref)


def test_message_passing_multi_aggregation_compile_and_pickle():
    torch.manual_seed(2)
    x = torch.randn(12, 8)
    edge_index = torch.randint(0, 12, (2, 40))
    conv = GraphConv(8, 8, aggr=AttSetsAggregation(8))
    out = conv(x, edge_index)
    assert out.shape == (12, 8)
    multi = pyg.MultiAggregation([pyg.MeanAggregation(), AttSetsAggregation(8)])
    assert multi(x, torch.arange(12) % 3, dim_size=3).shape == (3, 16)
    aggr = AttSetsAggregation(8)
    compiled = torch.compile(aggr, fullgraph=True)
    torch.testing.assert_close(compiled(x, torch.arange(12) % 3, dim_size=3),
                               aggr(x, torch.arange(12) % 3, dim_size=3))
    clone = pickle.loads(pickle.dumps(aggr))
    torch.testing.assert_close(clone(x, ptr=to_ptr(torch.arange(12) // 4, 3)),
                               aggr(x, ptr=to_ptr(torch.arange(12) // 4, 3)))


def test_register_resolves_attsets():
    register()
    conv = GraphConv(8, 8, aggr="attsets", aggr_kwargs={"in_channels": 8})
    assert isinstance(conv.aggr_module, AttSetsAggregation)


@pytest.mark.parametrize("conv_class", [SAGEConv, GraphConv])
def test_bare_string_builds_a_lazy_aggregation_equal_to_the_explicit_one(conv_class):
    register()
    torch.manual_seed(3)
    x, edge_index = torch.randn(10, 16), torch.randint(0, 10, (2, 30))
    lazy = conv_class(16, 16, aggr="attsets")            # PyG passes no in_channels
    assert lazy.aggr_module.in_channels == -1
    out = lazy(x, edge_index)
    assert lazy.aggr_module.in_channels == 16 and lazy.aggr_module.score.weight.shape == (16, 16)
    explicit = conv_class(16, 16, aggr="attsets", aggr_kwargs={"in_channels": 16})
    explicit.load_state_dict(lazy.state_dict())
    torch.testing.assert_close(out, explicit(x, edge_index))
    # Materialised like the explicit form: Xavier-uniform weights, zero bias.
    bound = (6 / (16 + 16)) ** 0.5
    assert torch.equal(lazy.aggr_module.score.bias, torch.zeros(16))
    assert float(lazy.aggr_module.score.weight.detach().abs().max()) <= bound


def test_lazy_copies_state_dict_optimizer_and_one_score_per_element():
    x, index = random_sets(30, 4, 6, seed=4, dtype=torch.float32)
    trained = AttSetsAggregation(6)
    lazy = AttSetsAggregation()
    copied, pickled = copy.deepcopy(lazy), pickle.loads(pickle.dumps(lazy))
    lazy.load_state_dict(trained.state_dict())          # a lazy module loads a full one
    torch.testing.assert_close(lazy(x, index), trained(x, index))
    for module in (copied, pickled):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)   # before the first call
        module(x, index).square().sum().backward()
        before = module.score.weight.detach().clone()
        optimizer.step()
        assert not torch.equal(module.score.weight, before)
    shared = AttSetsAggregation(per_channel=False).double()
    assert shared(x.double(), index).dtype == torch.float64
    assert shared.score.weight.shape == (1, 6) and repr(shared) == \
        "AttSetsAggregation(6, per_channel=False)"


def test_one_dimensional_x_is_rejected_naming_the_dimensions():
    with pytest.raises(ValueError, match=r"x must have at least 2 dimensions.*dim=-2.*"
                                         r"shape \(5,\).*unsqueeze\(-1\)"):
        AttSetsAggregation(1)(torch.randn(5), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("kwargs, message", [
    ({"in_channels": 0}, "in_channels must be a positive int, or -1"),
    ({"in_channels": 4, "activation": "relu"}, "activation must be one of"),
])
def test_bad_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttSetsAggregation(**kwargs)


def test_wrong_feature_count_is_rejected():
    with pytest.raises(ValueError, match="in_channels=4"):
        AttSetsAggregation(4)(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))
