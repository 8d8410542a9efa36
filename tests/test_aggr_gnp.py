"""GNPAggregation inside PyG: message passing, readout, compile, serialisation."""

from __future__ import annotations

import copy
import io
import math
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import naive_gnp, random_sets, to_ptr
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GraphConv, SAGEConv
from torch_geometric.nn import aggr as pyg

from gnpool import GNPAggregation, register
from gnpool.aggr.gnp import upgrade_v01_state
from gnpool.functional import gnp


def test_index_and_ptr_give_the_same_result():
    x, index = random_sets(300, 25, 8, seed=0, dtype=torch.float32, sort=True)
    aggr = GNPAggregation(channels=8, p=2.0, q=0.5)
    torch.testing.assert_close(aggr(x, index, dim_size=25), aggr(x, ptr=to_ptr(index, 25)))


def test_per_channel_parameters_act_per_channel():
    x, index = random_sets(200, 10, 3, seed=1)
    aggr = GNPAggregation(channels=3, p=[1.0, 2.0, -3.0], q=[0.0, 0.5, 1.0], p_neg=[1.0, 4.0, 2.0])
    out = aggr(x, index).double()
    torch.testing.assert_close(out, naive_gnp(x, index, 10, aggr.p.double(), aggr.q.double(),
                                              aggr.p_neg.double(), aggr.q_neg.double()))
    assert torch.allclose(aggr.p, torch.tensor([1.0, 2.0, -3.0]), rtol=1e-5)


@pytest.mark.parametrize("name", ["sum", "mean"])
def test_graphconv_with_fixed_gnp_equals_pyg_aggregation(name):
    torch.manual_seed(0)
    x = torch.randn(30, 16)
    edge_index = torch.randint(0, 30, (2, 120))
    ref = GraphConv(16, 8, aggr=name)
    ours = GraphConv(16, 8, aggr=GNPAggregation.from_pooling(name, learn=False))
    ours.load_state_dict(ref.state_dict(), strict=False)
    torch.testing.assert_close(ours(x, edge_index), ref(x, edge_index), rtol=1e-5, atol=1e-5)


def test_sageconv_with_gnp_matches_manual_computation():
    torch.manual_seed(1)
    x = torch.randn(20, 6)
    edge_index = torch.randint(0, 20, (2, 70))
    aggr = GNPAggregation(channels=6, p=2.0, q=0.5)
    conv = SAGEConv(6, 4, aggr=aggr)
    out = conv(x, edge_index)
    pooled = gnp(x[edge_index[0]], edge_index[1], dim_size=20, p=aggr.p, q=aggr.q)
    ref = conv.lin_l(pooled) + conv.lin_r(x)
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert aggr.p_unit.grad is not None and bool(aggr.beta.grad.abs().sum() > 0)


def test_multi_aggregation_concatenates_gnp():
    x, index = random_sets(100, 7, 4, seed=2, dtype=torch.float32)
    g = GNPAggregation(p=3.0, q=1.0)
    multi = pyg.MultiAggregation([pyg.SumAggregation(), g])
    out = multi(x, index, dim_size=7)
    torch.testing.assert_close(out, torch.cat([pyg.SumAggregation()(x, index, dim_size=7),
                                               g(x, index, dim_size=7)], dim=-1))


def test_readout_over_a_batch():
    graphs = [Data(x=torch.randn(n, 5)) for n in (3, 9, 1, 6)]
    batch = Batch.from_data_list(graphs)
    aggr = GNPAggregation(channels=5, p=4.0, q=1.0, p_neg=-4.0)
    out = aggr(batch.x, batch.batch, dim_size=batch.num_graphs)
    assert out.shape == (4, 5)
    for i, data in enumerate(graphs):
        torch.testing.assert_close(out[i], aggr(data.x).squeeze(0))


def test_torch_compile_fullgraph_matches_eager():
    x, index = random_sets(120, 10, 8, seed=3, dtype=torch.float32)
    aggr = GNPAggregation(channels=8, p=2.0, q=0.5, p_neg=-2.0)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = aggr(x1, index, dim_size=10)
    eager.square().sum().backward()
    grads = (x1.grad.clone(), aggr.p_unit.grad.clone(), aggr.beta.grad.clone())
    aggr.zero_grad()
    compiled = torch.compile(aggr, fullgraph=True)
    out = compiled(x2, index, dim_size=10)
    torch.testing.assert_close(out, eager)
    out.square().sum().backward()
    for a, b in zip((x2.grad, aggr.p_unit.grad, aggr.beta.grad), grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_state_dict_round_trip_and_pickling():
    x, index = random_sets(80, 6, 4, seed=4, dtype=torch.float32)
    aggr = GNPAggregation(channels=4, p=-2.0, q=0.3, p_neg=5.0, q_neg=1.0)
    with torch.no_grad():
        aggr.beta.add_(0.25)
        aggr.p_unit.add_(0.1)
    expected = aggr(x, index)
    fresh = GNPAggregation(channels=4, p=-2.0, p_neg=5.0)
    buffer = io.BytesIO()
    torch.save(aggr.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(fresh(x, index), expected)
    torch.testing.assert_close(pickle.loads(pickle.dumps(aggr))(x, index), expected)
    torch.testing.assert_close(copy.deepcopy(aggr)(x, index), expected)


def test_repr_shows_current_parameters():
    aggr = GNPAggregation(p=2.0, q=0.5, p_neg=-3.0)
    text = repr(aggr)
    assert "p=2.000" in text and "q=0.500" in text and "p_neg=-3.000" in text
    with torch.no_grad():
        aggr.beta.fill_(0.125)    # q = 1 - beta * p
    assert "q=0.750" in repr(aggr)
    assert "p=inf" in repr(GNPAggregation.from_pooling("max"))
    many = repr(GNPAggregation(channels=3, p=[1.0, 2.0, 3.0]))
    assert "p=mean 2.000 [1.000, 3.000]" in many
    # Channels at max and min have no mean exponent: the range and how many are infinite.
    mixed = repr(GNPAggregation(channels=3, p=[float("inf"), -float("inf"), 1.0]))
    assert "p=[-inf, inf] (2 of 3 infinite)" in mixed and "nan" not in mixed


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
def test_closest_pooling_recognises_the_classic_poolings(name):
    assert GNPAggregation.from_pooling(name).closest_pooling() == name
    assert GNPAggregation.from_pooling(name, channels=2).closest_pooling() == [name, name]
    # Exactly: the distance to the pooling itself is 0.
    assert float(GNPAggregation.from_pooling(name).pooling_distances()[name]) < 1e-12


def test_closest_pooling_follows_the_parameters():
    aggr = GNPAggregation(channels=3, p=[1.0, 300.0, 1.0], q=[0.0, 1.0, 0.3],
                          p_neg=[1.0, -300.0, 1.0])
    # p = 1, q = 0.3 is n^0.7 times the mean: neither sum nor mean nor max.
    assert aggr.closest_pooling() == ["sum", "max", "none"]
    distances = aggr.pooling_distances()
    assert set(distances) == {"sum", "mean", "max", "min"}
    assert float(distances["max"][1]) < 0.05 < float(distances["max"][2])
    assert aggr.closest_pooling(tolerance=10.0)[2] != "none"


@pytest.mark.parametrize("p, q", [(1.0, 0.3), (1.2, 0.1)])
def test_closest_pooling_says_none_when_nothing_is_close(p, q):
    assert GNPAggregation(p=p, q=q).closest_pooling() == "none"


def test_fixed_pooling_has_no_parameters():
    aggr = GNPAggregation.from_pooling("mean", learn=False)
    assert list(aggr.parameters()) == []
    assert float(aggr.p) == 1.0 and float(aggr.q) == 1.0


@pytest.mark.parametrize("name, reference", [("max", pyg.MaxAggregation()),
                                             ("min", pyg.MinAggregation())])
def test_from_pooling_max_and_min_are_exact_for_any_size(name, reference):
    sizes = torch.tensor([1, 3, 100, 4000])
    index = torch.repeat_interleave(torch.arange(4), sizes)
    x = torch.randn(len(index), 6, generator=torch.Generator().manual_seed(7))
    aggr = GNPAggregation.from_pooling(name, channels=6)
    assert torch.equal(aggr(x, index), reference(x, index))


def test_one_module_called_twice_in_a_forward_trains():
    # One aggregation shared by two layers: the second call must not modify in place what
    # the first saved for backward, and the exponent's gradient sums both calls'.
    aggr = GNPAggregation(channels=4, p=[0.2, 1.0, -1.0, 3.0])
    x, index = random_sets(60, 5, 4, seed=5, dtype=torch.float32)
    x = x.abs()
    out = aggr(x, index)
    (aggr(out, torch.tensor([0, 0, 1, 1, 1])).sum() + out.sum()).backward()
    twice = aggr.p_unit.grad.clone()
    first, second = (GNPAggregation(channels=4, p=[0.2, 1.0, -1.0, 3.0]) for _ in range(2))
    mid = first(x, index)
    (second(mid.detach(), torch.tensor([0, 0, 1, 1, 1])).sum() + mid.sum()).backward()
    # The first call's gradient also flows through the second call's input.
    assert bool(torch.isfinite(twice).all()) and bool((twice != 0).all())
    assert not torch.equal(twice, first.p_unit.grad + second.p_unit.grad)
    aggr.p_unit.grad = None
    mid = aggr(x, index)
    (aggr(mid.detach(), torch.tensor([0, 0, 1, 1, 1])).sum() + mid.sum()).backward()
    torch.testing.assert_close(aggr.p_unit.grad, first.p_unit.grad + second.p_unit.grad)
    # A value written out of range between forwards is still projected by the next one.
    with torch.no_grad():
        aggr.p_unit.copy_(torch.tensor([5.0, -5.0, 0.5, 2.0]))
    aggr(x, index)
    assert torch.equal(aggr.p_unit.detach(), torch.tensor([1.0, -1.0, 0.5, 1.0]))


class _SharedTwice(torch.nn.Module):
    # One GNPAggregation serving two calls of a forward, as with share_aggr=True.
    def __init__(self):
        super().__init__()
        self.aggr = GNPAggregation(channels=4, p=[0.2, 1.0, -1.0, 3.0])

    def forward(self, x: torch.Tensor, index: torch.Tensor,
                index2: torch.Tensor) -> torch.Tensor:
        out = self.aggr(x, index, dim_size=5)
        return self.aggr(out, index2, dim_size=2).sum() + out.sum()


@pytest.mark.parametrize("mode", ["compile", "compile_fullgraph", "script"])
def test_one_module_called_twice_trains_compiled_and_scripted(mode):
    # The second call projects p_unit in place again (compiled and scripted modules
    # cannot see that nothing changed it); the first call's graph must stay valid and
    # the gradients must be eager mode's.
    x, _ = random_sets(60, 5, 4, seed=5, dtype=torch.float32)
    x = x.abs()
    index, index2 = torch.arange(60) % 5, torch.tensor([0, 0, 1, 1, 1])
    eager, other = _SharedTwice(), _SharedTwice()
    run = (torch.jit.script(other) if mode == "script" else
           torch.compile(other, fullgraph=mode == "compile_fullgraph"))
    for start in (None, torch.tensor([5.0, -5.0, 0.5, 2.0])):
        for module in (eager, other):
            module.aggr.p_unit.grad = None
            if start is not None:
                with torch.no_grad():
                    module.aggr.p_unit.copy_(start)
        eager(x, index, index2).backward()
        run(x, index, index2).backward()
        # Projected in place by the training forward, in range from then on.
        assert torch.equal(other.aggr.p_unit.detach(), eager.aggr.p_unit.detach())
        assert bool((other.aggr.p_unit.detach().abs() <= 1).all())
        assert bool((eager.aggr.p_unit.grad != 0).all())
        torch.testing.assert_close(other.aggr.p_unit.grad, eager.aggr.p_unit.grad,
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(other.aggr.beta.grad, eager.aggr.beta.grad,
                                   rtol=1e-4, atol=1e-5)
    assert torch.equal(eager.aggr.p_unit.detach(), torch.tensor([1.0, -1.0, 0.5, 1.0]))


def test_forward_reads_the_exponent_as_its_clamp():
    # Values and derivatives of the exponent as the forward reads it are the clamp's to
    # the bit (1 inside [-1, 1], ends included, 0 outside; an infinite value reads as the
    # end), without the clamp saving the parameter for backward.
    from gnpool.aggr.gnp import _unit_range

    values = torch.tensor([-math.inf, -3.0, -1.0, -0.25, -0.0, 0.0, 0.5, 1.0, 1.5, math.inf,
                           math.nan])
    a, b = values.clone().requires_grad_(), values.clone().requires_grad_()
    weights = torch.arange(1.0, 12.0)
    out, ref = _unit_range(a), b.clamp(-1.0, 1.0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
    assert torch.equal(out.signbit(), ref.signbit())    # -0.0 stays -0.0
    (out * weights).sum().backward(retain_graph=True)
    (ref * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)
    with torch.no_grad():
        torch.testing.assert_close(_unit_range(a), ref, rtol=0, atol=0, equal_nan=True)
        a.add_(0.5)  # an in-place change after the read leaves its graph valid
    (out * weights).sum().backward()
    assert torch.equal(a.grad, 2 * b.grad)


def test_training_projects_the_exponent_into_its_range():
    # A huge step pushes p_unit far outside [-1, 1]; the next training forward clamps the
    # parameter itself, so the function is exactly max / min at the ends and the gradient
    # there stays finite and non-zero (it can bring the exponent back).
    aggr = GNPAggregation(channels=4, p=[0.2, 1.0, -1.0, 90.0])
    opt = torch.optim.SGD([aggr.p_unit], lr=1e4)
    x, index = random_sets(60, 5, 4, seed=5, dtype=torch.float32)
    x = x.abs()
    for direction in (1.0, -1.0):
        for _ in range(3):
            opt.zero_grad()
            out = aggr(x, index)
            assert bool(((aggr.p_unit >= -1) & (aggr.p_unit <= 1)).all())
            (direction * out.sum()).backward()
            assert bool(torch.isfinite(aggr.p_unit.grad).all())
            assert bool((aggr.p_unit.grad != 0).all())
            opt.step()
        aggr(x, index)
        # SGD minimises direction * sum: +1 drives every exponent to min, -1 to max.
        expected = torch.full((4,), -direction)
        assert torch.equal(aggr.p_unit.detach(), expected)
        ref = pyg.MaxAggregation() if direction < 0 else pyg.MinAggregation()
        n = torch.bincount(index).float().view(-1, 1)
        torch.testing.assert_close(aggr(x, index), ref(x, index) * n ** aggr.beta.detach())
    # Evaluation does not touch the parameters.
    with torch.no_grad():
        aggr.p_unit.fill_(3.0)
    aggr.eval()
    aggr(x, index)
    assert bool((aggr.p_unit == 3.0).all())


def test_mean_travels_to_max_in_tens_of_adam_steps():
    # From the mean (p = 1), Adam at lr 0.05 on the distance to the set's max brings the
    # exponent to exactly max in fewer than 40 steps.
    x, index = random_sets(400, 20, 1, seed=8, dtype=torch.float32)
    x = x.abs()
    target = pyg.MaxAggregation()(x, index)
    aggr = GNPAggregation.from_pooling("mean")
    opt = torch.optim.Adam([aggr.p_unit], lr=0.05)
    steps = 0
    while float(aggr.p_unit.detach()) < 1.0 and steps < 100:
        opt.zero_grad()
        (aggr(x, index) - target).square().mean().backward()
        opt.step()
        aggr.project_()
        steps += 1
    assert steps < 40, steps
    assert torch.equal(aggr(x, index), target)


def test_gnpool_0_1_checkpoints_load_with_a_warning():
    # A 0.1 state: |p| = 0.1 * 1000 ** sigmoid(logit) with the sign in p_sign, and q.
    logit = torch.tensor([0.0, 1.5, -2.0])
    old = {"p_logit": logit, "p_sign": torch.tensor([1.0, -1.0, 1.0]),
           "q": torch.tensor([0.0, 1.0, 0.5]), "p_neg_logit": logit.flip(0),
           "p_neg_sign": torch.ones(3), "q_neg": torch.tensor([1.0, 0.2, 0.0])}
    p = torch.tensor([1.0, -1.0, 1.0]) * 0.1 * 1000 ** torch.sigmoid(logit)
    p_neg = 0.1 * 1000 ** torch.sigmoid(logit.flip(0))
    aggr = GNPAggregation(channels=3)
    with pytest.warns(UserWarning, match="gnpool 0.1"):
        aggr.load_state_dict(old)
    torch.testing.assert_close(aggr.p, p)
    torch.testing.assert_close(aggr.q, old["q"], atol=1e-5, rtol=0)
    torch.testing.assert_close(aggr.p_neg, p_neg)
    x, index = random_sets(90, 6, 3, seed=9)
    torch.testing.assert_close(aggr(x, index).double(),
                               naive_gnp(x, index, 6, p, old["q"], p_neg, old["q_neg"]),
                               rtol=1e-5, atol=1e-6)
    # Inside a model, and with other bounds through the explicit conversion.
    model = torch.nn.ModuleDict({"pool": GNPAggregation(channels=3)})
    with pytest.warns(UserWarning):
        model.load_state_dict({f"pool.{k}": v for k, v in old.items()})
    other = upgrade_v01_state(old, p_min=0.5, p_max=20.0)
    fresh = GNPAggregation(channels=3)
    fresh.load_state_dict(other)
    torch.testing.assert_close(fresh.p, torch.tensor([1.0, -1.0, 1.0]) * 0.5 * 40
                               ** torch.sigmoid(logit))


def test_channels_must_match_the_features():
    with pytest.raises(ValueError, match=r"channels=8\) has one exponent per feature channel "
                                         r"but got x with 16 features"):
        GNPAggregation(channels=8)(torch.randn(5, 16))
    with pytest.raises(ValueError, match="which has no feature dimension"):
        GNPAggregation(channels=8)(torch.randn(5), dim=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"channels": 0}, "channels must be a positive int"),
    ({"p": float("nan")}, "p must be a number or"),
    ({"p": 0.0, "q": 0.5}, "p = 0 is defined only with q = 1"),
    ({"p": [1.0, 2.0], "channels": 3}, "1 or channels=3"),
    ({"q": float("nan")}, "q must be finite"),
])
def test_bad_construction_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GNPAggregation(**kwargs)


def test_from_pooling_rejects_unknown_names():
    with pytest.raises(ValueError, match="must be one of"):
        GNPAggregation.from_pooling("median")


def test_register_makes_gnp_resolvable_and_import_alone_does_not():
    code = (
        "import torch, gnpool\n"
        "from torch_geometric.nn import GraphConv, aggr\n"
        "from torch_geometric.nn.resolver import aggregation_resolver\n"
        "try:\n"
        "    aggregation_resolver('gnp')\n"
        "    print('resolved-before')\n"
        "except ValueError:\n"
        "    print('unresolved-before')\n"
        "gnpool.register(); gnpool.register()\n"
        "conv = GraphConv(4, 4, aggr='gnp')\n"
        "assert isinstance(conv.aggr_module, gnpool.GNPAggregation)\n"
        "multi = aggr.MultiAggregation(['sum', 'gnp'])\n"
        "out = conv(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]]))\n"
        "print('ok', tuple(out.shape), aggr.__all__.count('GNPAggregation'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["unresolved-before", "ok", "(5,", "4)", "1"]


def test_register_in_process():
    register()
    conv = GraphConv(8, 8, aggr="gnp", aggr_kwargs={"channels": 8, "p": 2.0})
    assert isinstance(conv.aggr_module, GNPAggregation) and conv.aggr_module.channels == 8


def test_one_dimensional_input_gets_a_message_naming_the_dimension():
    with pytest.raises(ValueError, match=r"x must have at least 2 dimensions.*shape \(5,\)"):
        GNPAggregation()(torch.randn(5))
    torch.testing.assert_close(GNPAggregation(p=1.0, q=0.0)(torch.ones(5), dim=0),
                               torch.tensor([5.0]))
    with pytest.raises(ValueError, match="index has 7 entries but x has 5 elements along dim 0"):
        GNPAggregation()(torch.randn(5, 2), torch.arange(7))


# A GNP frozen at a classic pooling is computed with segment reductions.

def _at(parts: tuple[tuple[float, float], tuple[float, float]], channels: int,
        **kwargs) -> GNPAggregation:
    aggr = GNPAggregation(channels=channels, **kwargs)
    with torch.no_grad():
        (aggr.p_unit.fill_(parts[0][0]), aggr.beta.fill_(parts[0][1]))
        (aggr.p_neg_unit.fill_(parts[1][0]), aggr.beta_neg.fill_(parts[1][1]))
    return aggr


def _no_kernels(monkeypatch):
    def kernels(*args, **kwargs):
        raise AssertionError("GNP's kernels were called")
    monkeypatch.setattr("gnpool.aggr.gnp.gnp_unit_clamped", kernels)


@pytest.mark.parametrize("layout", ["index", "ptr"])
@pytest.mark.parametrize("channels", [1, 3])
def test_frozen_classic_parts_equal_the_kernels_values_and_gradients(layout, channels):
    from gnpool.aggr.gnp import PART_REDUCTIONS
    x, index = random_sets(300, 12, 3, seed=2, sort=True)
    index[index == 5] = 6                                     # set 5 is empty
    where = ({"index": index} if layout == "index" else {"ptr": to_ptr(index, 12)})
    for parts in [(a, b) for a in PART_REDUCTIONS for b in PART_REDUCTIONS]:
        frozen = _at(parts, channels)
        kernels = _at(parts, channels, backend="cpu")
        frozen.requires_grad_(False)
        kernels.requires_grad_(False)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = frozen(xa, dim_size=12, **where), kernels(xb, dim_size=12, **where)
        weight = torch.randn(a.shape, generator=torch.Generator().manual_seed(0),
                             dtype=a.dtype)
        (a * weight).sum().backward()
        (b * weight).sum().backward()
        assert frozen._reductions is not None, parts
        assert kernels._reductions is None                    # backend named: kernels
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=str(parts))
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12, msg=str(parts))
        assert float(a[5].detach().abs().sum()) == 0.0        # the empty set pools to 0


@pytest.mark.parametrize("name, reduction", [("sum", "sum"), ("mean", "mean"), ("max", "amax"),
                                             ("min", "amin")])
def test_gnp_frozen_at_a_classic_pooling_runs_no_kernel(monkeypatch, name, reduction):
    x, index = random_sets(100, 7, 4, seed=3)
    expected = torch.zeros(7, 4, dtype=x.dtype).scatter_reduce_(
        0, index.view(-1, 1).expand_as(x), x, reduction, include_self=False)
    _no_kernels(monkeypatch)
    fixed = GNPAggregation.from_pooling(name, channels=4, learn=False)
    torch.testing.assert_close(fixed(x, index, dim_size=7), expected)
    learned = GNPAggregation.from_pooling(name)
    learned.requires_grad_(False)                             # as transfer_pooling_ freezes
    torch.testing.assert_close(learned(x, index, dim_size=7), expected)
    learned.requires_grad_(True)
    with torch.no_grad():                                     # inference
        torch.testing.assert_close(learned(x, index, dim_size=7), expected)
    with pytest.raises(AssertionError, match="kernels were called"):
        learned(x, index, dim_size=7)                         # p_unit needs its gradient


def test_frozen_reductions_follow_changes_of_the_parameters(monkeypatch):
    x, index = random_sets(80, 5, 2, seed=4)
    aggr = GNPAggregation.from_pooling("max", channels=2, learn=False)
    reference = {name: getattr(pyg, f"{name.title()}Aggregation")()
                 for name in ("max", "min", "sum")}
    torch.testing.assert_close(aggr(x, index, dim_size=5), reference["max"](x, index, dim_size=5))
    aggr.snap_("min")                                         # in place: the versions change
    torch.testing.assert_close(aggr(x, index, dim_size=5), reference["min"](x, index, dim_size=5))
    aggr.load_state_dict(GNPAggregation.from_pooling("sum", channels=2, learn=False).state_dict())
    torch.testing.assert_close(aggr(x, index, dim_size=5), reference["sum"](x, index, dim_size=5))
    aggr.snap_(["sum", "max"])                                # channels differ: grouped
    torch.testing.assert_close(aggr(x, index, dim_size=5), gnp(
        x, index, dim_size=5, p=torch.tensor([1.0, float("inf")]), q=torch.tensor([0.0, 1.0]),
        p_neg=torch.tensor([1.0, -float("inf")]), q_neg=torch.tensor([0.0, 1.0])))
    assert [(c.tolist(), r) for c, r in aggr._reductions] == [([0], ("sum",)), ([1], ("max",))]
    with torch.no_grad():
        aggr.beta.fill_(1e-3)                                 # near max, not at it
        aggr.p_unit.fill_(1.0)
        aggr.p_neg_unit.fill_(-1.0)
        aggr.beta_neg.zero_()
    _no_kernels(monkeypatch)
    with pytest.raises(AssertionError, match="kernels were called"):
        aggr(x, index, dim_size=5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_frozen_classic_pooling_of_half_inputs_reduces_in_float32(dtype, monkeypatch):
    from gnpool.aggr import gnp as gnp_module

    seen = []
    apply = gnp_module._ClassicReduce.apply
    monkeypatch.setattr(gnp_module._ClassicReduce, "apply",
                        lambda data, *args: seen.append(data.dtype) or apply(data, *args))
    x = torch.tensor([[6e4], [6e4], [-6e4], [-6e4], [1.0], [2.0]], dtype=dtype)
    index = torch.tensor([0, 0, 0, 0, 1, 1])
    aggr = GNPAggregation.from_pooling("sum", learn=False)
    out = aggr(x, index, dim_size=2)
    # Half in, half out; the reduction itself ran on float32 rows, as the kernels do.
    assert seen == [torch.float32] and out.dtype == dtype
    torch.testing.assert_close(out, torch.tensor([[0.0], [3.0]], dtype=dtype))


def test_frozen_gnp_in_training_mode_reads_its_parameters_once():
    x, index = random_sets(50, 4, 3, seed=6)
    aggr = GNPAggregation.from_pooling("max")
    aggr.requires_grad_(False)
    aggr.train()
    versions = [aggr.p_unit._version]
    for _ in range(3):
        aggr(x, index, dim_size=4)
        versions.append(aggr.p_unit._version)
    # Nothing writes to frozen parameters (no projection), so the reductions found at the
    # first call are reused without reading the parameters again.
    assert len(set(versions)) == 1 and aggr._reductions == ("max",)
    read = aggr._reductions_of
    aggr(x, index, dim_size=4)
    assert aggr._reductions_of is read


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("itype", [torch.int32, torch.int64])
def test_frozen_classic_pooling_takes_int32_and_int64_index_and_ptr(name, itype):
    x, index = random_sets(60, 5, 3, seed=7, sort=True)
    ptr = to_ptr(index, 5)
    kernels = GNPAggregation.from_pooling(name, channels=3, learn=False, backend="cpu")
    frozen = GNPAggregation.from_pooling(name, channels=3, learn=False)
    weight = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    for where in ({"index": index.to(itype)}, {"ptr": ptr.to(itype)}):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = frozen(xa, dim_size=5, **where), kernels(xb, dim_size=5, **where)
        (a * weight).sum().backward()
        (b * weight).sum().backward()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["index", "ptr"])
def test_frozen_max_and_min_split_ties_as_the_kernels_do(layout):
    # Ties at 0 (torch's scatter_reduce would count its empty start value as one more),
    # ties away from 0, NaN and all -inf sets.
    x = torch.tensor([[0.0], [0.0], [-1.0], [3.0], [3.0], [1.0], [float("nan")], [1.0],
                      [-float("inf")], [-float("inf")]], dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
    where = {"index": index} if layout == "index" else {"ptr": to_ptr(index, 4)}
    for name in ("max", "min"):
        data = x if name == "max" else -x
        frozen = GNPAggregation.from_pooling(name, learn=False)
        kernels = GNPAggregation.from_pooling(name, learn=False, backend="cpu")
        xa, xb = data.clone().requires_grad_(), data.clone().requires_grad_()
        a, b = frozen(xa, dim_size=4, **where), kernels(xb, dim_size=4, **where)
        torch.testing.assert_close(a, b, equal_nan=True)
        a[:2].sum().backward()                  # the finite sets' gradients
        b[:2].sum().backward()
        assert xa.grad[:6].flatten().tolist() == [0.5, 0.5, 0.0, 0.5, 0.5, 0.0]
        torch.testing.assert_close(xa.grad[:6], xb.grad[:6])


def test_frozen_classic_pooling_of_a_module_made_in_inference_mode():
    with torch.inference_mode():
        aggr = GNPAggregation.from_pooling("max", learn=False)
    x, index = random_sets(30, 3, 2, seed=8)
    torch.testing.assert_close(aggr(x, index, dim_size=3), pyg.MaxAggregation()(x, index,
                                                                                dim_size=3))
    assert aggr._reductions == ("max",)


def test_learnable_gnp_without_autograd_leaves_its_parameters_alone():
    aggr = GNPAggregation.from_pooling("max")
    aggr.train()
    x, index = random_sets(30, 3, 2, seed=9)
    version = aggr.p_unit._version
    with torch.no_grad():
        aggr(x, index, dim_size=3)
        read = aggr._reductions_of
        aggr(x, index, dim_size=3)
    assert aggr.p_unit._version == version and aggr._reductions_of is read
    aggr(x, index, dim_size=3)                  # with autograd: projected, as before
    assert aggr.p_unit._version > version


@pytest.mark.parametrize("learn", [True, False])
def test_forward_mode_ad_through_the_module_raises(learn):
    # Frozen at max (the segment-reduction path) or learnable in training mode (which
    # projects p_unit first): the same error as the functional form, before anything
    # reads the parameters' storage, also for torch.func over the parameters.
    from torch.func import functional_call, jvp, stack_module_state, vmap

    module = GNPAggregation.from_pooling("max", learn=learn)
    module.train()
    x = torch.randn(6, 1, dtype=torch.float64)
    index = torch.tensor([0, 0, 0, 1, 1, 1])
    match = r"GNPAggregation has a reverse-mode derivative only"
    with pytest.raises(NotImplementedError, match=match):
        jvp(lambda x: module(x, index), (x,), (torch.ones_like(x),))
    if learn:
        params = dict(module.named_parameters())
        with pytest.raises(NotImplementedError, match=match):
            jvp(lambda p: functional_call(module, p, (x.float(), index)), (params,),
                ({k: torch.ones_like(v) for k, v in params.items()},))
        stacked, _ = stack_module_state([module, GNPAggregation.from_pooling("min")])
        with pytest.raises(NotImplementedError, match=match):
            vmap(lambda p: functional_call(module, p, (x.float(), index)))(stacked)
    # Reverse mode is unaffected.
    x.requires_grad_(True)
    module(x, index).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("layout", ["index", "ptr"])
def test_frozen_channels_at_different_classic_points_equal_the_kernels(layout, monkeypatch):
    # One pooling per channel, each channel at its own pair of classic points (whole
    # reductions of x and mixes of two parts), x with a batch dimension too: grouped
    # segment reductions, the kernels' values and input gradients.
    from gnpool.aggr.gnp import PART_REDUCTIONS

    points = list(PART_REDUCTIONS)
    pairs = [(a, b) for a in points for b in points]            # all 16, one per channel
    x, index = random_sets(200, 9, 16, seed=4, sort=True)
    x = torch.stack([x, -0.5 * x], dim=1)                       # [elements, 2, channels]
    where = {"index": index} if layout == "index" else {"ptr": to_ptr(index, 9)}

    def module(**kwargs):
        aggr = GNPAggregation(channels=16, **kwargs)
        with torch.no_grad():
            for k, (pos, neg) in enumerate(pairs):
                aggr.p_unit[k], aggr.beta[k] = pos
                aggr.p_neg_unit[k], aggr.beta_neg[k] = neg
        return aggr.requires_grad_(False)

    kernels, frozen = module(backend="cpu"), module()
    xb = x.clone().requires_grad_()
    b = kernels(xb, dim_size=9, dim=0, **where)
    _no_kernels(monkeypatch)
    xa = x.clone().requires_grad_()
    a = frozen(xa, dim_size=9, dim=0, **where)
    # 16 groups: four whole reductions of x ((max, min) is the max of x) and 12 mixes.
    assert isinstance(frozen._reductions, list) and len(frozen._reductions) == 16
    assert sum(len(group) == 1 for _, group in frozen._reductions) == 4
    weight = torch.randn(a.shape, generator=torch.Generator().manual_seed(1), dtype=a.dtype)
    (a * weight).sum().backward()
    (b * weight).sum().backward()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    # The groups' columns are found once per input width and device.
    (key,) = frozen._reductions._columns
    assert key == (32, "cpu")
    torch.testing.assert_close(frozen(x, dim_size=9, dim=0, **where), a.detach())
    assert list(frozen._reductions._columns) == [key]
    # A channel off every classic point sends the whole module back to the kernels.
    with torch.no_grad():
        frozen.beta[3] = 0.25
    with pytest.raises(AssertionError, match="kernels were called"):
        frozen(x, dim_size=9, dim=0, **where)


def test_dim_size_may_be_a_0d_integer_tensor():
    # As PyG passes it while torch.jit.trace records; any other tensor is refused.
    x, index = random_sets(30, 4, 3, seed=2, dtype=torch.float32)
    aggr = GNPAggregation(3, p=2.0)
    expected = aggr(x, index, dim_size=6)
    for size in (torch.tensor(6), torch.tensor(6, dtype=torch.int32)):
        assert torch.equal(aggr(x, index, dim_size=size), expected)
    for bad in (torch.tensor(6.0), torch.tensor([6]), torch.tensor(True)):
        with pytest.raises(ValueError, match="dim_size must be a non-negative int"):
            aggr(x, index, dim_size=bad)


def test_conjugate_is_minus_gnp_of_minus_x_and_trades_max_for_min():
    # Four channels at a learned-looking point each; float64 against the swap's formula.
    aggr = GNPAggregation(channels=4, p=[0.4, 2.0, -1.5, 5.0], q=[0.7, 0.2, 1.0, 0.5],
                          p_neg=[3.0, -0.5, 1.0, 1.2], q_neg=[0.1, 0.9, 0.3, 1.0]).double()
    x, index = random_sets(40, 6, 4, seed=11, dtype=torch.float64)
    before = aggr(-x, index)
    trains = [p.requires_grad for p in aggr.parameters()]
    aggr.conjugate_()
    torch.testing.assert_close(aggr(x, index), -before)
    assert [p.requires_grad for p in aggr.parameters()] == trains
    aggr.conjugate_()        # twice: where it started
    torch.testing.assert_close(aggr(-x, index), before)
    for name, other in (("max", "min"), ("min", "max"), ("sum", "sum"), ("mean", "mean")):
        gnp_ = GNPAggregation.from_pooling(name, channels=3)
        gnp_.conjugate_()
        assert gnp_.closest_pooling(1e-9) == [other] * 3
        reference = GNPAggregation.from_pooling(other, channels=3)
        assert all(torch.equal(a, b) for a, b in zip(gnp_.parameters(),
                                                     reference.parameters(), strict=True))
    # Frozen at max, computed by segment reductions: after the swap it computes the min.
    frozen = GNPAggregation.from_pooling("max", learn=False)
    y = x.float()
    torch.testing.assert_close(frozen(y, index), pyg.MaxAggregation()(y, index))
    frozen.conjugate_()
    assert frozen.closest_pooling(1e-9) == "min"
    assert torch.equal(frozen(y, index), pyg.MinAggregation()(y, index))
