"""LAF against its definition (float64, set by set) and Table 1 of Pellegrini et al. (2021)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_sets, to_ptr
from hypothesis import given, settings
from hypothesis import strategies as st

from gnpool.baselines import LAFAggregation
from gnpool.models import DeepSets, MessageMLPGNN, resolve_pooling


def naive_laf(x, index, num_sets, exps, weights):
    """LAF straight from its definition on ``s = sigmoid(x)``, set by set, in float64.
    ``exps`` is (a, b, c, d, e, f, g, h) and ``weights`` (alpha, beta, gamma, delta)."""
    a, b, c, d, e, f, g, h = (float(v) for v in exps)
    alpha, beta, gamma, delta = (float(v) for v in weights)
    s = torch.sigmoid(x.double())
    out = torch.zeros(num_sets, x.size(1), dtype=torch.float64)

    def lab(v, outer, inner):
        return (v ** inner).sum(0) ** outer

    for k in range(num_sets):
        v = s[index == k]
        if len(v):
            out[k] = ((alpha * lab(v, a, b) + beta * lab(1 - v, c, d))
                      / (gamma * lab(v, e, f) + delta * lab(1 - v, g, h)))
    return out


def table_sets(seed=0):
    """Sets of 1 to 9 elements and one empty set, 4 channels, float64."""
    gen = torch.Generator().manual_seed(seed)
    sizes = [1, 2, 3, 5, 9, 0, 4]
    index = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x = 2 * torch.randn(int(sum(sizes)), 4, generator=gen, dtype=torch.float64)
    return x, index, len(sizes)


def per_set(x, index, num_sets, fn):
    s = torch.sigmoid(x)
    return torch.stack([fn(s[index == k]) if (index == k).any()
                        else torch.zeros(x.size(1), dtype=x.dtype) for k in range(num_sets)])


R = 100.0
# Table 1 of the paper: the exact aggregators, their parameter values (module TABLE) and
# the function they compute on s = sigmoid(x).
EXACT = {
    "sum": lambda v: v.sum(0),
    "count": lambda v: torch.full((v.size(1),), float(v.size(0)), dtype=v.dtype),
    "mean": lambda v: v.mean(0),
    "moment": lambda v: (v ** 3).mean(0),                     # k = 3
    "power_moment": lambda v: ((v ** 3).mean(0)) ** 0.5,      # k = 3, l = 1/2
    "constant": lambda v: torch.full((v.size(1),), 2.5, dtype=v.dtype),   # kappa = 2.5
}


def laf(name, r=R):
    return LAFAggregation(4).double().init_pooling(name, r=r, k=3.0, l=0.5, kappa=2.5)


@pytest.mark.parametrize("name", sorted(LAFAggregation.TABLE))
def test_table_1_parameters_compute_the_definition(name):
    x, index, num = table_sets()
    module = laf(name)
    exps, weights = LAFAggregation.TABLE[name](R, R, 3.0, 0.5, 2.5)
    torch.testing.assert_close(module(x, index, dim_size=num),
                               naive_laf(x, index, num, exps, weights), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_table_1_exact_aggregators(name):
    x, index, num = table_sets(1)
    expected = per_set(x, index, num, EXACT[name])
    torch.testing.assert_close(laf(name)(x, index, dim_size=num), expected, rtol=1e-12,
                               atol=1e-12)


def test_table_1_max_and_min_are_within_their_limit_bounds():
    # L_{1/r,r} lies between the max and n^(1/r) times it; min = 1 - max(1 - s).
    x, index, num = table_sets(2)
    n = torch.bincount(index, minlength=num).double().view(-1, 1)
    c = n.clamp_min(1) ** (1 / R)
    top = per_set(x, index, num, lambda v: v.max(0).values)
    bottom = per_set(x, index, num, lambda v: v.min(0).values)
    got_max = laf("max")(x, index, dim_size=num).detach()
    got_min = laf("min")(x, index, dim_size=num).detach()
    live = n.squeeze(1) > 0
    assert bool((got_max >= top - 1e-12).all() & (got_max <= c * top + 1e-12).all())
    assert bool((got_min <= bottom + 1e-12).all())
    assert bool((bottom - got_min <= (1 - bottom) * (c - 1) + 1e-12)[live].all())
    assert bool(((c - 1) < 0.023).all())            # n <= 9, r = 100: within 2.2%
    # A larger r is closer: the limit of Table 1.
    closer = laf("max", r=1000.0)(x, index, dim_size=num).detach()
    assert bool(((closer - top).abs() <= (got_max - top).abs() + 1e-15).all())
    assert float((closer - top).abs().max()) < 3e-3


@pytest.mark.parametrize("name", ["min_over_max", "max_over_min"])
def test_table_1_ratios_are_within_their_limit_bounds(name):
    x, index, num = table_sets(3)
    n = torch.bincount(index, minlength=num).double().view(-1, 1)
    c = n.clamp_min(1) ** (1 / R)
    top = per_set(x, index, num, lambda v: v.max(0).values)
    bottom = per_set(x, index, num, lambda v: v.min(0).values)
    low_min = bottom - (1 - bottom) * (c - 1)       # the smallest L-estimate of min
    if name == "min_over_max":
        lo, hi = low_min / (c * top), bottom / top
    else:
        lo, hi = top / bottom, c * top / low_min
    got = laf(name)(x, index, dim_size=num)
    live = n.squeeze(1) > 0
    assert bool(((got >= lo - 1e-12) & (got <= hi + 1e-12))[live].all())
    assert bool((got[~live] == 0).all())


def test_units_are_concatenated_channel_major_and_projected():
    x, index, num = table_sets(4)
    names = ("sum", "mean", "max")
    module = LAFAggregation(4, units=3, project=False).double()
    with torch.no_grad():
        for u, name in enumerate(names):
            exps, weights = LAFAggregation.TABLE[name](R, R, 2.0, 1.0, 1.0)
            module.exponents[u] = torch.tensor(exps)
            module.weights[u] = torch.tensor(weights)
    out = module(x, index, dim_size=num)
    assert out.shape == (num, 12) and module.out_channels == 12
    for u, name in enumerate(names):
        exps, weights = LAFAggregation.TABLE[name](R, R, 2.0, 1.0, 1.0)
        torch.testing.assert_close(out[:, u::3], naive_laf(x, index, num, exps, weights))
    projected = LAFAggregation(4, units=3).double()
    projected.load_state_dict(module.state_dict(), strict=False)
    assert projected.out_channels == 4
    live = torch.bincount(index, minlength=num) > 0
    got = projected(x, index, dim_size=num)
    torch.testing.assert_close(got[live], projected.project(out)[live])
    assert bool((got[~live] == 0).all())            # not the projection's bias
    assert LAFAggregation(4).project is None and LAFAggregation(4, units=2).project is not None


def test_random_parameters_in_float32_match_the_float64_definition():
    torch.manual_seed(0)
    x, index = random_sets(60, 7, 5, seed=5)
    module = LAFAggregation(5, units=2, project=False)
    with torch.no_grad():
        module.exponents.uniform_(-2.0, 2.0)        # used as |theta|
        module.weights.uniform_(-1.0, 1.0)
        module.weights[:, 2] += 2.0                 # keep the denominators away from 0
    out = module(x.float(), index, dim_size=7)
    assert out.dtype == torch.float32
    for u in range(2):
        ref = naive_laf(x, index, 7, module.exponents[u].detach().abs().tolist(),
                        module.weights[u].detach().tolist())
        torch.testing.assert_close(out[:, u::2].double(), ref, rtol=2e-5, atol=1e-6)


def test_denominator_floor_keeps_the_sign_and_eps():
    x, index, num = table_sets(5)
    module = LAFAggregation(4, eps=1e-3).double().init_pooling("sum")
    with torch.no_grad():
        module.weights[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])      # denominator 0
    sums = per_set(x, index, num, lambda v: v.sum(0))
    torch.testing.assert_close(module(x, index, dim_size=num), sums / 1e-3)
    with torch.no_grad():
        module.weights[0] = torch.tensor([1.0, 0.0, -1e-5, 0.0])    # tiny negative: -eps
    torch.testing.assert_close(module(x, index, dim_size=num), -sums / 1e-3)


def test_powers_beyond_the_dtype_range_still_give_their_ratio():
    # L_{200,1}(s) / L_{200,1}(s) = 1, although (sum s)^200 overflows float64 for 50
    # elements; the naive formula gives inf / inf.
    x = 3 + torch.rand(50, 2, dtype=torch.float64)
    module = LAFAggregation(2).double().init_pooling("sum")
    with torch.no_grad():
        module.exponents[0] = torch.tensor([200.0, 1.0, 0.0, 0.0, 200.0, 1.0, 0.0, 0.0])
    assert naive_laf(x, torch.zeros(50, dtype=torch.long), 1, module.exponents[0].tolist(),
                     module.weights[0].tolist()).isnan().all()
    torch.testing.assert_close(module(x), torch.ones(1, 2, dtype=torch.float64))
    torch.testing.assert_close(module.float()(x.float()), torch.ones(1, 2))


def test_large_exponents_on_small_inputs_do_not_underflow():
    # sigmoid(-8) = 3.4e-4: s^100 = 1e-347 underflows even float64, yet max(s) is exact.
    x = torch.tensor([[-8.0], [-9.0], [-10.0]], dtype=torch.float64)
    top = float(torch.sigmoid(x).max())
    for dtype, r, tol in ((torch.float64, 100.0, 1e-12), (torch.float32, 1000.0, 1e-5)):
        module = LAFAggregation(1).to(dtype).init_pooling("max", r=r)
        got = float(module(x.to(dtype)).detach())
        assert top * (1 - tol) <= got <= top * 3 ** (1 / r) * (1 + tol)


def test_extreme_inputs_give_finite_outputs_and_gradients():
    x = torch.tensor([[-1e4, 0.0], [1e4, 50.0], [-200.0, -50.0]], requires_grad=True)
    module = LAFAggregation(2, units=3)
    out = module(x, torch.tensor([0, 0, 1]))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_gradcheck_float64():
    torch.manual_seed(1)
    x, index = random_sets(8, 3, 2, seed=6)
    module = LAFAggregation(2, units=2, project=False).double()
    with torch.no_grad():
        module.exponents.uniform_(0.2, 1.5)         # away from |theta| = 0

    def fn(x, exps, weights):
        return torch.func.functional_call(module, {"exponents": exps, "weights": weights},
                                          (x, index), {"dim_size": 4})

    args = [t.detach().clone().requires_grad_(True)
            for t in (x, module.exponents, module.weights)]
    assert torch.autograd.gradcheck(fn, args)


def test_index_ptr_dim_and_empty_sets():
    x, index = random_sets(30, 5, 3, seed=7, sort=True)
    index[index == 2] = 1                          # set 2 is empty
    module = LAFAggregation(3, units=2).double()
    by_index = module(x, index, dim_size=5)
    torch.testing.assert_close(module(x, ptr=to_ptr(index, 5)), by_index)
    assert bool((by_index[2] == 0).all())
    # Any pooled dimension but the last: [batch, elements, channels].
    batched = torch.stack([x, 2 * x])
    out = module(batched, index, dim_size=5, dim=1)
    torch.testing.assert_close(out[1], module(2 * x, index, dim_size=5))
    # No index and no ptr: one set.
    torch.testing.assert_close(module(x), module(x, torch.zeros(30, dtype=torch.long)))
    assert module(x[:0], torch.zeros(0, dtype=torch.long), dim_size=2).abs().sum() == 0


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_permutation_invariance(num_elements, seed):
    x, index = random_sets(num_elements, 3, 2, seed=seed)
    module = LAFAggregation(2, units=2, project=False).double()
    perm = torch.randperm(num_elements, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(module(x[perm], index[perm], dim_size=3),
                               module(x, index, dim_size=3))


def test_fp16_is_computed_in_float32():
    x, index = random_sets(20, 3, 4, seed=8)
    module = LAFAggregation(4, units=2)
    out = module(x.half(), index, dim_size=3)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), module(x.half().float(), index, dim_size=3),
                               rtol=1e-3, atol=1e-3)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="in_channels must be a positive int, got 0"):
        LAFAggregation(0)
    with pytest.raises(ValueError, match="units must be a positive int, got 1.5"):
        LAFAggregation(2, units=1.5)
    with pytest.raises(ValueError, match="eps must be a positive finite float, got 0"):
        LAFAggregation(2, eps=0)
    with pytest.raises(ValueError, match="name must be one of"):
        LAFAggregation.from_pooling("median", 2)
    with pytest.raises(ValueError, match="r must be positive, got -1"):
        LAFAggregation.from_pooling("max", 2, r=-1.0)
    module = LAFAggregation(3)
    with pytest.raises(ValueError, match=r"in_channels=3 features in its last dimension, got "
                                         r"shape \(4, 2\)"):
        module(torch.randn(4, 2))
    with pytest.raises(ValueError, match="dim must not be the last"):
        module(torch.randn(4, 3), dim=-1)
    with pytest.raises(TypeError, match="floating-point"):
        module(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"index values must lie in \[0, dim_size=2\)"):
        module(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), dim_size=2)


def test_resolves_by_name_in_models():
    assert type(resolve_pooling("laf", 8)) is LAFAggregation
    assert resolve_pooling("laf", 8, {"units": 3}).out_channels == 8
    sets = DeepSets(1, 1, 8, pooling="laf", pooling_kwargs={"units": 2})
    assert sets(torch.rand(6, 1), torch.tensor([0, 0, 0, 1, 1, 1]), dim_size=2).shape == (2, 1)
    gnn = MessageMLPGNN(3, 1, 8, 2, aggr="laf", readout="laf", aggr_kwargs={"units": 2})
    x, edge_index = torch.randn(5, 3), torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    assert gnn(x, edge_index).shape == (1, 1)
    assert set(LAFAggregation.pooling_parameter_names) == {
        n for n, _ in LAFAggregation(2).named_parameters()}
    fresh = LAFAggregation(2, units=50)
    for p in (fresh.exponents.detach(), fresh.weights.detach()):    # uniform in [0, 1)
        assert 0.0 <= float(p.min()) < 0.1 and 0.9 < float(p.max()) < 1.0


def test_register_lets_pyg_resolve_the_baselines():
    from torch_geometric.nn import GraphConv, aggr
    from torch_geometric.nn.resolver import aggregation_resolver

    from gnpool import register
    from gnpool.baselines import GenAggAggregation, GenAggPowerAggregation

    register()
    conv = GraphConv(4, 4, aggr="laf", aggr_kwargs={"in_channels": 4, "units": 2})
    assert isinstance(conv.aggr_module, LAFAggregation)
    assert conv(torch.randn(5, 4), torch.tensor([[0, 1, 2], [1, 2, 3]])).shape == (5, 4)
    assert type(aggregation_resolver("genagg")) is GenAggAggregation
    assert type(aggregation_resolver("GenAggPower")) is GenAggPowerAggregation
    multi = aggr.MultiAggregation(["sum", "genagg"])
    assert multi(torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 1, 2])).shape == (3, 6)
