"""Xu et al.'s message-passing GNN with pluggable aggregation and readout."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn import aggr

from gnpool import AttSetsAggregation, GNPAggregation
from gnpool.models import MessageMLPConv, MessageMLPGNN


def _graph(seed=0, n=6, edge_dim=1):
    gen = torch.Generator().manual_seed(seed)
    und = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 0], [0, 4], [4, 5]])
    edge_index = torch.cat([und, und.flip(1)]).T.contiguous()
    w = torch.rand(len(und), 1, generator=gen) * 4 + 1
    edge_attr = torch.cat([w, w]) if edge_dim else None
    return Data(x=torch.randn(n, 3, generator=gen), edge_index=edge_index, edge_attr=edge_attr)


@pytest.mark.parametrize("reduce", ["sum", "max", "min", "mean"])
def test_conv_is_an_mlp_of_source_target_and_weight(reduce):
    torch.manual_seed(0)
    g = _graph()
    conv = MessageMLPConv(3, 5, aggr=reduce, edge_dim=1, mlp_layers=1)
    lin = conv.mlp.linears[0]
    out = conv(g.x, g.edge_index, g.edge_attr)
    for v in range(g.num_nodes):
        msgs = []
        for e in range(g.edge_index.size(1)):
            u, t = g.edge_index[:, e].tolist()
            if t == v:
                inp = torch.cat([g.x[u], g.x[v], g.edge_attr[e]])
                msgs.append(torch.relu(lin.weight @ inp + lin.bias))
        stacked = torch.stack(msgs)
        expected = {"sum": stacked.sum(0), "max": stacked.max(0).values,
                    "min": stacked.min(0).values, "mean": stacked.mean(0)}[reduce]
        torch.testing.assert_close(out[v], expected)


def test_messages_are_non_negative_unless_the_last_layer_is_linear():
    g = _graph()
    torch.manual_seed(1)
    relu = MessageMLPConv(3, 16, aggr="min", edge_dim=1)
    linear = MessageMLPConv(3, 16, aggr="min", edge_dim=1, last_activation=False)
    linear.load_state_dict(relu.state_dict())
    assert bool((relu(g.x, g.edge_index, g.edge_attr) >= 0).all())
    assert bool((linear(g.x, g.edge_index, g.edge_attr) < 0).any())


def test_graph_and_node_level_shapes():
    batch = Batch.from_data_list([_graph(0), _graph(1, n=6)])
    gnn = MessageMLPGNN(3, 2, hidden_channels=8, num_layers=3, aggr="sum", readout="max",
                        edge_dim=1)
    out = gnn(batch.x, batch.edge_index, batch.edge_attr, batch.batch, batch.num_graphs)
    assert out.shape == (2, 2)
    assert gnn(batch.x, batch.edge_index, batch.edge_attr).shape == (1, 2)
    node = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=2, aggr="min", readout=None,
                         edge_dim=1)
    assert node(batch.x, batch.edge_index, batch.edge_attr).shape == (batch.num_nodes, 1)
    assert node.readout is None


def test_graph_readout_pools_each_graph_separately():
    batch = Batch.from_data_list([_graph(0), _graph(1)])
    torch.manual_seed(0)
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=2, readout="sum", edge_dim=1)
    both = gnn(batch.x, batch.edge_index, batch.edge_attr, batch.batch, 2)
    for i in range(2):
        g = batch.get_example(i)
        torch.testing.assert_close(both[i], gnn(g.x, g.edge_index, g.edge_attr)[0])


def test_gnp_everywhere_gets_a_distinct_module_per_layer():
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, aggr="gnp", readout="gnp",
                        aggr_kwargs={"q": 0.0}, edge_dim=1)
    modules = [conv.aggr_module for conv in gnn.convs] + [gnn.readout]
    assert all(isinstance(m, GNPAggregation) and m.channels == 8 for m in modules)
    assert len({id(m) for m in modules}) == 4
    assert len({m.beta.data_ptr() for m in modules}) == 4
    assert gnn.readout.q.tolist()[0] == 1.0 and gnn.convs[0].aggr_module.q.tolist()[0] == 0.0
    # Training one layer's p leaves the others alone.
    with torch.no_grad():
        gnn.convs[0].aggr_module.p_unit.add_(0.2)
    assert not torch.allclose(gnn.convs[0].aggr_module.p, gnn.convs[1].aggr_module.p)


def test_share_aggr_gives_every_layer_one_aggregation_module():
    torch.manual_seed(0)
    own = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, aggr="gnp", readout="gnp",
                        edge_dim=1)
    torch.manual_seed(0)
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, aggr="gnp", readout="gnp",
                        edge_dim=1, share_aggr=True)
    modules = [conv.aggr_module for conv in gnn.convs]
    assert len({id(m) for m in modules}) == 1 and gnn.readout is not modules[0]
    # One set of pooling parameters for the three layers, counted once; every other
    # weight is drawn as without sharing.
    assert sum(p.numel() for p in own.parameters()) - sum(
        p.numel() for p in gnn.parameters()) == 2 * sum(p.numel() for p in modules[0].parameters())
    theirs = dict(own.named_parameters())
    assert all(torch.equal(p, theirs[name]) for name, p in gnn.named_parameters())
    # The shared exponent's gradient is the sum of what each layer's own exponent gets
    # from the same weights: every layer trains it.
    batch = Batch.from_data_list([_graph(0), _graph(1)])
    for model in (own, gnn):
        model.train()
        model(batch.x, batch.edge_index, batch.edge_attr, batch.batch, 2).pow(2).sum().backward()
    per_layer = [conv.aggr_module.p_unit.grad for conv in own.convs]
    assert all(g is not None and g.abs().sum() > 0 for g in per_layer)
    torch.testing.assert_close(modules[0].p_unit.grad, sum(per_layer))
    with pytest.raises(ValueError, match="share_aggr=True needs one pooling"):
        MessageMLPGNN(3, 1, num_layers=2, aggr=["gnp", "gnp"], share_aggr=True)


def test_a_module_argument_is_copied_per_layer():
    proto = aggr.PowerMeanAggregation(learn=True, channels=8)
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=2, aggr=proto, readout=proto)
    modules = [c.aggr_module for c in gnn.convs] + [gnn.readout]
    assert all(type(m) is aggr.PowerMeanAggregation for m in modules)
    assert len({id(m) for m in modules} | {id(proto)}) == 4


def test_per_layer_aggregations_are_honoured():
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3,
                        aggr=["sum", "attsets", "min"], readout="mean")
    kinds = [type(c.aggr_module) for c in gnn.convs]
    assert kinds == [aggr.SumAggregation, AttSetsAggregation, aggr.MinAggregation]
    assert type(gnn.readout) is aggr.MeanAggregation


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="hidden_channels must be a positive int"):
        MessageMLPGNN(3, 1, hidden_channels=0)
    with pytest.raises(ValueError, match="aggr must be one pooling or one per layer"):
        MessageMLPGNN(3, 1, num_layers=2, aggr=["sum"])
    conv = MessageMLPConv(3, 4, edge_dim=1)
    g = _graph(edge_dim=0)
    with pytest.raises(ValueError, match="edge_attr must have edge_dim=1"):
        conv(g.x, g.edge_index)


def test_gradients_reach_every_pooling_parameter():
    batch = Batch.from_data_list([_graph(0), _graph(1)])
    gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=2, aggr="gnp", readout="gnp",
                        edge_dim=1)
    gnn(batch.x, batch.edge_index, batch.edge_attr, batch.batch, 2).sum().backward()
    for conv in gnn.convs:
        assert conv.aggr_module.beta.grad is not None
    assert gnn.readout.p_unit.grad is not None


@pytest.mark.parametrize("edge_dim", [0, 1])
def test_scripted_model_with_a_shared_gnp_trains_as_in_eager_mode(edge_dim):
    # TorchScript: every layer's MLP, the shared GNP called by each layer, the readout;
    # the same outputs and gradients as eager mode, and the exponent projected in place.
    torch.manual_seed(0)
    eager = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, aggr="gnp", readout="gnp",
                          edge_dim=edge_dim, share_aggr=True, last_activation="softplus")
    torch.manual_seed(0)
    other = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, aggr="gnp", readout="gnp",
                          edge_dim=edge_dim, share_aggr=True, last_activation="softplus")
    scripted = torch.jit.script(other)
    batch = Batch.from_data_list([_graph(0, edge_dim=edge_dim), _graph(1, edge_dim=edge_dim)])
    edge_attr = batch.edge_attr if edge_dim else None
    for model in (eager, scripted):
        with torch.no_grad():
            model.convs[0].aggr_module.p_unit.fill_(1.5)    # out of range: projected
        model.train()
        out = model(batch.x, batch.edge_index, edge_attr, batch.batch, 2)
        out.pow(2).sum().backward()
    torch.testing.assert_close(scripted(batch.x, batch.edge_index, edge_attr, batch.batch, 2),
                               eager(batch.x, batch.edge_index, edge_attr, batch.batch, 2))
    grads = dict(eager.named_parameters())
    for name, p in scripted.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=1e-4, atol=1e-6)
    assert bool((scripted.convs[0].aggr_module.p_unit == 1.0).all())
    if edge_dim:
        with pytest.raises(Exception, match="edge_attr must have edge_dim=1"):
            scripted(batch.x, batch.edge_index, None, batch.batch, 2)


@pytest.mark.parametrize("edge_dim", [0, 1, 3])
@pytest.mark.parametrize("mlp_layers", [1, 2, 3])
@pytest.mark.parametrize("ending", [True, False, "softplus"])
def test_factorized_messages_are_the_per_edge_mlp(edge_dim, mlp_layers, ending):
    # W [h_u, h_v, w] + b computed per node and gathered: the same outputs and gradients
    # as the MLP of the concatenation, in float64 (rounding only), from one state_dict.
    gen = torch.Generator().manual_seed(edge_dim * 10 + mlp_layers)
    g = _graph(edge_dim=0)
    x = torch.randn(g.num_nodes, 4, generator=gen, dtype=torch.float64)
    attr = torch.rand(g.edge_index.size(1), edge_dim, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    per_edge = MessageMLPConv(4, 6, aggr="max", edge_dim=edge_dim, mlp_layers=mlp_layers,
                              last_activation=ending, factorized=False).double()
    factorized = MessageMLPConv(4, 6, aggr="max", edge_dim=edge_dim, mlp_layers=mlp_layers,
                                last_activation=ending).double()
    assert factorized.factorized and not per_edge.factorized
    factorized.load_state_dict(per_edge.state_dict())
    outs, grads = [], []
    for conv in (per_edge, factorized):
        xi = x.clone().requires_grad_()
        out = conv(xi, g.edge_index, attr if edge_dim else None)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append(out)
        grads.append([xi.grad] + [p.grad for p in conv.parameters()])
    assert outs[0].abs().max() > 0
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-12, atol=1e-12)
    for a, b in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_mlp_forward_after_first_continues_from_the_first_layer():
    from gnpool.models import MLP
    torch.manual_seed(0)
    for layers in (1, 2, 3):
        for ending in (True, False, "softplus"):
            mlp = MLP(5, 7, 3, layers, ending)
            x = torch.randn(4, 5)
            torch.testing.assert_close(mlp.forward_after_first(mlp.linears[0](x)), mlp(x))


@pytest.mark.parametrize("factorized", [True, False])
def test_scripted_conv_matches_eager_in_both_forms(factorized):
    torch.manual_seed(0)
    conv = MessageMLPConv(3, 5, aggr="sum", edge_dim=1, factorized=factorized)
    scripted = torch.jit.script(MessageMLPConv(3, 5, aggr="sum", edge_dim=1,
                                               factorized=factorized))
    scripted.load_state_dict(conv.state_dict())
    g = _graph()
    torch.testing.assert_close(scripted(g.x, g.edge_index, g.edge_attr),
                               conv(g.x, g.edge_index, g.edge_attr))


def test_conv_input_checks_name_the_argument():
    g = _graph()
    conv = MessageMLPConv(3, 4, edge_dim=1)
    with pytest.raises(ValueError, match=r"x must have shape \[num_nodes, in_channels=3\], "
                                         r"got shape \[6, 2\]"):
        conv(g.x[:, :2], g.edge_index, g.edge_attr)
    with pytest.raises(ValueError, match="factorized must be true or false, got 1"):
        MessageMLPConv(3, 4, factorized=1)


def test_gnn_passes_factorized_to_every_layer():
    for factorized in (True, False):
        gnn = MessageMLPGNN(3, 1, hidden_channels=8, num_layers=3, factorized=factorized)
        assert all(conv.factorized is factorized for conv in gnn.convs)


def test_a_layer_pickled_before_factorized_existed_computes_per_edge():
    import pickle

    torch.manual_seed(0)
    conv = MessageMLPConv(3, 4, aggr="max", edge_dim=1, factorized=False)
    g = _graph()
    expected = conv(g.x, g.edge_index, g.edge_attr)
    del conv.factorized, conv.in_channels     # as a layer of an earlier version
    loaded = pickle.loads(pickle.dumps(conv))
    assert loaded.factorized is False and loaded.in_channels == 3
    torch.testing.assert_close(loaded(g.x, g.edge_index, g.edge_attr), expected, rtol=0,
                               atol=0)


@pytest.mark.parametrize("factorized", [True, False])
@pytest.mark.parametrize("shape", [(1, 2), (2,), (12, 1, 2), (3, 2)])
def test_edge_attr_of_another_shape_is_refused_in_both_forms(factorized, shape):
    # The factorized form adds W_w w_uv to per-edge terms: a broadcastable edge_attr of
    # the wrong shape would be used silently.
    g = _graph(edge_dim=0)
    conv = MessageMLPConv(3, 4, edge_dim=2, factorized=factorized)
    with pytest.raises(ValueError, match=r"edge_attr must have edge_dim=2 columns and one row "
                                         r"per edge, shape \[12, 2\], got shape"):
        conv(g.x, g.edge_index, torch.randn(shape))
