"""Resolution of pooling arguments into fresh aggregation modules."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.nn import aggr
from torch_geometric.nn.resolver import aggregation_resolver

from gnpool import AttSetsAggregation, GNPAggregation
from gnpool.models import aggregation_class, gnp_parameters, per_layer, resolve_pooling


@pytest.mark.parametrize("name, cls", [
    ("sum", aggr.SumAggregation), ("add", aggr.SumAggregation), ("mean", aggr.MeanAggregation),
    ("max", aggr.MaxAggregation), ("min", aggr.MinAggregation),
    ("power_mean", aggr.PowerMeanAggregation), ("Softmax", aggr.SoftmaxAggregation),
    ("gnp", GNPAggregation), ("attsets", AttSetsAggregation),
])
def test_names_resolve_like_pyg(name, cls):
    assert aggregation_class(name) is cls
    assert type(resolve_pooling(name, 8)) is cls
    if cls.__module__.startswith("torch_geometric"):
        assert type(aggregation_resolver(name)) is cls


def test_learnable_aggregations_get_one_parameter_per_channel():
    gnp = resolve_pooling("gnp", 12)
    assert gnp.channels == 12 and gnp.p.shape == (12,)
    assert resolve_pooling("attsets", 12).in_channels == 12
    assert resolve_pooling("powermean", 12, {"learn": True}).p.shape == (12,)
    assert resolve_pooling("softmax", 12, {"learn": True}).t.shape == (12,)
    # Not learnable: PyG refuses channels > 1, so none are added.
    assert resolve_pooling("softmax", 12).learn is False
    assert resolve_pooling("gnp", 12, {"channels": 1}).channels == 1


def test_kwargs_reach_the_module():
    gnp = resolve_pooling("gnp", 4, {"p": 2.0, "q": 1.0})
    torch.testing.assert_close(gnp.p, torch.full((4,), 2.0))
    torch.testing.assert_close(gnp.q.detach(), torch.ones(4))


def test_a_module_is_copied_not_shared():
    module = GNPAggregation(channels=3, p=3.0)
    a, b = resolve_pooling(module, 3), resolve_pooling(module, 3)
    assert a is not module and a is not b
    assert a.p_unit.data_ptr() != b.p_unit.data_ptr()
    torch.testing.assert_close(a.p, module.p)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="pooling='no-such'"):
        resolve_pooling("no-such", 4)
    with pytest.raises(TypeError, match="pooling must be"):
        resolve_pooling(3, 4)
    with pytest.raises(ValueError, match="kwargs"):
        resolve_pooling(aggr.SumAggregation(), 4, {"channels": 2})
    with pytest.raises(ValueError, match=r"aggr must be one pooling or one per layer \(3\)"):
        per_layer(["sum", "max"], 3, "aggr")


def test_per_layer():
    assert per_layer("sum", 3, "aggr") == ["sum"] * 3
    assert per_layer(("sum", "max"), 2, "aggr") == ["sum", "max"]


def test_gnp_parameters_lists_every_gnp_with_its_name():
    model = torch.nn.ModuleDict({"a": GNPAggregation(2, p=2.0), "b": aggr.SumAggregation(),
                                 "c": GNPAggregation(1, q=1.0)})
    params = gnp_parameters(model)
    assert [p["name"] for p in params] == ["a", "c"]
    assert params[0]["p"] == pytest.approx([2.0, 2.0], rel=1e-4)
    assert params[1]["q"] == [1.0]
    assert set(params[0]) == {"name", "p", "q", "p_neg", "q_neg", "p_unit", "beta",
                              "p_neg_unit", "beta_neg"}
