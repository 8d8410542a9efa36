"""gnpool.param_groups: pooling parameters in their own optimiser group."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import aggr as pyg

import gnpool
from gnpool.models import DeepSets, MessageMLPGNN
from gnpool.training import DEFAULT_POOL_LR, pooling_parameters


def test_finds_gnp_powermean_and_softmax_parameters():
    gnn = MessageMLPGNN(3, 1, hidden_channels=4, num_layers=2,
                        aggr=[gnpool.GNPAggregation(channels=4),
                              pyg.PowerMeanAggregation(learn=True, channels=4)],
                        readout=pyg.SoftmaxAggregation(learn=True, channels=4))
    names = [n for n, _ in pooling_parameters(gnn)]
    assert names == ["convs.0.aggr_module.p_unit", "convs.0.aggr_module.beta",
                     "convs.0.aggr_module.p_neg_unit", "convs.0.aggr_module.beta_neg",
                     "convs.1.aggr_module.p", "readout.t"]
    weights, pooling = gnpool.param_groups(gnn, lr=1e-3, pool_lr=0.2, weight_decay=1e-5)
    assert pooling["name"] == "pooling" and pooling["lr"] == 0.2
    assert pooling["weight_decay"] == 0.0 and weights["weight_decay"] == 1e-5
    every = {id(p) for p in gnn.parameters()}
    grouped = [id(p) for g in (weights, pooling) for p in g["params"]]
    assert sorted(grouped) == sorted(every)         # each parameter exactly once
    assert len(pooling["params"]) == 6


def test_defaults_and_a_model_without_pooling_parameters():
    model = DeepSets(1, 1, 8, "gnp")
    groups = gnpool.param_groups(model, lr=0.01)
    assert groups[1]["lr"] == DEFAULT_POOL_LR
    assert gnpool.param_groups(model, lr=0.01, pool_lr=None)[1]["lr"] == 0.01
    fixed = DeepSets(1, 1, 8, "max")
    assert [g["name"] for g in gnpool.param_groups(fixed, lr=0.01)] == ["weights"]


def test_a_module_can_name_its_own_pooling_parameters():
    class Scaled(torch.nn.Module):
        pooling_parameter_names = ("alpha",)

        def __init__(self):
            super().__init__()
            self.alpha = torch.nn.Parameter(torch.ones(1))
            self.weight = torch.nn.Parameter(torch.ones(2))

    assert [n for n, _ in pooling_parameters(Scaled())] == ["alpha"]


def test_adam_trains_the_groups_at_their_rates():
    model = DeepSets(1, 1, 4, "gnp")
    optimizer = torch.optim.Adam(gnpool.param_groups(model, lr=1e-6, pool_lr=0.1))
    before = model.pooling.p_unit.detach().clone()
    weight = model.encoder.linears[0].weight.detach().clone()
    model(torch.rand(10, 1), torch.tensor([0] * 5 + [1] * 5)).sum().backward()
    optimizer.step()
    moved = (model.pooling.p_unit.detach() - before).abs()
    assert bool((moved[moved > 0] > 0.05).all()) and bool((moved > 0).any())
    assert float((model.encoder.linears[0].weight.detach() - weight).abs().max()) < 1e-5


@pytest.mark.parametrize("kwargs, message", [({"lr": -1.0}, "lr must be"),
                                             ({"lr": 0.1, "pool_lr": "fast"}, "pool_lr must"),
                                             ({"lr": 0.1, "weight_decay": float("nan")},
                                              "weight_decay must")])
def test_bad_rates_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gnpool.param_groups(DeepSets(1, 1, 4, "gnp"), **kwargs)


def _gnn(seed):
    torch.manual_seed(seed)
    return MessageMLPGNN(3, 1, hidden_channels=4, num_layers=2,
                         aggr=[gnpool.GNPAggregation(channels=4),
                               pyg.PowerMeanAggregation(learn=True, channels=4)],
                         readout=gnpool.GNPAggregation(channels=4))


def test_transfer_pooling_copies_and_freezes_only_the_pooling_parameters():
    from gnpool.training import snap_parts_, transfer_pooling_

    source, target = _gnn(0), _gnn(1)
    with torch.no_grad():
        source.convs[0].aggr_module.p_unit.fill_(0.97)
        source.convs[0].aggr_module.p_neg_unit.fill_(-0.97)
        source.convs[1].aggr_module.p.fill_(3.0)
    snap_parts_(source, float("inf"))
    before = {n: p.clone() for n, p in target.named_parameters()}
    names = transfer_pooling_(source, target)
    assert names == [n for n, _ in pooling_parameters(source)]
    src = dict(source.named_parameters())
    for name, param in target.named_parameters():
        if name in names:
            assert torch.equal(param, src[name]) and not param.requires_grad
        else:   # the weights keep their own initialisation and keep training
            assert torch.equal(param, before[name]) and param.requires_grad
    assert target.convs[0].aggr_module.closest_pooling(1e-6) == ["max"] * 4
    assert bool((target.convs[1].aggr_module.p == 3.0).all())
    # Frozen pooling parameters are in neither optimiser group: Adam trains the weights only.
    groups = gnpool.param_groups(target, lr=1e-3)
    assert [g["name"] for g in groups] == ["weights"]
    assert pooling_parameters(target) == []


def test_transfer_pooling_can_leave_the_parameters_trainable_and_rejects_other_models():
    from gnpool.training import transfer_pooling_

    source, target = _gnn(0), _gnn(1)
    transfer_pooling_(source, target, freeze=False)
    assert len(pooling_parameters(target)) == 9
    with pytest.raises(ValueError, match=r"only in source: \['readout.beta'"):
        transfer_pooling_(source, MessageMLPGNN(
            3, 1, hidden_channels=4, num_layers=2,
            aggr=[gnpool.GNPAggregation(channels=4),
                  pyg.PowerMeanAggregation(learn=True, channels=4)], readout="max"))
    wide = MessageMLPGNN(3, 1, hidden_channels=4, num_layers=2,
                         aggr=[gnpool.GNPAggregation(channels=1),
                               pyg.PowerMeanAggregation(learn=True, channels=4)],
                         readout=gnpool.GNPAggregation(channels=4))
    with pytest.raises(ValueError, match=r"'convs.0.aggr_module.p_unit' has shape \(4,\) in "
                                         r"source and \(1,\) in target"):
        transfer_pooling_(source, wide)


def test_transfer_pooling_checks_freeze_values_and_kinds_and_drops_stale_gradients():
    import math

    from gnpool.training import transfer_pooling_

    source, target = _gnn(0), _gnn(1)
    with pytest.raises(ValueError, match="freeze must be True or False, got 'False'"):
        transfer_pooling_(source, target, freeze="False")
    # A gradient left from earlier training must not move a frozen parameter.
    target(torch.randn(5, 3), torch.tensor([[0, 1, 2], [1, 2, 3]]),
           batch=torch.zeros(5, dtype=torch.long)).sum().backward()
    assert target.readout.p_unit.grad is not None
    transfer_pooling_(source, target)
    assert target.readout.p_unit.grad is None
    # freeze=False makes them train again.
    transfer_pooling_(source, target, freeze=False)
    assert all(p.requires_grad for _, p in pooling_parameters(target))
    with torch.no_grad():
        source.readout.beta[1] = math.nan
    with pytest.raises(ValueError, match=r"'readout.beta' of source is not finite"):
        transfer_pooling_(source, target)
    # Fixed (learn=False) GNPs hold their parameters as buffers: copied, never mixed with
    # learnable ones.
    fixed_max = DeepSets(1, 1, 4, gnpool.GNPAggregation.from_pooling("max", learn=False))
    fixed_mean = DeepSets(1, 1, 4, gnpool.GNPAggregation(learn=False))
    assert transfer_pooling_(fixed_max, fixed_mean) == [
        "pooling.p_unit", "pooling.beta", "pooling.p_neg_unit", "pooling.beta_neg"]
    assert fixed_mean.pooling.closest_pooling() == "max"
    with pytest.raises(ValueError, match="'pooling.p_unit' is learnable in source and a fixed "
                                         r"buffer \(learn=False\) in target"):
        transfer_pooling_(DeepSets(1, 1, 4, gnpool.GNPAggregation()), fixed_mean)
    # torch.compile wrappers are looked through.
    assert transfer_pooling_(torch.compile(_gnn(0)), _gnn(1)) == [
        n for n, _ in pooling_parameters(_gnn(0))]
